"""Build a (cluster, workload) scenario from the command line's words and run policies on it;
shared by ``agora`` and ``bench/`` so both mean the same thing by a scenario and a seed.

What a seed changes, so that "5 seeds" means 5 different draws and is recorded with results:
the synthetic generator's seed (a fresh workload), the inflation's clone draws, the policy's
own draws (random), and the fault seed (offset by the seed). A trace replayed as it is, with
a deterministic policy and no faults, gives the same result for every seed — and the tables
then show a zero-width interval rather than pretending otherwise.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from agora.agents.baselines import BASELINES, make_policy
from agora.agents.domain import Cluster, Workload
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import SimResult, Simulator
from agora.agents.workloads.loader import load_cluster, load_workload, splits_into_sites
from agora.agents.workloads.transform import arrival_window, at_load, inflate


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes, 16 hex digits (what runs record of their input files)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Scenario:
    """Everything that defines a run's input; printed in full with results."""

    cluster: str = "default"
    """cluster spec: 'default', a cluster YAML, or an Alibaba node-list CSV"""
    workload: str = "synthetic"
    """workload spec: 'synthetic[:k=v,...]', a .jsonl, a .swf, or an Alibaba pod-list CSV"""
    sites: int = 8
    """sites to split an Alibaba node list into"""
    split: str = "stratified"
    """rule for splitting an Alibaba node list: stratified | by-model | contiguous"""
    arrival_window: float | None = None
    """compress (or stretch) arrivals into this many seconds; None keeps the trace's clock"""
    load: float | None = None
    """alternatively: scale arrivals to this offered load on the dominant resource"""
    inflate: float = 1.0
    """clone jobs to this multiple (>= 1) with seeded arrivals (Weng et al. 2023)"""
    workload_options: tuple[tuple[str, object], ...] = ()
    """(name, value) pairs for the workload's reader, e.g. (('max_jobs', 1000),) for a
    batch_task.csv; the reader refuses an option that does not apply to its kind"""

    def __post_init__(self) -> None:
        # pairs as tuples whatever they came as (JSON gives lists): a scenario read back from
        # a saved run equals the one saved
        object.__setattr__(self, "workload_options",
                           tuple((str(k), v) for k, v in self.workload_options))

    def shown(self) -> dict:
        """The scenario as a run prints it: ``sites`` and ``split`` only where they apply (an
        Alibaba node-list CSV; a probe read 'sites': 8 beside a 3-site YAML cluster)."""
        d = asdict(self)
        if splits_into_sites(self.cluster):
            return d
        return {k: v for k, v in d.items() if k not in ("sites", "split")}

    def file_digests(self) -> dict[str, str]:
        """A digest (sha256, 16 hex digits) of the cluster and workload files (those that
        are files): what a resumed training run compares, so that a file changed since its
        start is refused (a probe: an edited cluster went unnoticed)."""
        out = {}
        for field in ("cluster", "workload"):
            spec = str(getattr(self, field))
            if spec == "default" or spec.partition(":")[0] == "synthetic":
                continue          # built in: a file of that name here is never read
            f = Path(spec.partition(":")[0] if field == "workload" else spec)
            if f.is_file():
                out[field] = file_digest(f)
        return out

    def known_by_content(self, saved: dict, digests: dict | None) -> dict:
        """``saved`` (this scenario's fields as a run recorded them) with the path of each
        file ``digests`` (the run's) vouches for spelt as this scenario spells it: a
        resumed run's file is the same by its digest, compared apart, not by its path (a
        probe: a resume from another folder, or with the path made absolute, was refused
        though every file was the same). A workload's options after ``:`` still count."""
        out = dict(saved)
        for field in digests or {}:
            now = str(getattr(self, field))
            if field != "workload" or str(saved.get(field)).partition(":")[2] == \
                    now.partition(":")[2]:
                out[field] = getattr(self, field)
        return out

    def build(self, seed: int) -> tuple[Cluster, Workload]:
        cluster = load_cluster(self.cluster, sites=self.sites, split=self.split)
        f = cluster.faults
        if seed and (f.task_failure_prob or f.overrun_prob or f.outages):
            cluster = replace(cluster, faults=replace(f, seed=f.seed + seed))
        is_synth = self.workload.split(":")[0] == "synthetic"
        options = dict(self.workload_options)
        if is_synth:
            options["seed"] = seed
        wl = load_workload(self.workload, cluster, **options)
        if self.arrival_window is not None:
            wl = arrival_window(wl, self.arrival_window)
        if self.inflate != 1.0:
            wl = inflate(wl, self.inflate, seed=seed)
        if self.load is not None:
            wl = at_load(wl, cluster, self.load)
        return cluster, wl


def run_one(cluster: Cluster, workload: Workload, policy: str, *, seed: int = 0,
            config: SimConfig | None = None, progress: bool = False) -> SimResult:
    cfg = replace(config or SimConfig(), seed=seed)
    return Simulator(cluster, workload, cfg).run(make_policy(policy), progress=progress)


def run_baselines(scenario: Scenario, *, seeds: int, policies: list[str] | None = None,
                  config: SimConfig | None = None, on_result=None) -> dict[str, list[dict]]:
    """Every policy on the same ``seeds`` scenarios; returns policy -> metrics per seed."""
    names = policies or list(BASELINES)
    out: dict[str, list[dict]] = {p: [] for p in names}
    for seed in range(seeds):
        cluster, wl = scenario.build(seed)
        for p in names:
            r = run_one(cluster, wl, p, seed=seed, config=config)
            out[p].append(r.metrics)
            if on_result is not None:
                on_result(p, seed, r)
    return out
