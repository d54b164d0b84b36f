"""Federated training against its two references, on both federation setups (issue 5):

(i)   **local**: every organisation trains alone on its own episodes;
(ii)  **federated**: Flower FedAvg rounds over the organisations (``federation/train.py``);
(iii) **central**: one learner on episodes drawn from every organisation in turn (what a
      federation approximates without moving data; it needs every site's trajectories, the
      privacy-violating upper reference).

Same initial weights (``torch.manual_seed(seed)``), same per-site seeds, the same SRPT warm
start per organisation (central: all of them) and the same environment steps: R rounds × K
steps per site for (i) and (ii), and R × K × sites for (iii). Every approach's final weights
are evaluated greedily on each organisation's **test** episodes (validation-split episodes
``TEST_FIRST`` .. ``TEST_FIRST + N - 1``: seeds ``VAL_SEED_BASE + 100 + i``, never used for
training, and no approach selects weights on them), beside SJF and the SRPT-market reference on
the same episodes. Also:

(iv)  round overhead: 16 sites holding the real network's weights, no local training (steps
      = 0): time of a round (train messages out and back through the ``SiteGrid`` + Flower's
      aggregation + evaluate messages), median over rounds, and bytes per round;
(v)   a Byzantine organisation (the global weights scaled, or noise; its step count
      claimed) added to the synthetic setup, under FedAvg, FedMedian and FedTrimmedAvg.

    python -m bench.federation [--rounds 8 --local-steps 500] [--setups synthetic-noniid,alibaba-by-type]
    python -m bench.federation --only byzantine      # rerun one section, keep the others

Writes ``bench/results/federation.md``, ``federation.json`` and ``federation-<setup>.png``.
The runs are in ``bench/federation_runs.py``, the summary, table and curves in
``bench/federation_report.py``; this module reads the flags and writes the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from agora.agents.learn.loop import TrainConfig
from agora.agents.sim.report import markdown_table
from agora.federation.domains import DEFAULT_TRACES, load_setup
from agora.federation.train import FedTrainConfig
from bench.federation_report import plot_curves, quality_md, summarise
from bench.federation_runs import TEST_FIRST, byzantine, compare, overhead

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
KEEP = "<!-- hand-written below this line: kept when bench/federation.py rewrites the tables -->"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


SECTIONS = ("compare", "overhead", "byzantine")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="sections to (re)run; the others are kept from federation.json")
    p.add_argument("--setups", default="synthetic-noniid,alibaba-by-type")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--local-steps", type=int, default=500, help="steps per site per round")
    p.add_argument("--train-jobs", type=int, default=100)
    p.add_argument("--bc-episodes", type=int, default=2, help="per organisation")
    p.add_argument("--val-episodes", type=int, default=2, help="per site, for the curves")
    p.add_argument("--test-episodes", type=int, default=6, help="per site, for the tables")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--traces", default=str(DEFAULT_TRACES))
    p.add_argument("--overhead-sites", type=int, default=16)
    p.add_argument("--overhead-rounds", type=int, default=12)
    p.add_argument("--byz-rounds", type=int, default=3)
    p.add_argument("--byz-attacks", default="scaled:-4,random:1",
                   help="ATTACK:SCALE,...: weights x SCALE, or N(0, SCALE) noise")
    p.add_argument("--work", default="out/bench-federation", help="scratch runs")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    work, res_dir = Path(a.work), Path(a.out)
    res_dir.mkdir(parents=True, exist_ok=True)
    site = TrainConfig(train_jobs=a.train_jobs, bc_episodes=a.bc_episodes,
                       val_episodes=a.val_episodes)
    cfg = FedTrainConfig(rounds=a.rounds, local_steps=a.local_steps, seed=a.seed, site=site)
    only = a.only.split(",")
    jpath = res_dir / "federation.json"
    report = json.loads(jpath.read_text()) if set(only) != set(SECTIONS) and jpath.exists() \
        else {"runs": [], "md": {}, "setups": {}}
    run = {"command": "python -m bench.federation " + " ".join(sys.argv[1:] if argv is None
                                                               else argv),
           "sections": only, "config": cfg.to_dict(), "test_first": TEST_FIRST,
           "test_episodes": a.test_episodes, "loadavg_start": loadavg(), "cpus": os.cpu_count()}
    t_all = time.perf_counter()
    if "compare" in only:
        for name in a.setups.split(","):
            setup = load_setup(name, traces=a.traces, cache=work / "setups")
            la = loadavg()
            res = compare(setup, cfg, work / name, a.test_episodes, log)
            summ = summarise(res)
            plot_curves(name, res, res_dir / f"federation-{name}.png")
            report["setups"][name] = {"setup": setup.to_dict(), "summary": summ, "raw": res,
                                      "loadavg": [la, loadavg()]}
            report["md"][name] = (quality_md(name, res, summ, a.test_episodes)
                                  + f"\nLoad average (1, 5, 15 min) before / after: {la} / "
                                    f"{loadavg()}. Curves: `bench/results/federation-{name}.png`.\n")
            print(report["md"][name], flush=True)
    if "overhead" in only:
        la = loadavg()
        report["overhead"] = rows = overhead(a.overhead_sites, a.overhead_rounds, log)
        ov = markdown_table(
            ["strategy", "sites", "rounds", "round ms (median)", "Grid trips ms",
             "aggregation ms", "bytes / round"],
            [[r["strategy"], str(r["sites"]), str(r["rounds"]), f"{r['round_s_median'] * 1e3:.1f}",
              f"{r['grid_trips_s_median'] * 1e3:.1f}", f"{r['aggregation_s_median'] * 1e3:.1f}",
              "-" if r["bytes_per_round"] is None else f"{r['bytes_per_round']:,}"] for r in rows])
        report["md"]["overhead"] = (
            f"### Round overhead (no local training)\n\n{ov}\n\nThe network: "
            f"{rows[0]['params']:,} parameters, {rows[0]['model_bytes']:,} bytes as float32; a "
            f"round sends it to every site twice (train, evaluate) and receives it once per "
            f"site. Load average before / after: {la} / {loadavg()}.\n")
        print(report["md"]["overhead"], flush=True)
    if "byzantine" in only:
        setup = load_setup("synthetic-noniid")
        attacks = [(x.split(":")[0], float(x.split(":")[1])) for x in a.byz_attacks.split(",")]
        la = loadavg()
        rows = byzantine(setup, replace(cfg, rounds=a.byz_rounds), work / "byzantine",
                         a.test_episodes, attacks, log)
        report["byzantine"] = rows
        t = markdown_table(["strategy", "Byzantine site", "JCT s (honest sites' mean)", "score"],
                           [[r["strategy"], r["attack"], f"{r['jct_mean_s']:.1f}",
                             f"{r['score']:.4f}"] for r in rows])
        report["md"]["byzantine"] = (
            f"### A Byzantine organisation (synthetic-noniid + 1; {a.byz_rounds} rounds × "
            f"{a.local_steps} steps)\n\n{t}\n\n'scaled -4': it sends the global weights × −4; "
            f"'random 1': N(0, 1) noise; either way it claims the full step count. "
            f"Load average before / after: {la} / {loadavg()}.\n")
        print(report["md"]["byzantine"], flush=True)
    run["wall_s"] = round(time.perf_counter() - t_all, 1)
    run["loadavg_end"] = loadavg()
    report["runs"].append(run)
    jpath.write_text(json.dumps(report, indent=1, default=str))
    head = "## Federated training benchmark\n\n" + "".join(
        f"- `{r['command']}` ({', '.join(r['sections'])}): {r['wall_s']:.0f} s wall on "
        f"{r['cpus']} cores (shared), load average at start {r['loadavg_start']}, at end "
        f"{r['loadavg_end']}\n" for r in report["runs"])
    c = cfg
    head += (f"\nBudget: {c.rounds} rounds × {c.local_steps} environment steps per site "
             f"(central: × sites), {c.site.train_jobs} jobs per episode, SRPT warm start on "
             f"{c.site.bc_episodes} episodes per organisation, seed {c.seed}.\n\n")
    order = [k for k in report["md"] if k not in ("overhead", "byzantine")] + \
        [k for k in ("overhead", "byzantine") if k in report["md"]]
    md_path = res_dir / "federation.md"
    kept = ""
    if md_path.exists() and KEEP in md_path.read_text():
        kept = md_path.read_text().split(KEEP, 1)[1]
    md_path.write_text(head + "\n".join(report["md"][k] for k in order) + f"\n{KEEP}" + kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
