"""Federation where it can help (issue 13): a new organisation joining from the federated gpu
placer against one learning alone, in replays of its own workload to a quality threshold.

    python -m bench.federation_placement [--traces ../shared/workloads] [--sites 16]
        [--rounds 3] [--local-replays 32] [--iters 6] [--population 6] [--seeds 2]
        [--test-orders 8] [--lists default,gpushare40,gpuspec33,multigpu50] [--seed 0]
        [--out bench/results]

Organisations are the Alibaba openb workload families (the authors' pod lists), each on its
own nodes: the node list split into ``--sites`` stratified sites, family k on site k. For each
family in turn (the newcomer), the other organisations run ``--rounds`` Flower rounds (FedAvg,
``federation.server.run_federation`` over ``federation.placement_learner``: each site searches
from the round's aggregate with ``--local-replays`` replays of its own tasks, on its own nodes;
only weights cross). Then the newcomer searches its own replays (CEM, ``--iters`` iterations of
``--population``, 2 arrival orders) from four starts, each with ``--seeds`` search seeds:

- ``scratch``: from zero weights (a placer that knows nothing: it takes the first node that
  fits);
- ``alone``: from FGD's weights (what a site does without a federation: the strongest
  heuristic is its prior);
- ``federated``: from the federation's weights;
- ``federated, checked``: it scores the federation's weights on its own replays first and
  starts from them only if they beat FGD there, else from FGD (the placer's adoption rule).

Thresholds: a fixed one, 10% fewer unallocated gpus than FGD (cost ÷ FGD's <= 0.9), and a
relative one, 90% of the gain over FGD that ``alone`` reaches with the whole budget (median
over search seeds). Steps = replays of the newcomer's own tasks until the best weights so far
reach a threshold, per seed, and their median (a seed that never reaches it counts as more
than the budget), compared with alone's and scratch's. The test: the best weights of each
start on ``--test-orders`` other arrival orders of the newcomer's tasks, paired with FGD.
``--render FILE`` prints the tables of a saved report again.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from agora.agents.domain import Cluster
from agora.agents.learn.placement import FEATURES, fgd_weights
from agora.agents.sim.report import markdown_table, paired_bootstrap
from agora.agents.workloads.alibaba import read_alibaba_nodes, read_alibaba_pod_demands
from agora.federation.client_app import make_client_app
from agora.federation.grid import grid_of
from agora.federation.placement_learner import (PlacementSiteLearner, SearchTrace,
                                                SiteReplays, replays_to, search)
from agora.federation.server import (FederationConfig, round_metrics, round_seed,
                                     run_federation, site_seed)
from bench.scenarios import DEFAULT_TRACES, REPO

LISTS = ("default", "gpushare40", "gpuspec33", "multigpu50")
TRAIN_ORDERS = (0, 1)
FIXED = 0.9
"""the fixed quality threshold: 10% fewer unallocated gpus than FGD (cost ÷ FGD's <= 0.9)"""
GAIN_SHARE = 0.9
"""the relative threshold: this share of the gain over FGD that the site reaches alone"""
STARTS = ("scratch", "alone", "federated", "federated, checked")


def _fmt(x: float) -> str:
    return "–" if math.isinf(x) else f"{x:.0f}"


def _share(steps: float, ref: float, budget: int) -> str:
    """``steps`` as a share of ``ref``'s; a reference that never reached the threshold
    needed more than the whole ``budget``, so the share is below steps / budget."""
    if math.isinf(steps):
        return "not reached"
    if math.isinf(ref):
        return f"< {steps / budget:.0%}"
    return f"{steps / ref:.0%}" if ref else "–"


def render(report: dict) -> str:
    """The tables of a report (``federation-placement.json``): for each threshold, each
    newcomer family and start, the replays each search seed needed and their median (a seed
    that never reached it counts as more than the budget) against alone's and scratch's."""
    cfg = report["config"]
    fams = [k for k in report if k != "config"]
    out = [f"Federated gpu placer: FedAvg over the other families' sites ({cfg['rounds']} "
           f"rounds, {cfg['local_replays']} replays per site per round, federation seed "
           f"{cfg['seed']}), then the newcomer's CEM ({cfg['iters']} × {cfg['population']}, "
           f"arrival orders {list(TRAIN_ORDERS)}, {cfg['seeds']} search seeds; family k on site "
           f"k of {cfg['sites']}). Cost: mean unallocated gpu share at 100–130% arrived, ÷ FGD's "
           f"on the same orders. Features: {', '.join(FEATURES)}.", ""]
    for title, thr_of in (
            (f"Threshold {FIXED}: {1 - FIXED:.0%} fewer unallocated gpus than FGD",
             lambda e: FIXED),
            (f"Threshold: {GAIN_SHARE:.0%} of the gain over FGD that alone reaches with the "
             f"whole budget", lambda e: 1.0 - GAIN_SHARE * max(0.0, 1.0 - e["alone_final_ratio"]))):
        rows = []
        for fam in fams:
            e = report[fam]
            thr, budget = thr_of(e), e["budget_replays"]
            med = {k: float(np.median([replays_to(c, thr) for c in v["curves"]]))
                   for k, v in e["starts"].items()}
            for k in STARTS:
                v = e["starts"][k]
                m, lo, hi = v["test_gain_vs_fgd"]
                rows.append([fam if k == STARTS[0] else "", k, f"{thr:.3f}",
                             f"{v['start_ratio']:.3f}", f"{min(v['final_ratio']):.3f}",
                             " / ".join(_fmt(replays_to(c, thr)) for c in v["curves"]),
                             _share(med[k], med["alone"], budget),
                             _share(med[k], med["scratch"], budget),
                             f"{100 * m:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]"])
        out += [f"**{title}** (budget {report[fams[0]]['budget_replays']} replays per "
                f"search; –: not reached within it)", "",
                markdown_table(["newcomer's family", "start", "threshold", "start's ratio",
                                "best ratio", "replays to threshold, per seed",
                                "median ÷ alone's", "median ÷ scratch's",
                                f"test: fewer unallocated gpus than FGD "
                                f"({cfg['test_orders']} orders, 95% bootstrap)"], rows), ""]
    return "\n".join(out) + "\n"


def federate(orgs: dict[str, SiteReplays], rounds: int, local_replays: int, population: int,
             seed: int) -> tuple[np.ndarray, list[dict]]:
    """FedAvg rounds over the organisations' placer learners; the aggregate and per-round
    metrics (Flower's aggregates of the sites' reports)."""
    learners = [PlacementSiteLearner(name, r, train_orders=TRAIN_ORDERS, population=population,
                                     seed=site_seed(seed, i))
                for i, (name, r) in enumerate(orgs.items())]
    grid = grid_of(learners, make_client_app)
    weights, rows = [fgd_weights()], []
    try:
        for r in range(1, rounds + 1):
            res = run_federation(grid, weights, FederationConfig(
                rounds=1, local_steps=local_replays, strategy="fedavg", min_fraction=1.0,
                seed=round_seed(seed, r)))
            if len(res.arrays):
                weights = res.arrays.to_numpy_ndarrays()
            rows.append({"round": r, "weights": [round(float(x), 4) for x in weights[0]],
                         **round_metrics(res)})
    finally:
        grid.close()
    return np.asarray(weights[0], dtype=float), rows


def newcomer(rep: SiteReplays, fed: np.ndarray, a: argparse.Namespace) -> dict:
    """The three starts' searches on the newcomer's replays, each with ``a.seeds`` seeds."""
    def runs_from(w0: np.ndarray) -> list[dict]:
        out = []
        for s in range(a.seeds):
            w, trace = search(rep, w0, TRAIN_ORDERS, iters=a.iters, population=a.population,
                              sigma=0.5, seed=1000 + s)
            out.append({"weights": w, "trace": trace})
        return out

    out = {"scratch": runs_from(np.zeros(len(FEATURES))), "alone": runs_from(fgd_weights()),
           "federated": runs_from(fed)}
    fed_ratio = out["federated ratio"] = out["federated"][0]["trace"].ratios[0]  # its start
    if fed_ratio < 1.0:
        out["federated, checked"] = out["federated"]
    else:
        # it scored the federation's weights on its own replays (worse than FGD), then
        # searched from FGD: the same searches as alone, after those replays
        out["federated, checked"] = [
            {"weights": r["weights"],
             "trace": SearchTrace(replays=[len(TRAIN_ORDERS)] + r["trace"].replays,
                                  ratios=[fed_ratio] + r["trace"].ratios)}
            for r in out["alone"]]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    p.add_argument("--sites", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-replays", type=int, default=32)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--population", type=int, default=6)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--test-orders", type=int, default=8)
    p.add_argument("--lists", default=",".join(LISTS))
    p.add_argument("--seed", type=int, default=0, help="the federation's seed")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--render", type=Path, default=None,
                   help="print the tables of a saved federation-placement.json and stop")
    a = p.parse_args(argv)
    if a.render is not None:
        try:
            print(render(json.loads(a.render.read_text())))
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--render {a.render}: {e}; expected a federation-placement.json")
        return 0
    lists = [x for x in a.lists.split(",") if x]
    if len(lists) < 2 or any(x not in LISTS for x in lists):
        p.error(f"--lists: {a.lists!r}; expected two or more of {', '.join(LISTS)}")
    if a.sites < len(lists):
        p.error(f"--sites: {a.sites}; expected at least one site per list ({len(lists)})")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    log = lambda m: print(m, file=sys.stderr, flush=True)      # noqa: E731
    d = a.traces / "alibaba-openb-2023"
    split = read_alibaba_nodes(d / "openb_node_list_all_node.csv", sites=a.sites)
    reps = {n: SiteReplays(Cluster(sites=(split.sites[k],), source=split.source),
                           [x for _, x in read_alibaba_pod_demands(d / f"openb_pod_list_{n}.csv")])
            for k, n in enumerate(lists)}
    test_orders = list(range(2000, 2000 + a.test_orders))
    rows, report = [], {"config": {k: (str(v) if isinstance(v, Path) else v)
                                   for k, v in vars(a).items()}}
    for held in lists:
        t0 = time.perf_counter()
        fed, fed_rows = federate({n: reps[n] for n in lists if n != held}, a.rounds,
                                 a.local_replays, a.population, a.seed)
        fed_s = time.perf_counter() - t0
        log(f"{held}: federated weights {np.round(fed, 3)} ({fed_s:.0f} s)")
        rep = reps[held]
        runs = newcomer(rep, fed, a)
        budget = a.iters * a.population * len(TRAIN_ORDERS)
        alone_final = float(np.median([min(r["trace"].ratios) for r in runs["alone"]]))
        fgd_test = [rep.fgd(o) for o in test_orders]
        entry = {"federation_s": fed_s, "federated_weights": fed.tolist(),
                 "federation_rounds": fed_rows, "federated_ratio": runs["federated ratio"],
                 "alone_final_ratio": alone_final, "budget_replays": budget, "starts": {}}
        for start in STARTS:
            best = min(runs[start], key=lambda r: min(r["trace"].ratios))
            test = [rep.run(o, best["weights"]) for o in test_orders]
            entry["starts"][start] = {
                "start_ratio": runs[start][0]["trace"].ratios[0],
                "final_ratio": [min(r["trace"].ratios) for r in runs[start]],
                "weights": best["weights"].tolist(),
                "test_gain_vs_fgd": paired_bootstrap([(f - x) / f
                                                      for f, x in zip(fgd_test, test)]),
                "curves": [r["trace"].best_curve() for r in runs[start]]}
        report[held] = entry
        log(f"{held}: " + ", ".join(f"{k} {min(e['final_ratio']):.3f}"
                                    for k, e in entry["starts"].items()))
    text = render(report)
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "federation-placement.md").write_text(text)
    (a.out / "federation-placement.json").write_text(json.dumps(report, indent=1,
                                                                default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
