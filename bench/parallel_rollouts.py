"""Training with its episodes played on both cores (issue 13, item 4): PPO updates of K
rollouts each, plus a validation, with ``--workers 1`` (every episode in the learner's
process) against ``--workers N`` (``agents/learn/rollouts.EpisodeRunner``), interleaved
(1, N, 1, N, ...) in one run; medians of the pairs and the ratio.

Each arm builds a fresh learner of the same seed, runs ``--updates`` updates and one
validation; the first update (which also starts the workers) is timed apart from the rest.
Both arms must reach the same weights (the results do not depend on the workers): the table
says whether they did.

    python -m bench.parallel_rollouts [--workload synthetic] [--cluster default]
        [--train-jobs 40] [--rollouts 4] [--updates 4] [--pairs 3] [--workers 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from agora.agents.learn.learned_policy import AgentConfig
from agora.agents.learn.loop import PPOLoop, TrainConfig
from agora.agents.sim.runner import Scenario


def arm(cfg: TrainConfig, workers: int, updates: int) -> dict:
    t0 = time.perf_counter()
    lp = PPOLoop(cfg, workers=workers)
    try:
        first = time.perf_counter()
        lp.update()
        first = time.perf_counter() - first
        rest, steps, play = [], 0, []
        for _ in range(updates - 1):
            t = time.perf_counter()
            row, _ = lp.update()
            rest.append(time.perf_counter() - t)
            steps += row["charts/rounds"]
            play.append(row["charts/steps_per_s"])     # the rollouts alone (loop.update)
        t = time.perf_counter()
        lp.validate()
        val = time.perf_counter() - t
    finally:
        lp.close()
    w = np.concatenate([v.detach().numpy().ravel() for v in lp.agents.model.state_dict().values()])
    return {"workers": workers, "first_s": first, "update_s": statistics.median(rest),
            "steps_per_s": steps / sum(rest), "play_steps_per_s": statistics.median(play),
            "validate_s": val,
            "total_s": time.perf_counter() - t0, "weights": w,
            "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", default="synthetic")
    p.add_argument("--cluster", default="default")
    p.add_argument("--train-jobs", type=int, default=40)
    p.add_argument("--rollouts", type=int, default=4)
    p.add_argument("--updates", type=int, default=4)
    p.add_argument("--val-episodes", type=int, default=4)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="also write the table (.md) and JSON")
    a = p.parse_args(argv)
    if a.updates < 2 or a.pairs < 1 or a.workers < 2 or a.rollouts < 2:
        p.error("--updates >= 2, --pairs >= 1, --workers >= 2 and --rollouts >= 2")
    torch.set_num_threads(1)
    sc = Scenario(cluster=a.cluster, workload=a.workload)
    cfg = TrainConfig(scenario=asdict(sc), steps=10**9, seed=0, train_jobs=a.train_jobs,
                      bc_episodes=0, rollouts=a.rollouts, val_episodes=a.val_episodes,
                      agent=AgentConfig())
    runs: dict[int, list[dict]] = {1: [], a.workers: []}
    for i in range(a.pairs):
        for w in (1, a.workers):
            r = arm(cfg, w, a.updates)
            runs[w].append(r)
            print(f"pair {i + 1} workers {w}: update {r['update_s']:.2f} s, "
                  f"validate {r['validate_s']:.2f} s, load {r['load']:.1f}", file=sys.stderr)
    same = all(np.array_equal(x["weights"], runs[1][0]["weights"])
               for rs in runs.values() for x in rs)

    def med(w, k):
        return statistics.median(r[k] for r in runs[w])

    rows = [("update (K rollouts + PPO), median s", "update_s"),
            ("steps (bidding rounds) per s, whole update", "steps_per_s"),
            ("steps per s while playing the rollouts", "play_steps_per_s"),
            ("first update incl. starting the workers, s", "first_s"),
            (f"validation ({a.val_episodes} greedy episodes), s", "validate_s")]
    lines = [f"{a.pairs} interleaved pairs; scenario {a.workload} on {a.cluster}, "
             f"{a.train_jobs} jobs an episode, {a.rollouts} rollouts an update, "
             f"{a.updates} updates an arm; load average "
             f"{min(r['load'] for rs in runs.values() for r in rs):.1f}-"
             f"{max(r['load'] for rs in runs.values() for r in rs):.1f}; "
             f"same weights in every arm: {'yes' if same else 'NO'}", "",
             f"| measure | workers 1 | workers {a.workers} | ratio |", "| --- | ---: | ---: | ---: |"]
    for label, k in rows:
        one, many = med(1, k), med(a.workers, k)
        lines.append(f"| {label} | {one:.2f} | {many:.2f} | {many / one:.2f}× |")
    table = "\n".join(lines)
    print(table)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".md").write_text(table + "\n")
        a.out.with_suffix(".json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(a).items()}, "same_weights": same,
             "runs": {str(w): [{k: v for k, v in r.items() if k != "weights"} for r in rs]
                      for w, rs in runs.items()}}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
