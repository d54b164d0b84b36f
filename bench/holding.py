"""Headroom of the holding lever: keeping capacity back for the work that needs it (gpu nodes'
cpus for gpu work, a gpu model's gpus for work bound to that model) instead of filling it
greedily.

    python -m bench.holding [--seeds 20] [--jobs 400] [--load 0.9] [--gpu 0.2,0.4]
        [--reserves 0.1,0.25,0.5,1,2] [--oracle-seeds 3] [--epochs 8] [--top 3]
        [--workers 2] [--out bench/results/holding]

The workload is the seeded synthetic generator's (80% DAG jobs, 30% of gpu tasks bound to one
gpu model) on the default 8-site cluster, with ``--gpu`` the share of tasks that need gpus.
Arms, all on the same seeds (paired): the greedy baselines ``sjf`` and ``srpt``;
``srpt-reserve:x`` (``agents.baselines.holding``) for each ``x`` of ``--reserves``, the best
one chosen on the same seeds (which flatters it); the rollout oracle (``agents.headroom``)
switching among each seed's top ``--top`` arms on the first ``--oracle-seeds`` seeds.

Prints a markdown table and writes ``--out`` .md and .json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from agora.agents.sim.runner import Scenario
from bench.lever_headroom import FOOTER, add_run_flags, cell, check_seeds, common, gain_text, \
    numbers, paired, run_and_write

REPO = Path(__file__).resolve().parent.parent
GREEDY = ("sjf", "srpt")


def scenario(jobs: int, load: float, gpu: float) -> Scenario:
    return Scenario(workload=f"synthetic:jobs={jobs},load={load:g},dag=0.8,gpu_frac={gpu:g}")


def summarise(gpu: float, j: dict, metrics: dict, oracles: list[dict]) -> dict:
    mean = lambda p: statistics.mean(j[p])              # noqa: E731
    greedy = min(GREEDY, key=mean)
    reserve = min((p for p in j if p.startswith("srpt-reserve:")), key=mean)
    return {"gpu_frac": gpu, "greedy": greedy, "reserve": reserve, "best": min(j, key=mean),
            "util_gpu": {p: statistics.median(r["util_gpu"] for r in v)
                         for p, v in metrics.items()},
            "reserve_vs_srpt": paired(j[reserve], j["srpt"]),
            "reserve_vs_greedy": paired(j[reserve], j[greedy]),
            **common(j, oracles)}


def render(rows: list[dict], a) -> str:
    out = [f"Holding capacity: synthetic DAG, {a.jobs} jobs, load {a.load:g}, {a.seeds} seeds "
           f"(paired; bootstrap 10,000 resamples, seed 20231); oracle on seeds "
           f"0..{a.oracle_seeds - 1}, {a.epochs} epochs, top {a.top}.", "",
           "| gpu share of tasks | sjf | srpt | best srpt-reserve | best reserve − srpt | "
           "best reserve − best greedy | oracle's gain over the best arm [min, max] | "
           "gpu utilisation srpt / reserve |",
           "| --- | ---: | ---: | ---: | --- | --- | --- | --- |"]
    for r in rows:
        m, u = r["median"], r["util_gpu"]
        out.append(f"| {r['gpu_frac']:g} | {m['sjf']:.1f} | {m['srpt']:.1f} | "
                   f"{m[r['reserve']]:.1f} ({r['reserve']}) | {cell(r['reserve_vs_srpt'])} | "
                   f"{cell(r['reserve_vs_greedy'])} ({r['greedy']}) | {gain_text(r)} | "
                   f"{u['srpt']:.3f} / {u[r['reserve']]:.3f} |")
    return "\n".join(out + FOOTER)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--load", type=float, default=0.9)
    p.add_argument("--gpu", default="0.2,0.4", help="share of tasks needing gpus, comma-separated")
    p.add_argument("--reserves", default="0.1,0.25,0.5,1,2", help="srpt-reserve's x values")
    add_run_flags(p)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "holding")
    a = p.parse_args(argv)
    gpus = numbers(p, "--gpu", a.gpu)
    if any(g > 1 for g in gpus):
        p.error(f"--gpu {a.gpu!r}: expected shares in [0, 1], e.g. 0.2,0.4")
    reserves = numbers(p, "--reserves", a.reserves)
    check_seeds(p, a)
    names = [*GREEDY, *(f"srpt-reserve:{x:g}" for x in reserves)]
    variants = {g: scenario(a.jobs, a.load, g) for g in gpus}
    return run_and_write(a, variants, names, summarise, render)


if __name__ == "__main__":
    sys.exit(main())
