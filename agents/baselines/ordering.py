"""Baselines that decide only the order in which open work is considered; placement is
origin-first, nearest-site, best-fit (``common.place_nearest``).

- **FIFO**: job arrival order, strictly: when the head does not fit, nothing behind it starts
  (head-of-line blocking, as a plain batch queue).
- **SJF**: shortest stated duration first, nothing blocks (starvation of long work is the
  price, and the reason users still run FIFO). It orders by each *task's* duration, which on
  wide DAG jobs starts the short tasks of huge jobs ahead of small jobs.
- **SRPT** (job level; Schrage's shortest remaining processing time, the mean-JCT-optimal rule
  on one machine): the job with the least work left (Σ duration × instances not yet
  completed) first, then its tasks in DAG order; nothing blocks. Work left changes as
  instances end, so the order is recomputed at every decision.
"""

from __future__ import annotations

from collections.abc import Iterator

from agora.agents.baselines.common import place_nearest
from agora.agents.ledger import JobEntry, TaskEntry
from agora.agents.sim.engine import Decision, Simulator


class Fifo:
    name = "fifo"

    def reset(self, sim: Simulator) -> None:
        pass

    def schedule(self, ctx: Decision) -> None:
        for t in ctx.pool.scan():
            place_nearest(ctx, t, t.open)
            if t.open:
                return


class ShortestJobFirst:
    name = "sjf"

    def reset(self, sim: Simulator) -> None:
        pass

    def schedule(self, ctx: Decision) -> None:
        for t in ctx.fitting(ctx.pool.ordered_scan("duration", lambda t: (t.duration,))):
            place_nearest(ctx, t, t.open)


def srpt_order(ctx: Decision) -> list:
    """The open tasks, the job with the least work left first, then DAG order."""
    return list(srpt_scan(ctx))


def srpt_jobs(ctx: Decision) -> list[JobEntry]:
    """The jobs with open tasks, the least work left first (ties: admission order)."""
    return sorted(ctx.pool.jobs(), key=lambda js: (js.work_left, js.seq))


def srpt_scan(ctx: Decision, jobs: list[JobEntry] | None = None) -> Iterator[TaskEntry]:
    """``srpt_order``, lazily: the open jobs are sorted (O(jobs log jobs); or given, as
    ``srpt_jobs`` gave them), their open tasks walked only as far as the caller goes."""
    pool = ctx.pool
    for js in srpt_jobs(ctx) if jobs is None else jobs:
        yield from pool.of_job(js)


class JobSrpt:
    name = "srpt"

    def reset(self, sim: Simulator) -> None:
        pass

    def schedule(self, ctx: Decision) -> None:
        for t in ctx.fitting(srpt_scan(ctx)):
            place_nearest(ctx, t, t.open)
