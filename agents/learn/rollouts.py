"""Episodes of the simulation engine stepped in parallel processes (issue 13, item 4:
"environments stepped in parallel on both cores").

Given the weights, the episodes a training loop plays are independent of one another: an
update's K rollouts of one arrival sequence, the greedy validation episodes, the SRPT
teacher's warm-start episodes. Each is one run of the simulator with the numpy acting policy
(``agents.step.policy.NumpyPolicy``), so ``EpisodeRunner(workers=N)`` runs a list of them in
N spawned processes and hands them back in order; ``workers=1`` runs them here, one after the
other. A worker imports numpy and the simulator only (never torch): it starts in about a
second and holds no copy of the optimiser.

**Determinism.** A sampled episode draws from its own generator, seeded by the caller (the
training loop draws one seed per rollout from its own generator), so what an update sees does
not depend on how many workers played it or in which order they finished. Greedy and teacher
episodes draw nothing.

What crosses the process boundary is what training reads: the simulator's result (metrics and
per-job outcomes), the recorder's arrays and the share of codes sent (``Played``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import SimResult, Simulator
from agora.agents.step.policy import NumpyPolicy
from agora.agents.step.simulation import AgentsPolicy, Recorder

MAX_WORKERS = 64


@dataclass(frozen=True)
class Episode:
    """One episode to play: the cluster and workload, the simulator's seed (faults, ...),
    ``sample_seed`` (sample rankings from ``default_rng(sample_seed)``; None: greedy),
    ``teacher`` ('srpt': rank by the teacher's key) and ``record`` (keep every round)."""
    cluster: object
    workload: object
    seed: int
    sample_seed: int | None = None
    teacher: str | None = None
    record: bool = True


@dataclass
class Played:
    result: SimResult
    arrays: dict[str, np.ndarray] | None
    """``Recorder.arrays()`` of every round (None when not recorded or no round was played)"""
    rounds: int
    sent_frac: float


def play(policy: NumpyPolicy, ep: Episode, *, rng: np.random.Generator | None = None
         ) -> tuple[SimResult, Recorder | None, AgentsPolicy]:
    """One episode in this process. ``rng`` overrides ``ep.sample_seed`` (a caller that
    shares its own generator across episodes)."""
    if rng is None and ep.sample_seed is not None:
        rng = np.random.default_rng(ep.sample_seed)
    rec = Recorder() if ep.record else None
    pol = AgentsPolicy(policy, rng=rng, recorder=rec, teacher=ep.teacher)
    sim = Simulator(ep.cluster, ep.workload, SimConfig(seed=ep.seed, record_attempts=False))
    return sim.run(pol), rec, pol


def played(policy: NumpyPolicy, ep: Episode, *, rng: np.random.Generator | None = None
           ) -> Played:
    """``play``, kept as what training reads (also what a worker sends back)."""
    res, rec, pol = play(policy, ep, rng=rng)
    n = len(rec) if rec is not None else 0
    return Played(result=res, arrays=rec.arrays() if n else None, rounds=n,
                  sent_frac=pol.sent_frac)


def _watch_parent(parent: int, every_s: float = 1.0) -> None:
    """A worker's initializer: exit when the learner that started it is gone. A learner
    killed by a signal (``kill``, ``timeout``, a batch scheduler) runs no ``finally``, and a
    worker waiting on the pool's queue would otherwise live on, adopted by init."""
    def watch() -> None:
        while True:
            time.sleep(every_s)
            if os.getppid() != parent:
                os._exit(0)
    threading.Thread(target=watch, name="watch-learner", daemon=True).start()


class EpisodeRunner:
    """Plays lists of episodes with ``workers`` processes (1: in this process). The pool
    starts at the first parallel call and lives until ``close`` (or the end of a ``with``)."""

    def __init__(self, workers: int = 1) -> None:
        if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers: found {workers!r}; expected a whole number "
                             f"1..{MAX_WORKERS} (1: episodes played in this process)")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def run(self, policy: NumpyPolicy, episodes: list[Episode]) -> list[Played]:
        if self.workers == 1 or len(episodes) < 2:
            return [played(policy, ep) for ep in episodes]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent, initargs=(os.getpid(),))
        futures = [self._pool.submit(played, policy, ep) for ep in episodes]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> EpisodeRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
