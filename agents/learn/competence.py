"""Where a learned policy may rank on its own: the widest candidate window its training showed
it, measured, and stored in its checkpoint.

Why. A site's window holds the open tasks that fit the site now. In the synthetic scenario
the committed policy trained on, a site held 1.23 candidates per decision on average (82% of
decisions one, 99% at most four), so its ranking of a wide window was never trained: on real
WfCommons workflows on a small cluster (16 candidates of 4 jobs per decision) it agreed with
its own teacher's first choice in 16% of decisions, where it agrees in 98% on its training
scenario, and its mean JCT was 23% worse than the teacher's (docs/benchmarks.md, "A learned
policy outside what it learned"). A policy acting greedily therefore ranks a window of up to
``max_choices`` candidates itself and a wider one by its teacher, the job-level SRPT key
(shortest job work left first): the heuristic it was warm-started from, not a rule tuned to
any workload. Training (sampled rankings) is never guarded.

The same holds for load: a policy trained on short episodes never saw a deep backlog (one
trained on windows of 4 workflows was 13% worse than its teacher on windows of 20, though
the window widths were the same), so when the pool holds more open tasks than its training's
pools did (``max_open``), every site ranks by the teacher.

How. ``measure`` runs the policy greedily (unguarded) on episodes of its own training
scenario and takes the ``quantile`` (0.99) of the number of valid candidates over every
decision of a site with work to rank, and of the open tasks in the pool at those decisions;
``stamp`` writes them into the checkpoint as
``competence`` (with the scenario, episodes, quantile and the counts it came from), which
``checkpoint.load_agents`` gives every acting policy (simulation, replay, cluster).

    python -m agora.agents.learn.competence CHECKPOINT [--episodes 4] [--quantile 0.99]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.learned_policy import Agents
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.step.observe import LOG_DIV
from agora.agents.step.simulation import AgentsPolicy, Recorder

QUANTILE = 0.99
EPISODES = 4


def window_sizes(agents: Agents, episodes) -> tuple[np.ndarray, np.ndarray]:
    """Valid candidates, and open tasks in the pool, at every active site decision over
    ``episodes`` ((cluster, workload, seed) triples), the policy acting greedily without
    the guard."""
    saved = agents.max_choices, agents.max_open
    agents.max_choices = agents.max_open = None
    try:
        sizes, opens = [], []
        for cluster, wl, seed in episodes:
            rec = Recorder()
            pol = AgentsPolicy(agents.policy(), recorder=rec)
            Simulator(cluster, wl, SimConfig(seed=seed)).run(pol)
            if len(rec):
                a = rec.arrays()
                sizes.append(a["mask"][a["active"]].sum(axis=1))
                # the critic's state holds log1p(open tasks) / LOG_DIV (system_state)
                n_open = np.rint(np.expm1(a["state"][:, 0].astype(np.float64) * LOG_DIV))
                opens.append(np.repeat(n_open, a["active"].sum(axis=1)).astype(np.int64))
        empty = np.zeros(0, np.int64)
        return (np.concatenate(sizes) if sizes else empty,
                np.concatenate(opens) if opens else empty)
    finally:
        agents.max_choices, agents.max_open = saved


def measure(agents: Agents, source, *, episodes: int = EPISODES,
            quantile: float = QUANTILE) -> dict:
    """The competence of ``agents`` on ``source`` (an ``agents.learn.loop.EpisodeSource``:
    its training episodes 0..episodes-1)."""
    if episodes < 1 or not 0.0 < quantile <= 1.0:
        raise ValueError(f"episodes {episodes}, quantile {quantile}; expected episodes >= 1 "
                         f"and 0 < quantile <= 1")
    eps = []
    for i in range(episodes):
        cluster, wl = source.episode(i)
        eps.append((cluster, wl, i))
    sizes, opens = window_sizes(agents, eps)
    q = int(math.ceil(float(np.quantile(sizes, quantile)))) if len(sizes) else 1
    qo = int(math.ceil(float(np.quantile(opens, quantile)))) if len(opens) else 1
    counts = np.bincount(sizes.astype(np.int64)) if len(sizes) else np.zeros(0, np.int64)
    return {"max_choices": max(q, 1), "max_open": max(qo, 1), "quantile": quantile,
            "episodes": episodes, "decisions": int(len(sizes)),
            "mean_choices": round(float(sizes.mean()), 3) if len(sizes) else 0.0,
            "mean_open": round(float(opens.mean()), 1) if len(opens) else 0.0,
            "counts": {int(n): int(c) for n, c in enumerate(counts) if c}}


def stamp(path: str | Path, competence: dict) -> None:
    """Write ``competence`` into the checkpoint at ``path`` (atomically)."""
    blob = checkpoint.read(path)
    blob["competence"] = competence
    checkpoint.write(path, blob)


def measure_checkpoint(path: str | Path, *, episodes: int = EPISODES,
                       quantile: float = QUANTILE, scenario: dict | None = None) -> dict:
    """``measure`` on the checkpoint's own training scenario (its ``train_config``), its
    files as ``scenario`` spells them when given (a resumed run's, which may name the same
    files by other paths: ``Scenario.known_by_content``)."""
    from agora.agents.learn.loop import EpisodeSource, TrainConfig
    from agora.agents.sim.runner import Scenario

    agents, blob = checkpoint.load_agents(path)
    if "train_config" not in blob:
        raise checkpoint.CheckpointMismatch(f"{path}: no train_config; expected a checkpoint "
                                            f"written by `agora train`")
    cfg = TrainConfig.from_dict(blob["train_config"])
    if scenario is not None:
        cfg = replace(cfg, scenario=scenario)
    source = EpisodeSource(Scenario(**cfg.scenario), cfg.train_jobs, cfg.train_fraction)
    out = measure(agents, source, episodes=episodes, quantile=quantile)
    out["scenario"] = cfg.scenario
    out["train_jobs"] = cfg.train_jobs
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--episodes", type=int, default=EPISODES,
                   help=f"training episodes to roll out (default {EPISODES})")
    p.add_argument("--quantile", type=float, default=QUANTILE,
                   help=f"share of decisions the measure covers (default {QUANTILE})")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        out = measure_checkpoint(a.checkpoint, episodes=a.episodes, quantile=a.quantile)
    except (checkpoint.CheckpointMismatch, ValueError) as e:
        print(f"competence: {e}", file=sys.stderr)
        return 2
    stamp(a.checkpoint, out)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
