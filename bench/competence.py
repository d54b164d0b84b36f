"""The learned policy inside and outside what it learned (``agents/learn/competence.py``): the
committed checkpoint acting with its competence guard (a window wider than its training
showed it is ranked by the SRPT teacher) and without it, against every baseline, paired by
seed, on its training scenario and zero-shot on real workflows it never saw.

    python -m bench.competence --wf-dir DIR [--seeds 5] [--checkpoint PATH] [--only wf,synthetic]

Scenarios:

- ``synthetic``: the training family (``bench/scenarios.synthetic_dag``: 1,000 jobs, 80% DAGs,
  load 0.95 on the default 8 sites); seeds 0..N-1 (training draws seeds >= 10,000);
- ``wf``: WfCommons workflow instances (real Pegasus / Makeflow / Nextflow runs; ``--wf-dir``:
  a folder of WfInstances ``.json`` files, e.g. every file of github.com/wfcommons/WfInstances)
  on 4 sites of one 8-core node each (``deploy/configs/cluster-4x8.yaml``), one workflow
  arriving every 60 s: seed s is 20 files
  drawn with ``numpy.random.default_rng(s)`` (the names are in the JSON), so each seed is
  another set of workflows. Contention makes a site's window hold ~16 candidates of ~4 jobs,
  where the policy's training held 1.2.

Per scenario: mean JCT of each arm, and the paired difference (arm - best baseline) / best
baseline with a bootstrap 95% interval over seeds, where the best baseline is the one with
the lowest mean JCT over the seeds. Written to bench/results/competence.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from agora.agents.baselines import BASELINES
from agora.agents.learn import checkpoint
from agora.agents.learn.evaluate import SRPT_NAME, evaluate, run_learned
from agora.agents.sim.report import markdown_table, paired_bootstrap
from agora.agents.sim.runner import Scenario
from bench.scenarios import REPO, synthetic_dag

CHECKPOINT = REPO / "agents" / "learn" / "checkpoints" / "learned-synE.pt"
WF_CLUSTER = REPO / "deploy" / "configs" / "cluster-4x8.yaml"
WF_PER_SEED = 20
WF_GAP_S = 60.0


class WfSets(Scenario):
    """Seed s: ``WF_PER_SEED`` workflow files of ``workload`` (a folder) drawn with seed s."""

    def build(self, seed: int):
        files = sorted(Path(self.workload).glob("*.json"))
        pick = np.random.default_rng(seed).choice(len(files), min(WF_PER_SEED, len(files)),
                                                  replace=False)
        with tempfile.TemporaryDirectory(prefix=f"wf-seed{seed}-") as tmp:
            d = Path(tmp)                    # read whole by build: removed once it returns
            for i in sorted(pick):
                (d / files[i].name).symlink_to(files[i].resolve())
            return replace(self, workload=str(d)).plain().build(seed)

    def plain(self) -> Scenario:
        return Scenario(cluster=self.cluster, workload=self.workload, sites=self.sites,
                        workload_options=self.workload_options)


def unguarded_copy(path: Path, work: Path) -> Path:
    """The checkpoint without its competence measure: the policy ranks every window."""
    blob = checkpoint.read(path)
    blob.pop("competence", None)
    out = work / "unguarded.pt"
    checkpoint.write(out, blob)
    return out


def run_scenario(name: str, sc: Scenario, seeds: list[int], guarded: Path, unguarded: Path,
                 ) -> dict:
    res = evaluate(str(guarded), sc, seeds=seeds, baselines=list(BASELINES))
    runs = res["runs"]
    runs["learned, unguarded"] = []
    for s, guarded_run in zip(seeds, runs["learned"]):
        cluster, wl = sc.build(s)
        r, _ = run_learned(str(unguarded), cluster, wl, seed=s)
        runs["learned, unguarded"].append(r.metrics)
        print(f"  {name} seed {s}: guarded {guarded_run['jct_mean_s']:.1f} unguarded "
              f"{r.metrics['jct_mean_s']:.1f}", flush=True)
    jct = {p: [m["jct_mean_s"] for m in ms] for p, ms in runs.items()}
    best = min(BASELINES, key=lambda p: float(np.mean(jct[p])))
    rows = {}
    for arm in ("learned", "learned, unguarded", SRPT_NAME):
        diffs = [(a - b) / b for a, b in zip(jct[arm], jct[best])]
        mean, lo, hi = paired_bootstrap(diffs)
        rows[arm] = {"jct": float(np.mean(jct[arm])), "diff": mean, "lo": lo, "hi": hi}
    return {"seeds": seeds, "best_baseline": best, "best_jct": float(np.mean(jct[best])),
            "arms": rows, "jct": jct, "competence": res["competence"]}


def table(results: dict) -> str:
    header = ["scenario", "best baseline (mean JCT s)", "arm", "mean JCT s",
              "vs best baseline (95% interval)", "decisions ranked by the teacher"]
    out = []
    for name, r in results.items():
        g = r["competence"]
        for arm, a in r["arms"].items():
            share = (f"{g['by_teacher']} of {g['decisions']}" if arm == "learned" else
                     "all" if arm == SRPT_NAME else "none")
            out.append([name, f"{r['best_baseline']} ({r['best_jct']:.1f})", arm,
                        f"{a['jct']:.1f}", f"{a['diff']:+.1%} [{a['lo']:+.1%}, {a['hi']:+.1%}]",
                        share])
    return markdown_table(header, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    p.add_argument("--wf-dir", type=Path, default=None,
                   help="folder of WfInstances .json files (needed for the 'wf' scenario)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--only", default="synthetic,wf")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "competence")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    names = a.only.split(",")
    for name in names:
        if name not in ("synthetic", "wf"):
            p.error(f"--only: unknown scenario {name!r}; expected synthetic, wf")
    if "wf" in names and (a.wf_dir is None or not a.wf_dir.is_dir()):
        p.error(f"--wf-dir: {a.wf_dir}; expected a folder of WfInstances .json files for "
                f"the 'wf' scenario (or --only synthetic)")
    with tempfile.TemporaryDirectory(prefix="competence-") as work:
        results = run_all(a, names, unguarded_copy(a.checkpoint, Path(work)))
    text = ("# The learned policy inside and outside what it learned (bench/competence.py)\n\n"
            f"Command: `python -m bench.competence {' '.join(argv or sys.argv[1:])}`; "
            f"checkpoint {a.checkpoint.name}; seeds 0..{a.seeds - 1}; 'vs best baseline': "
            "(arm - best) / best mean JCT, paired by seed, bootstrap 95% interval (negative: "
            "the arm is better).\n\n" + table(results) + "\n")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(text)
    a.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(f"wrote {a.out.with_suffix('.md')}")
    return 0


def run_all(a, names: list[str], unguarded: Path) -> dict:
    """Every scenario of ``--only``: its arms, a table printed as each finishes."""
    seeds = list(range(a.seeds))
    results = {}
    for name in names:
        if name == "synthetic":
            sc = synthetic_dag()
        else:
            sc = WfSets(cluster=str(WF_CLUSTER), workload=str(a.wf_dir.resolve()),
                        workload_options=(("arrival_gap_s", WF_GAP_S),))
        results[name] = run_scenario(name, sc, seeds, a.checkpoint, unguarded)
        print(table({name: results[name]}), flush=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
