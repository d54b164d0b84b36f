"""Headroom on mean JCT, per scenario: every heuristic baseline (the best one is the target to
beat), the lower bounds (critical path; pooled-capacity SRPT) and the rollout oracle
(``agents.headroom``: clairvoyant policy switching among the top heuristics, epoch by epoch,
never worse than the best one). A scenario where the oracle cannot beat the best heuristic
by a wide margin has no room for a learner that only orders and places work.

    python -m bench.headroom [--traces ../shared/workloads] [--seeds 3] [--epochs 16]
        [--only synthetic-dag-high-load,swf-4-sites,...] [--top 4] [--loads 0.6,0.8]

``--loads`` adds the synthetic DAG scenario at other offered loads (a load sweep).

Prints a markdown table (medians over seeds, and the oracle's paired gain per seed) and
writes bench/results/headroom.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from agora.agents.baselines import BASELINES
from agora.agents.headroom import pooled_srpt_bound, rollout_oracle
from agora.agents.sim.config import SimConfig
from agora.agents.sim.runner import run_one
from bench.scenarios import DEFAULT_TRACES, REPO, all_scenarios, synthetic_dag

SKIP = ("random", "round-robin")
"""baselines no one would tune: left out of the candidates (still run and reported)"""


def one_seed(sc, seed: int, epochs: int, top: int) -> dict:
    cluster, workload = sc.build(seed)
    jct = {}
    for name in BASELINES:
        r = run_one(cluster, workload, name, seed=seed)
        jct[name] = r.metrics["jct_mean_s"]
    ranked = sorted((n for n in jct if n not in SKIP), key=lambda n: jct[n])
    best = ranked[0]
    bound = pooled_srpt_bound(workload, cluster)
    t0 = time.perf_counter()
    orc = rollout_oracle(cluster, workload, candidates=ranked[:top], base=best, epochs=epochs,
                         config=SimConfig(seed=seed))
    return {"seed": seed, "jct": jct, "best": best, "bound": bound,
            "oracle_jct": orc["metrics"]["jct_mean_s"], "oracle_epochs": orc["epochs"],
            "oracle_wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--top", type=int, default=4, help="heuristics the oracle switches among")
    p.add_argument("--only", default="synthetic-dag-high-load,swf-4-sites")
    p.add_argument("--loads", default="", help="extra offered loads of the synthetic scenario")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "headroom")
    a = p.parse_args(argv)
    scenarios = all_scenarios(a.traces)
    for load in filter(None, a.loads.split(",")):
        name = f"synthetic-dag-load-{float(load):g}"
        scenarios[name] = replace(synthetic_dag(),
                                  workload=f"synthetic:jobs=1000,load={float(load):g},dag=0.8")
        a.only += f",{name}"
    unknown = [n for n in filter(None, a.only.split(",")) if n not in scenarios]
    if unknown:
        p.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(scenarios)}")
    results = {}
    for name in filter(None, a.only.split(",")):
        runs = []
        for seed in range(a.seeds):
            r = one_seed(scenarios[name], seed, a.epochs, a.top)
            runs.append(r)
            print(f"  {name} seed {seed}: best {r['best']} {r['jct'][r['best']]:.1f}, oracle "
                  f"{r['oracle_jct']:.1f} ({r['oracle_wall_s']:.0f} s), bound "
                  f"{r['bound']['mean_jct']:.1f}", file=sys.stderr, flush=True)
        results[name] = runs
    table = render(results, a.epochs, a.top)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(table + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"epochs": a.epochs, "top": a.top, "results": results}, indent=1))
    return 0


def render(results: dict, epochs: int, top: int) -> str:
    med = statistics.median
    lines = [f"Mean JCT (s), median over seeds. Oracle: clairvoyant switching among the top {top} "
             f"heuristics in {epochs} epochs. Gain = paired (best − oracle) / best per seed, "
             f"median [min, max].", "",
             "| scenario | seeds | best heuristic | SJF | SRPT | lower bound (critical path; "
             "pooled SRPT) | oracle | oracle gain | best's gap to bound |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, runs in results.items():
        best = [r["jct"][r["best"]] for r in runs]
        names = sorted({r["best"] for r in runs})
        gain = [(b - r["oracle_jct"]) / b for b, r in zip(best, runs)]
        bound = [r["bound"]["mean_jct"] for r in runs]
        lines.append(
            f"| {name} | {len(runs)} | {'/'.join(names)} {med(best):.1f} | "
            f"{med(r['jct']['sjf'] for r in runs):.1f} | {med(r['jct']['srpt'] for r in runs):.1f} | "
            f"{med(bound):.1f} ({med(r['bound']['critical_path'] for r in runs):.1f}; "
            f"{med(r['bound']['pooled_srpt'] for r in runs):.1f}) | "
            f"{med(r['oracle_jct'] for r in runs):.1f} | {100 * med(gain):.1f}% "
            f"[{100 * min(gain):.1f}, {100 * max(gain):.1f}] | "
            f"{100 * med((b - lb) / lb for b, lb in zip(best, bound)):.1f}% |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
