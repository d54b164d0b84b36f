"""A learned width rule for malleable stages (``agents.learn.width``) against the tuned
heuristics, on held-out seeds.

    python -m bench.width_learning [--model 0.2/0] [--jobs 200] [--load 0.9]
        [--train-seeds 0,1,2] [--test-seeds 10-19] [--caps 1,2,4,8,16,inf]
        [--alphas -1,-0.5,0,0.5,1] [--iters 6] [--population 8] [--sigma 1.5] [--workers 2]
        [--out bench/results/width-learning]

1. Tune on the training seeds: ``srpt-cap:P`` over ``--caps`` and ``weighted-fair:A`` over
   ``--alphas``, each keeping the value with the lowest mean JCT.
2. Search the learned rule's weights by CEM (``placement.cem``; seed 0), starting from the
   better of the two tuned heuristics (the rule reproduces either exactly; its fair-share
   feature uses the tuned exponent), on the training seeds' episodes: the cost is the mean
   over episodes of the rule's mean JCT over the start's (CEM never returns worse than its
   start on this cost).
3. Evaluate on the test seeds (fresh workloads, never seen in 1 or 2): the plain heuristics
   (``bench.malleable.PLAIN``), the tuned cap, the tuned weighted fair, and the learned rule;
   paired differences (other − learned) / other per seed, mean and seeded bootstrap 95%
   interval (``report.paired_bootstrap``).

The workload is ``bench.malleable``'s (synthetic DAG jobs, stages up to 32 instances, default
8-site cluster); ``--model`` is contention/warm-up seconds (``Malleability``). Writes ``--out``
.md and .json (the weights, each run's JCT, the search's history).
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

import numpy as np

from agora.agents.learn.placement import cem
from agora.agents.learn.width import FEATURES, LearnedWidth, start_weights
from agora.agents.sim.config import Malleability
from agora.agents.sim.engine import Simulator
from agora.agents.sim.report import paired_bootstrap
from agora.agents.sim.runner import run_one
from bench.malleable import PLAIN, REPO, episode, scenario


def seeds_arg(text: str) -> list[int]:
    """'0,1,2' or '10-19'."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return out


def mean_jct(args) -> float:
    """Mean JCT of one policy (a name, or learned weights and exponent) on one seed's run."""
    jobs, load, model, seed, policy = args
    cluster, wl, cfg = episode(scenario(jobs, load), model, seed)
    if isinstance(policy, str):
        return run_one(cluster, wl, policy, seed=seed, config=cfg).metrics["jct_mean_s"]
    weights, alpha = policy
    return Simulator(cluster, wl, cfg).run(LearnedWidth(weights, alpha)).metrics["jct_mean_s"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="0.2/0")
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--load", type=float, default=0.9)
    p.add_argument("--train-seeds", default="0,1,2")
    p.add_argument("--test-seeds", default="10-19")
    p.add_argument("--caps", default="1,2,4,8,16,inf")
    p.add_argument("--alphas", default="-1,-0.5,0,0.5,1")
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--sigma", type=float, default=1.5,
                   help="CEM's first spread of each weight (a start far above every job's "
                        "width, e.g. srpt-cap:inf, needs a wide one to move at all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "width-learning")
    a = p.parse_args(argv)
    try:
        model = tuple(float(x) for x in a.model.split("/"))
        Malleability(*model)
        train, test = seeds_arg(a.train_seeds), seeds_arg(a.test_seeds)
    except (ValueError, TypeError) as e:
        p.error(f"--model / seeds: {e}")
    if set(train) & set(test):
        p.error("--train-seeds and --test-seeds overlap; the test must be on unseen seeds")
    t0 = time.perf_counter()
    log = lambda *x: print(*x, file=sys.stderr, flush=True)  # noqa: E731
    # spawned, not forked: a fork of a process running threads (gRPC's, torch's: a test
    # worker after other tests) spun at 100% of a core in the child, for good
    with ProcessPoolExecutor(a.workers, mp_context=mp.get_context("spawn")) as pool:
        def jcts(policy, seeds):
            return list(pool.map(mean_jct, [(a.jobs, a.load, model, s, policy) for s in seeds]))

        caps = [f"srpt-cap:{c}" for c in a.caps.split(",")]
        alphas = [f"weighted-fair:{x}" for x in a.alphas.split(",")]
        tuning = {n: jcts(n, train) for n in caps + alphas}
        cap = min(caps, key=lambda n: statistics.mean(tuning[n]))
        fair = min(alphas, key=lambda n: statistics.mean(tuning[n]))
        log(f"tuned on seeds {train}: {cap}, {fair} ({time.perf_counter() - t0:.0f} s)")
        start = min((cap, fair), key=lambda n: statistics.mean(tuning[n]))
        reference = tuning[start]
        alpha = float(fair.split(":")[1])

        def objective(w) -> float:
            return float(np.mean([x / r for x, r in zip(jcts((np.asarray(w), alpha), train),
                                                          reference)]))

        w0 = (start_weights(float(cap.split(":")[1])) if start == cap else start_weights())
        log(f"the search starts from {start}")
        search = cem(objective, w0, iters=a.iters, population=a.population, elite=3,
                     sigma=a.sigma, seed=0, log=log)
        log(f"search done: cost {search.history[-1]:.4f} ({time.perf_counter() - t0:.0f} s)")
        names = list(dict.fromkeys([*PLAIN, cap, fair]))
        results = {n: jcts(n, test) for n in names}
        results["learned-width"] = jcts((search.weights, alpha), test)
    rows = []
    for n in names:
        diffs = [(o - x) / o for o, x in zip(results[n], results["learned-width"])]
        rows.append((n, statistics.mean(results[n]), paired_bootstrap(diffs)))
    table = render(a, model, train, test, rows, statistics.mean(results["learned-width"]),
                   search, start)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(table + "\n")
    a.out.with_suffix(".json").write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(a).items()}, "features": FEATURES,
        "weights": [float(x) for x in search.weights], "alpha": alpha,
        "start_weights": [float(x) for x in w0],
        "history": [float(x) for x in search.history], "tuning": tuning,
        "tuned": {"srpt-cap": cap, "weighted-fair": fair}, "start": start, "test": results,
        "wall_s": time.perf_counter() - t0}, indent=1))
    return 0


def render(a, model, train, test, rows, learned_jct, search, start) -> str:
    lines = [f"Learned width rule vs tuned heuristics: malleable model contention "
             f"{model[0]:g}, warm-up {model[1]:g} s; synthetic DAG, {a.jobs} jobs, stages up "
             f"to 32 instances, nominal load {a.load:g}, default 8-site cluster. Tuned and "
             f"trained on seeds {train}; tested on seeds {test[0]}..{test[-1]} "
             f"({len(test)}). CEM {a.iters} × {a.population}, σ {a.sigma:g}, seed 0; "
             f"training cost {search.history[0]:.4f} → {search.history[-1]:.4f} (learned / "
             f"its start, {start}).",
             "", f"Learned rule, test mean JCT {learned_jct:.1f} s; weights "
             + ", ".join(f"{f} {w:+.2f}" for f, w in zip(FEATURES, search.weights)) + ".", "",
             "| policy | test mean JCT s | learned's gain, paired (policy − learned) / policy, "
             "mean [95% CI] |", "| --- | --- | --- |"]
    for n, jct, (m, lo, hi) in rows:
        lines.append(f"| {n} | {jct:.1f} | {100 * m:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}] |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
