"""Headroom of the malleable-stage lever (how many instances of each job run at once): under
``SimConfig.malleable`` (sub-linear speedup in a job's width, a warm-up per node and job), the
heuristics that ignore the lever, the best *tuned* heuristic for it (``srpt-cap:P``,
``weighted-fair:A``, ``agents.baselines.parallelism``), the lower bound and the rollout
oracle (``agents.headroom``) switching among the top heuristics.

    python -m bench.malleable [--seeds 3] [--jobs 200] [--load 0.7] [--workers 2]
        [--models 0/0,0.1/0,0.1/10] [--caps 2,4,8,16] [--alphas -1,0,1]
        [--epochs 6] [--top 3] [--out bench/results/malleable]

``--models``: contention/warm-up pairs (``Malleability``); 0/0 is the model off, as a check
that the lever then has nothing to give. The workload is the seeded synthetic generator's
DAG jobs with stages of up to 32 instances (``max_instances=32``) at the offered load
``--load`` on the default 8-site cluster -- nominal load: contention and warm-ups add work,
so a greedy scheduler faces more than that. A family's parameter is tuned on the same seeds
(the value with the lowest mean JCT), which flatters the heuristic, not the learner.

Prints a markdown table and writes ``--out`` .md and .json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from agora.agents.headroom import pooled_srpt_bound, rollout_oracle
from agora.agents.sim.config import Malleability, SimConfig
from agora.agents.sim.runner import Scenario, run_one

REPO = Path(__file__).resolve().parent.parent
PLAIN = ("sjf", "srpt", "tetris")
"""heuristics that run every open instance they can (the lever's null choice): the best three
on the synthetic DAG scenario without the model (docs/benchmarks.md)"""


def scenario(jobs: int, load: float) -> Scenario:
    return Scenario(workload=f"synthetic:jobs={jobs},load={load:g},dag=0.8,max_instances=32")


def policies(caps: list[str], alphas: list[str]) -> list[str]:
    return [*PLAIN, *(f"srpt-cap:{c}" for c in caps), *(f"weighted-fair:{x}" for x in alphas)]


def episode(sc: Scenario, model: tuple[float, float], seed: int):
    """(cluster, workload, SimConfig) of one seed's run under the contention/warm-up model."""
    cluster, wl = sc.build(seed)
    return cluster, wl, SimConfig(seed=seed, malleable=Malleability(*model),
                                  record_attempts=False)


def run_cell(args) -> dict:
    """One (model, seed, policy) run's mean JCT."""
    sc, model, seed, policy = args
    cluster, wl, cfg = episode(sc, model, seed)
    t0 = time.perf_counter()
    m = run_one(cluster, wl, policy, seed=seed, config=cfg).metrics
    return {"model": model, "seed": seed, "policy": policy, "jct": m["jct_mean_s"],
            "wall_s": time.perf_counter() - t0}


def run_oracle(args) -> dict:
    sc, model, seed, candidates, base, epochs = args
    cluster, wl, cfg = episode(sc, model, seed)
    t0 = time.perf_counter()
    orc = rollout_oracle(cluster, wl, candidates=candidates, base=base, epochs=epochs,
                         config=cfg)
    return {"model": model, "seed": seed, "jct": orc["metrics"]["jct_mean_s"],
            "chosen": orc["epochs"], "bound": pooled_srpt_bound(wl, cluster)["mean_jct"],
            "wall_s": time.perf_counter() - t0}


def tuned_best(jct: dict, family: str) -> str:
    """The family's member with the lowest mean JCT over the seeds."""
    names = [p for p in jct if p.startswith(family + ":")]
    return min(names, key=lambda p: statistics.mean(jct[p]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--load", type=float, default=0.7)
    p.add_argument("--models", default="0/0,0.1/0,0.1/10",
                   help="contention/warm-up-seconds pairs, comma-separated")
    p.add_argument("--caps", default="2,4,8,16")
    p.add_argument("--alphas", default="-1,0,1")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "malleable")
    a = p.parse_args(argv)
    try:
        models = [tuple(float(x) for x in m.split("/")) for m in a.models.split(",")]
        if any(len(m) != 2 for m in models):
            raise ValueError("each model is two numbers")
        for m in models:
            Malleability(*m)
    except (ValueError, TypeError) as e:
        p.error(f"--models: expected contention/warm-up pairs >= 0 such as 0.1/10 ({e})")
    sc = scenario(a.jobs, a.load)
    names = policies(a.caps.split(","), a.alphas.split(","))
    cells = [(sc, m, s, n) for m in models for s in range(a.seeds) for n in names]
    t0 = time.perf_counter()
    # spawned, not forked: a fork of a process running threads (gRPC's, torch's: a test
    # worker after other tests) spun at 100% of a core in the child, for good
    with ProcessPoolExecutor(a.workers, mp_context=mp.get_context("spawn")) as pool:
        runs = list(pool.map(run_cell, cells))
        print(f"  {len(runs)} runs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        jct = {m: {n: [0.0] * a.seeds for n in names} for m in models}
        for r in runs:
            jct[r["model"]][r["policy"]][r["seed"]] = r["jct"]
        jobs = []
        for m in models:
            for s in range(a.seeds):
                ranked = sorted(names, key=lambda n: jct[m][n][s])
                jobs.append((sc, m, s, ranked[:a.top], ranked[0], a.epochs))
        oracles = list(pool.map(run_oracle, jobs))
    print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = []
    for m in models:
        j = jct[m]
        plain = min(PLAIN, key=lambda n: statistics.mean(j[n]))
        cap, fair = tuned_best(j, "srpt-cap"), tuned_best(j, "weighted-fair")
        tuned = min((cap, fair), key=lambda n: statistics.mean(j[n]))
        orc = sorted((o for o in oracles if o["model"] == m), key=lambda o: o["seed"])
        best_per_seed = [min(j[n][s] for n in names) for s in range(a.seeds)]
        rows.append({"model": m, "plain": plain, "plain_jct": j[plain], "cap": cap,
                     "cap_jct": j[cap], "fair": fair, "fair_jct": j[fair], "tuned": tuned,
                     "tuned_jct": j[tuned], "best_per_seed": best_per_seed,
                     "oracle_jct": [o["jct"] for o in orc],
                     "oracle_chosen": [o["chosen"] for o in orc],
                     "bound": [o["bound"] for o in orc], "jct": j})
    table = render(rows, a)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(table + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(a).items()}, "scenario": sc.workload,
         "rows": [{**r, "model": list(r["model"])} for r in rows]}, indent=1))
    return 0


def _gain(base: list[float], new: list[float]) -> str:
    g = [100 * (b - x) / b for b, x in zip(base, new)]
    return f"{statistics.median(g):+.1f}% [{min(g):+.1f}, {max(g):+.1f}]"


def render(rows: list[dict], a) -> str:
    med = statistics.median
    lines = [f"Mean JCT (s), median over {a.seeds} seeds; workload synthetic DAG, {a.jobs} jobs, "
             f"stages up to 32 instances, nominal load {a.load:g}, default 8-site cluster. "
             f"Gains are paired per seed: (reference − other) / reference, median [min, max]. "
             f"Oracle: clairvoyant switching among each seed's top {a.top} heuristics in "
             f"{a.epochs} epochs.", "",
             "| contention / warm-up s | best plain heuristic | best srpt-cap | best "
             "weighted-fair | tuned over plain | oracle | oracle over best heuristic | "
             "lower bound |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        c, w = r["model"]
        lines.append(
            f"| {c:g} / {w:g} | {r['plain']} {med(r['plain_jct']):.1f} | "
            f"{r['cap']} {med(r['cap_jct']):.1f} | {r['fair']} {med(r['fair_jct']):.1f} | "
            f"{_gain(r['plain_jct'], r['tuned_jct'])} | {med(r['oracle_jct']):.1f} | "
            f"{_gain(r['best_per_seed'], r['oracle_jct'])} | {med(r['bound']):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
