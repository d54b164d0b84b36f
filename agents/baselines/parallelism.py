"""Baselines for the malleable-stage lever: how many instances of each job run at once.

Under ``SimConfig.malleable`` (sub-linear speedup in a job's width, a warm-up per node a job
first runs on) running every open instance at once is no longer free. These are the strongest
heuristics for that lever we know of, each with one parameter to tune per scenario (as Decima
tuned its baselines: Mao et al., SIGCOMM 2019, §7.1):

- **SRPT with a width cap** (``srpt-cap:P``): job-level SRPT order (``ordering.JobSrpt``),
  but no job runs more than P instances at once; the rest of the cluster goes to the next
  jobs. P = inf is plain SRPT.
- **Weighted fair** (``weighted-fair:A``): Decima's "tuned weighted fair" heuristic. Each job
  may run up to its share of the instances the cluster can hold, the share proportional to
  (work left) ** A: A = 0 is fair sharing, A = 1 favours big jobs, A = -1 small ones (at
  least one each). Jobs are served least work left first; a share a job cannot use now is
  left for it (the shares add up to about the whole cluster).

Placement is the ordering baselines' (``common.place_nearest``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Callable

from agora.agents.baselines.common import place_nearest
from agora.agents.baselines.ordering import srpt_jobs, srpt_scan
from agora.agents.ledger import JobEntry
from agora.agents.sim.engine import Decision, Simulator


def slots_of(ctx: Decision) -> tuple[float, float]:
    """(about how many instances the cluster can hold: its alive cpu over the mean cpu an
    open task asks -- from the open pool's shape counts, O(shapes) --, or its alive nodes
    when they ask none; the share of alive cpu free now)."""
    alive = ctx.cap.alive
    total = float(ctx.cap.cap_cpu[alive].sum())
    counts = ctx.pool.shape_counts()
    n, asked = sum(c for c, _ in counts), sum(c * d.cpu for c, d in counts)
    mean_cpu = asked / n if n else 0.0
    slots = total / mean_cpu if mean_cpu > 0 else float(alive.sum())
    free = float(ctx.cap.free_cpu[alive].sum()) / total if total > 0 else 0.0
    return slots, free


def fair_shares(jobs: dict[int, JobEntry], slots: float, alpha: float) -> dict[int, int]:
    """Each job's share of ``slots`` ∝ (work left) ** alpha, at least 1 (weighted fair)."""
    weights = {s: max(js.work_left, 1e-9) ** alpha for s, js in jobs.items()}
    norm = sum(weights.values())
    return {s: max(1, math.floor(slots * w / norm)) for s, w in weights.items()}


def serve_capped(ctx: Decision, open_tasks: Iterable, cap_of: Callable[[JobEntry], float]) -> None:
    """Start open instances in the order of ``open_tasks``, no job beyond ``cap_of(job)``
    instances running at once."""
    width: dict[int, int] = {}
    for t in open_tasks:
        js = t.job
        w = width.get(js.seq)
        if w is None:
            w = js.running
        room = cap_of(js) - w
        if room >= 1:
            w += place_nearest(ctx, t, int(min(t.open, room)))
        width[js.seq] = w


class SrptCap:
    family = "srpt-cap"

    def __init__(self, cap: float) -> None:
        if not (cap >= 1):
            raise ValueError(f"srpt-cap: the cap must be >= 1 (or inf), got {cap!r}")
        self.cap = cap
        self.name = f"srpt-cap:{cap:g}"

    def reset(self, sim: Simulator) -> None:
        pass

    def schedule(self, ctx: Decision) -> None:
        serve_capped(ctx, ctx.fitting(srpt_scan(ctx)), lambda js: self.cap)


class WeightedFair:
    family = "weighted-fair"

    def __init__(self, alpha: float) -> None:
        if not -4 <= alpha <= 4:
            raise ValueError(f"weighted-fair: the exponent must be in [-4, 4], got {alpha!r}")
        self.alpha = alpha
        self.name = f"weighted-fair:{alpha:g}"

    def reset(self, sim: Simulator) -> None:
        pass

    def schedule(self, ctx: Decision) -> None:
        order = srpt_jobs(ctx)
        if not order or not ctx.fits_any():
            return
        slots, _ = slots_of(ctx)
        share = fair_shares({js.seq: js for js in order}, slots, self.alpha)
        serve_capped(ctx, ctx.fitting(srpt_scan(ctx, order)), lambda js: share[js.seq])

