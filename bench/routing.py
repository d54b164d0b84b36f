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
import statistics
import sys
from pathlib import Path

from agora.agents.sim.runner import Scenario
from bench.lever_headroom import FOOTER, add_run_flags, cell, check_seeds, common, gain_text, \
    numbers, paired, run_and_write

REPO = Path(__file__).resolve().parent.parent
GREEDY = ("sjf", "srpt")


def scenario(jobs: int, load: float, skew: float, data_mb: float) -> Scenario:
    return Scenario(workload=f"synthetic:jobs={jobs},load={load:g},dag=0.8,"
                             f"origin_skew={skew:g},data_mb_mean={data_mb:g}")


def summarise(data: float, j: dict, metrics: dict, oracles: list[dict]) -> dict:
    mean = lambda p: statistics.mean(j[p])              # noqa: E731
    greedy = min(GREEDY, key=mean)
    delay = min((p for p in j if p.startswith("srpt-delay:")), key=mean)
    return {"data_mb": data, "greedy": greedy, "delay": delay, "best": min(j, key=mean),
            "remote": {p: statistics.median(r["remote_runs"] for r in v)
                       for p, v in metrics.items()},
            "eft_vs_srpt": paired(j["srpt-eft"], j["srpt"]),
            "eft_vs_delay": paired(j["srpt-eft"], j[delay]),
            "eft_vs_greedy": paired(j["srpt-eft"], j[greedy]),
            **common(j, oracles)}


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
        bound = f"{statistics.median(r['bound']):.0f}" if r["bound"] else "–"
        out.append(f"| {r['data_mb']:g} | {m['sjf']:.1f} | {m['srpt']:.1f} | "
                   f"{m[r['delay']]:.1f} ({r['delay']}) | {m['srpt-eft']:.1f} | "
                   f"{cell(r['eft_vs_srpt'])} | {cell(r['eft_vs_delay'])} | "
                   f"{cell(r['eft_vs_greedy'])} ({r['greedy']}) | {gain_text(r)} | {bound} | "
                   f"{r['remote']['srpt']:.0f} / {r['remote']['srpt-eft']:.0f} |")
    return "\n".join(out + FOOTER)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--load", type=float, default=0.9)
    p.add_argument("--skew", type=float, default=1.0)
    p.add_argument("--data", default="200,20000,100000", help="mean input MB, comma-separated")
    p.add_argument("--waits", default="30,120,600", help="srpt-delay's τ values, seconds")
    add_run_flags(p)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "routing")
    a = p.parse_args(argv)
    datas = numbers(p, "--data", a.data)
    waits = numbers(p, "--waits", a.waits)
    check_seeds(p, a)
    names = [*GREEDY, *(f"srpt-delay:{w:g}" for w in waits), "srpt-eft"]
    variants = {d: scenario(a.jobs, a.load, a.skew, d) for d in datas}
    return run_and_write(a, variants, names, summarise, render)


if __name__ == "__main__":
    sys.exit(main())
