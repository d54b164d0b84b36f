"""Placement shared by the baselines that only decide *order*: the job's origin site first
(no transfer), then the other sites nearest first, each placing with its best-fit rule."""

from __future__ import annotations

import numpy as np

from agora.agents.sim.engine import Decision
from agora.agents.ledger import TaskEntry


def place_nearest(ctx: Decision, t: TaskEntry, n: int,
                  allowed: np.ndarray | None = None) -> int:
    """Start up to ``n`` instances of ``t``, origin site first, then nearest sites."""
    fit = ctx.fit_nodes(t)
    if fit is None:
        return 0
    if allowed is not None:
        fit = fit & allowed
    sites = ctx.cap.sites_of(fit)
    placed = 0
    for s in ctx.sim.nearest[t.job.origin]:
        if placed >= n:
            break
        if sites[s]:
            placed += ctx.assign(t, s, n - placed, allowed=allowed)
    return placed
