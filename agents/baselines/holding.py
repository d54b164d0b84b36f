"""Holding capacity for the work that needs it instead of filling it greedily.

Two kinds of work can only run on part of a cluster: gpu work (only on gpu nodes) and gpu
work bound to one gpu model (only on that model's nodes). A greedy scheduler fills those
nodes with whatever is first in its order, and the constrained work then waits behind work
that could have run elsewhere. Operators hold such nodes back by hand (Kubernetes taints
gpu nodes so that only gpu pods land there; Slurm partitions by gpu type).

**SRPT-reserve:x** (``srpt-reserve:0.5``) keeps job-level SRPT's order and origin-first,
nearest-site placement (``common.place_nearest``), and holds capacity back, instance by
instance:

- a cpu-only instance may take a gpu node only if it leaves a fraction ``x`` of the node's
  cpu and memory free (for the gpu work that needs them); the best fit already prefers gpu-less
  nodes, so this binds only when those are full;
- a gpu instance that any model serves may take a model's gpus only if it leaves free, over
  the cluster, ``x`` times the gpus that open work bound to that model still needs (gpu nodes
  of no stated model serve no bound work: nothing is held on them).

``x = 0`` is plain SRPT; ``x`` is tuned per scenario like the other families
(``bench/holding.py``). Work bound to a model is placed as SRPT places it. Held-back work
waits for the next decision (an end frees room), never for good: an instance no node could
take with its reserve kept, or one that would wait on an idle cluster, is placed as SRPT
places it.
"""

from __future__ import annotations

import numpy as np

from agora.agents.baselines.common import place_nearest
from agora.agents.baselines.ordering import srpt_scan
from agora.agents.ledger import TaskEntry
from agora.agents.sim.engine import Decision, Simulator


def bound_model(t: TaskEntry, models: list[str]) -> int:
    """The index of the one gpu model ``t`` is bound to, or -1 (not gpu work, or any model,
    or a choice of several)."""
    d = t.demand
    if not d.gpu or d.gpu_models is None or len(d.gpu_models) != 1:
        return -1
    (m,) = d.gpu_models
    return models.index(m) if m in models else -1


class Reserve:
    family = "srpt-reserve"

    def __init__(self, x: float) -> None:
        if not 0 <= x < float("inf"):
            raise ValueError(f"policy srpt-reserve:{x:g}: the reserve must be a number >= 0, "
                             f"e.g. srpt-reserve:0.5")
        self.x = float(x)
        self.name = f"srpt-reserve:{x:g}"

    def reset(self, sim: Simulator) -> None:
        self.sim = sim

    def schedule(self, ctx: Decision) -> None:
        cap = self.sim.cap
        models = cap.models
        need = np.zeros(len(models))            # milli-gpus open work bound to each model needs
        for t in ctx.pool.scan() if self.x else ():     # x = 0 holds nothing back: unread
            m = bound_model(t, models)
            if m >= 0:
                need[m] += t.demand.gpu * t.open
        for t in ctx.fitting(srpt_scan(ctx)):
            d = t.demand
            m = bound_model(t, models)
            if m >= 0 or self.x == 0:
                before = t.open
                place_nearest(ctx, t, t.open)
                if m >= 0:
                    need[m] -= d.gpu * (before - t.open)
                continue
            while t.open and place_nearest(ctx, t, 1, allowed=self._allowed(d, need)):
                pass
            if t.open and not self._can_hold(d):
                place_nearest(ctx, t, t.open)

    def _allowed(self, d, need: np.ndarray) -> np.ndarray:
        cap = self.sim.cap
        if not d.gpu:
            return ~cap.has_gpu | ((cap.free_cpu - d.cpu >= self.x * cap.cap_cpu)
                                   & (cap.free_mem - d.mem >= self.x * cap.cap_mem))
        gpu_nodes = cap.alive & (cap.node_model >= 0)
        free = np.bincount(cap.node_model[gpu_nodes], weights=cap.free_gpu[gpu_nodes],
                           minlength=len(cap.models))
        held = np.nonzero(free - d.gpu >= self.x * need)[0]
        return np.isin(cap.node_model, held) | (cap.has_gpu & (cap.node_model < 0))

    def _can_hold(self, d) -> bool:
        """Whether holding back still lets ``d`` run some day: some node not down for good
        could hold it with its reserve kept when empty (a cpu-only instance too big for that
        runs as SRPT would run it), and something runs now, whose end will decide again."""
        cap = self.sim.cap
        some_day = (~cap.has_gpu & (cap.cap_cpu >= d.cpu) & (cap.cap_mem >= d.mem)) \
            | ((cap.cap_cpu * (1 - self.x) >= d.cpu) & (cap.cap_mem * (1 - self.x) >= d.mem))
        if not d.gpu and not (some_day & ~self.sim.perm_dead).any():
            return False
        return any(self.sim.node_running)
