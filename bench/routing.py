"""Headroom of the routing lever (where a task runs, given that its inputs are at its job's
origin and the links between sites), and what knowing when the origin frees is worth.

    python -m bench.routing [--seeds 20] [--jobs 400] [--load 0.9] [--skew 1.0]
        [--data 200,20000,100000] [--waits 30,120,600] [--oracle-seeds 3] [--epochs 8]
        [--top 3] [--workers 2] [--out bench/results/routing]

The workload is the seeded synthetic generator's (80% DAG jobs) on the default 8-site cluster
(links of 0.2-40 Gbit/s), origins Zipf-skewed over the sites (``--skew``) so that some sites
must hand work on, with mean inputs of ``--data`` MB a task: 200 MB is the generator's default
(a transfer of well under a second), 20 GB and 100 GB are inputs of geo-distributed
analytics and genomics (Pu et al., "Low latency geo-distributed data analytics", SIGCOMM
2015, study queries whose inputs sit in several sites joined by WAN links), where moving them
takes seconds to minutes and can cost more than waiting.

Arms, all with the same seeds (paired):

- the greedy baselines (``sjf``, ``srpt``): a task goes to the nearest site with room;
- ``srpt-delay:τ``: waits for the origin when moving the inputs takes τ s or more, knowing
  nothing of when the origin frees (delay scheduling), τ tuned over ``--waits`` on the same
  seeds (which flatters it);
- ``srpt-eft``: waits only when the origin frees before the transfer would end (HEFT's
  earliest finish time; ``agents.baselines.routing``): the same rule knowing the origin's
  end times, the information a message would have to carry if the ledger did not;
- the rollout oracle (``agents.headroom``) switching among the top ``--top`` of them, on the
  first ``--oracle-seeds`` seeds, and the pooled lower bound.

Prints a markdown table (mean JCT medians; paired differences with bootstrap and paired-t 95%
intervals) and writes ``--out`` .md and .json.
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
from agora.agents.sim.config import SimConfig
from agora.agents.sim.report import paired_bootstrap, paired_t
from agora.agents.sim.runner import Scenario, run_one

REPO = Path(__file__).resolve().parent.parent
GREEDY = ("sjf", "srpt")


def scenario(jobs: int, load: float, skew: float, data_mb: float) -> Scenario:
    return Scenario(workload=f"synthetic:jobs={jobs},load={load:g},dag=0.8,"
                             f"origin_skew={skew:g},data_mb_mean={data_mb:g}")


def run_cell(args) -> dict:
    sc, data, seed, policy = args
    cluster, wl = sc.build(seed)
    m = run_one(cluster, wl, policy, seed=seed,
                config=SimConfig(seed=seed, record_attempts=False)).metrics
    return {"data": data, "seed": seed, "policy": policy, "jct": m["jct_mean_s"],
            "remote": m["remote_runs"]}


def run_oracle(args) -> dict:
    sc, data, seed, candidates, epochs = args
    cluster, wl = sc.build(seed)
    orc = rollout_oracle(cluster, wl, candidates=candidates, base=candidates[0], epochs=epochs,
                         config=SimConfig(seed=seed, record_attempts=False))
    return {"data": data, "seed": seed, "jct": orc["metrics"]["jct_mean_s"],
            "chosen": orc["epochs"], "bound": pooled_srpt_bound(wl, cluster)["mean_jct"]}


def paired(a: list[float], b: list[float]) -> dict:
    """(a - b) / b per seed, in %: mean, bootstrap and paired-t 95% intervals."""
    d = [100.0 * (x - y) / y for x, y in zip(a, b)]
    mean, lo, hi = paired_bootstrap(d)
    t_lo, t_hi = paired_t(d)
    return {"mean": mean, "lo": lo, "hi": hi, "t_lo": t_lo, "t_hi": t_hi, "values": d}


def summarise(data: float, j: dict, remote: dict, oracles: list[dict]) -> dict:
    mean = lambda p: statistics.mean(j[p])              # noqa: E731
    greedy = min(GREEDY, key=mean)
    delay = min((p for p in j if p.startswith("srpt-delay:")), key=mean)
    best = min(j, key=mean)
    return {"data_mb": data, "greedy": greedy, "delay": delay, "best": best,
            "median": {p: statistics.median(v) for p, v in j.items()},
            "remote": {p: statistics.median(v) for p, v in remote.items()},
            "eft_vs_srpt": paired(j["srpt-eft"], j["srpt"]),
            "eft_vs_delay": paired(j["srpt-eft"], j[delay]),
            "eft_vs_greedy": paired(j["srpt-eft"], j[greedy]),
            "oracle": [o["jct"] for o in oracles], "oracle_chosen": [o["chosen"] for o in oracles],
            "bound": [o["bound"] for o in oracles],
            "oracle_gain": [100.0 * (min(j[p][o["seed"]] for p in j) - o["jct"])
                            / min(j[p][o["seed"]] for p in j) for o in oracles],
            "jct": j}


def cell(p: dict) -> str:
    return (f"{p['mean']:+.2f}% [{p['lo']:+.2f}, {p['hi']:+.2f}] "
            f"(t [{p['t_lo']:+.2f}, {p['t_hi']:+.2f}])")


def render(rows: list[dict], a) -> str:
    out = [f"Routing with data movement: synthetic DAG, {a.jobs} jobs, load {a.load:g}, origin "
           f"skew {a.skew:g}, {a.seeds} seeds (paired; bootstrap 10,000 resamples, seed 20231); "
           f"oracle on seeds 0..{a.oracle_seeds - 1}, {a.epochs} epochs, top {a.top}.", "",
           "| inputs (mean MB) | sjf | srpt | best srpt-delay | srpt-eft | eft − srpt | "
           "eft − best delay | eft − best greedy | oracle's gain over the best arm "
           "[min, max] | bound | remote runs srpt / eft |",
           "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: | --- |"]
    for r in rows:
        m = r["median"]
        g = r["oracle_gain"]
        gain = (f"{statistics.median(g):.1f}% [{min(g):.1f}, {max(g):.1f}]" if g else "–")
        bound = f"{statistics.median(r['bound']):.0f}" if r["bound"] else "–"
        out.append(f"| {r['data_mb']:g} | {m['sjf']:.1f} | {m['srpt']:.1f} | "
                   f"{m[r['delay']]:.1f} ({r['delay']}) | {m['srpt-eft']:.1f} | "
                   f"{cell(r['eft_vs_srpt'])} | {cell(r['eft_vs_delay'])} | "
                   f"{cell(r['eft_vs_greedy'])} ({r['greedy']}) | {gain} | {bound} | "
                   f"{r['remote']['srpt']:.0f} / {r['remote']['srpt-eft']:.0f} |")
    out += ["", "Mean JCT in s, medians over seeds; differences are (a − b) / b per seed, "
            "negative: the first arm is faster."]
    return "\n".join(out)


def numbers(p: argparse.ArgumentParser, flag: str, text: str) -> list[float]:
    """``text`` as comma-separated numbers >= 0, or ``p.error`` naming ``flag``."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        values = [-1.0]
    if any(not 0 <= v < float("inf") for v in values):
        p.error(f"{flag} {text!r}: expected comma-separated numbers >= 0, e.g. 200,20000")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--load", type=float, default=0.9)
    p.add_argument("--skew", type=float, default=1.0)
    p.add_argument("--data", default="200,20000,100000", help="mean input MB, comma-separated")
    p.add_argument("--waits", default="30,120,600", help="srpt-delay's τ values, seconds")
    p.add_argument("--oracle-seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "routing")
    a = p.parse_args(argv)
    datas = numbers(p, "--data", a.data)
    waits = numbers(p, "--waits", a.waits)
    if a.seeds < 2 or not 0 <= a.oracle_seeds <= a.seeds:
        p.error(f"--seeds {a.seeds} / --oracle-seeds {a.oracle_seeds}: expected --seeds >= 2 "
                f"(paired intervals) and 0 <= --oracle-seeds <= --seeds")
    names = [*GREEDY, *(f"srpt-delay:{w:g}" for w in waits), "srpt-eft"]
    scs = {d: scenario(a.jobs, a.load, a.skew, d) for d in datas}
    cells = [(scs[d], d, s, n) for d in datas for s in range(a.seeds) for n in names]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.workers, mp_context=mp.get_context("spawn")) as pool:
        runs = list(pool.map(run_cell, cells))
        print(f"  {len(runs)} runs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        jct = {d: {n: [0.0] * a.seeds for n in names} for d in datas}
        remote = {d: {n: [0] * a.seeds for n in names} for d in datas}
        for r in runs:
            jct[r["data"]][r["policy"]][r["seed"]] = r["jct"]
            remote[r["data"]][r["policy"]][r["seed"]] = r["remote"]
        jobs = [(scs[d], d, s, sorted(names, key=lambda n: jct[d][n][s])[:a.top], a.epochs)
                for d in datas for s in range(a.oracle_seeds)]
        oracles = list(pool.map(run_oracle, jobs))
    print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = [summarise(d, jct[d], remote[d], [o for o in oracles if o["data"] == d])
            for d in datas]
    table = render(rows, a)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(table + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(a).items()}, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
