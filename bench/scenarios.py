"""The benchmark scenarios, defined once (bench scripts and the README quote these)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agora.agents.domain import Cluster, Workload
from agora.agents.sim.runner import Scenario

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TRACES = REPO.parent / "shared" / "workloads"

SWF_WINDOW = 2000
"""jobs per SWF seed: seed k replays jobs [k·2000, (k+1)·2000) of the trace"""


def alibaba(traces: Path) -> Scenario:
    """The Alibaba openb pod list on its 1,523 nodes split into 8 stratified sites. Replayed
    on its own clock it offers ~0.2% of the gpus (no pod ever waits), so arrivals are
    compressed into 10 minutes and the list inflated ×1.5 with seeded clones (Weng et al.'s
    method), which fills the cluster; the seed draws the clones."""
    d = traces / "alibaba-openb-2023"
    return Scenario(cluster=str(d / "openb_node_list_all_node.csv"),
                    workload=str(d / "openb_pod_list_default.csv"), sites=8,
                    arrival_window=600.0, inflate=1.5)


def alibaba_asis(traces: Path) -> Scenario:
    """The whole pod list on 8 sites on its own clock (the simulator-speed scenario)."""
    d = traces / "alibaba-openb-2023"
    return Scenario(cluster=str(d / "openb_node_list_all_node.csv"),
                    workload=str(d / "openb_pod_list_default.csv"), sites=8)


class SwfWindows(Scenario):
    """Lublin's SWF trace, rigid jobs (P cores on one node), on 4 sites of one 64-core node
    (the 256-processor machine split 4 ways); seed k is the k-th window of 2,000 jobs. Jobs
    wider than 64 processors are reported unschedulable."""

    def build(self, seed: int) -> tuple[Cluster, Workload]:
        from agora.agents.workloads.loader import load_cluster, load_workload

        cluster = load_cluster(self.cluster)
        wl = load_workload(self.workload, cluster, rigid=True)
        jobs = wl.jobs[seed * SWF_WINDOW:(seed + 1) * SWF_WINDOW]
        if not jobs:
            raise ValueError(f"SWF trace has no window {seed} of {SWF_WINDOW} jobs")
        return cluster, replace(wl, jobs=jobs, source=f"{wl.source} jobs[{seed * SWF_WINDOW}:"
                                                      f"{(seed + 1) * SWF_WINDOW}]")


def swf(traces: Path) -> Scenario:
    return SwfWindows(cluster=str(REPO / "deploy/configs/cluster-swf256.yaml"),
                      workload=str(traces / "lublin" / "lublin_256.swf"), sites=4)


def synthetic_dag() -> Scenario:
    """The default 8-site cluster under the seeded generator: 1,000 jobs, 80% DAGs, offered
    load 0.95 on the dominant resource; the seed draws a fresh workload."""
    return Scenario(workload="synthetic:jobs=1000,load=0.95,dag=0.8")


def all_scenarios(traces: Path) -> dict[str, Scenario]:
    return {"alibaba-8-sites": alibaba(traces), "swf-4-sites": swf(traces),
            "synthetic-dag-high-load": synthetic_dag()}
