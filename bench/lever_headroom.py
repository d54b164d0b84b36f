"""What the lever benchmarks (``bench/routing.py``, ``bench/holding.py``) share: every arm on
every seed of every scenario variant (paired: the same seeds), the rollout oracle
(``agents.headroom``) switching among each seed's best arms, paired differences with
bootstrap and paired-t 95% intervals, and the flags' checks."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from agora.agents.headroom import pooled_srpt_bound, rollout_oracle
from agora.agents.sim.config import SimConfig
from agora.agents.sim.report import paired_bootstrap, paired_t
from agora.agents.sim.runner import Scenario, run_one

METRICS = ("jct_mean_s", "remote_runs", "util_gpu")


def run_cell(args) -> dict:
    sc, label, seed, policy = args
    cluster, wl = sc.build(seed)
    m = run_one(cluster, wl, policy, seed=seed,
                config=SimConfig(seed=seed, record_attempts=False)).metrics
    return {"label": label, "seed": seed, "policy": policy, **{k: m[k] for k in METRICS}}


def run_oracle(args) -> dict:
    sc, label, seed, candidates, epochs = args
    cluster, wl = sc.build(seed)
    orc = rollout_oracle(cluster, wl, candidates=candidates, base=candidates[0], epochs=epochs,
                         config=SimConfig(seed=seed, record_attempts=False))
    return {"label": label, "seed": seed, "jct": orc["metrics"]["jct_mean_s"],
            "chosen": orc["epochs"], "bound": pooled_srpt_bound(wl, cluster)["mean_jct"]}


def run_all(variants: dict[float, Scenario], names: list[str], *, seeds: int,
            oracle_seeds: int, top: int, epochs: int, workers: int
            ) -> tuple[dict, dict, list[dict]]:
    """(jct[label][policy][seed], metrics[label][policy][seed] (METRICS), oracle runs)."""
    cells = [(sc, label, s, n) for label, sc in variants.items() for s in range(seeds)
             for n in names]
    t0 = time.perf_counter()
    # spawned, not forked: a fork of a process running threads (gRPC's, torch's) can spin
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        runs = list(pool.map(run_cell, cells))
        print(f"  {len(runs)} runs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        metrics = {label: {n: [None] * seeds for n in names} for label in variants}
        for r in runs:
            metrics[r["label"]][r["policy"]][r["seed"]] = r
        jct = {label: {n: [r["jct_mean_s"] for r in by[n]] for n in names}
               for label, by in metrics.items()}
        jobs = [(variants[label], label, s,
                 sorted(names, key=lambda n: jct[label][n][s])[:top], epochs)
                for label in variants for s in range(oracle_seeds)]
        oracles = list(pool.map(run_oracle, jobs))
    print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return jct, metrics, oracles


def oracle_gains(j: dict, oracles: list[dict]) -> list[float]:
    """The oracle's gain, in %, over the best arm of the same seed."""
    return [100.0 * (min(j[p][o["seed"]] for p in j) - o["jct"])
            / min(j[p][o["seed"]] for p in j) for o in oracles]


def common(j: dict, oracles: list[dict]) -> dict:
    """What every lever's row holds: medians, the oracle's runs and gains, the JCTs."""
    return {"median": {p: statistics.median(v) for p, v in j.items()},
            "oracle": [o["jct"] for o in oracles], "oracle_chosen": [o["chosen"] for o in oracles],
            "bound": [o["bound"] for o in oracles], "oracle_gain": oracle_gains(j, oracles),
            "jct": j}


def gain_text(row: dict) -> str:
    g = row["oracle_gain"]
    return f"{statistics.median(g):.1f}% [{min(g):.1f}, {max(g):.1f}]" if g else "–"


FOOTER = ["", "Mean JCT in s, medians over seeds; differences are (a − b) / b per seed, "
          "negative: the first arm is faster."]


def run_and_write(a, variants: dict, names: list[str], summarise, render) -> int:
    """Run every arm and the oracle (``run_all``), a row per variant (``summarise(label, jct,
    metrics, oracles)``), print ``render(rows, a)`` and write it to ``a.out`` .md, the rows
    to .json."""
    jct, metrics, oracles = run_all(variants, names, seeds=a.seeds, oracle_seeds=a.oracle_seeds,
                                    top=a.top, epochs=a.epochs, workers=a.workers)
    rows = [summarise(v, jct[v], metrics[v], [o for o in oracles if o["label"] == v])
            for v in variants]
    table = render(rows, a)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(table + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1) + "\n")
    return 0


def paired(a: list[float], b: list[float]) -> dict:
    """(a - b) / b per seed, in %: mean, bootstrap and paired-t 95% intervals."""
    d = [100.0 * (x - y) / y for x, y in zip(a, b)]
    mean, lo, hi = paired_bootstrap(d)
    t_lo, t_hi = paired_t(d)
    return {"mean": mean, "lo": lo, "hi": hi, "t_lo": t_lo, "t_hi": t_hi, "values": d}


def cell(p: dict) -> str:
    return (f"{p['mean']:+.2f}% [{p['lo']:+.2f}, {p['hi']:+.2f}] "
            f"(t [{p['t_lo']:+.2f}, {p['t_hi']:+.2f}])")


def numbers(p: argparse.ArgumentParser, flag: str, text: str) -> list[float]:
    """``text`` as comma-separated numbers >= 0, or ``p.error`` naming ``flag``."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = [-1.0]
    if any(not 0 <= v < float("inf") for v in values):
        p.error(f"{flag} {text!r}: expected comma-separated numbers >= 0, e.g. 0.5,1")
    return values


def add_run_flags(p: argparse.ArgumentParser, *, seeds: int = 20) -> None:
    p.add_argument("--seeds", type=int, default=seeds)
    p.add_argument("--oracle-seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)


def check_seeds(p: argparse.ArgumentParser, a) -> None:
    if a.seeds < 2 or not 0 <= a.oracle_seeds <= a.seeds:
        p.error(f"--seeds {a.seeds} / --oracle-seeds {a.oracle_seeds}: expected --seeds >= 2 "
                f"(paired intervals) and 0 <= --oracle-seeds <= --seeds")
