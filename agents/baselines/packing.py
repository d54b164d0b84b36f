"""Baselines that score nodes by load or fit.

- **least-loaded**: Kubernetes' default scoring (kube-scheduler's NodeResourcesFit with
  ``LeastAllocated`` plus ``NodeResourcesBalancedAllocation``): a node scores the mean free
  fraction of each resource the pod asks for, after placing it, plus 1 − the standard
  deviation of its used fractions; the best node in the whole cluster wins. FIFO order, no
  blocking.
- **tetris** (Grandl et al., "Multi-resource packing for cluster schedulers", SIGCOMM 2014):
  the alignment of the demand with a node's free resources (dot product, both normalised by
  the node's capacity), with the paper's 10% penalty for running away from the data (here:
  off the job's origin site); tasks are visited shortest-remaining-work job first (the paper's
  SRPT term), each instance going to its best-aligned node.
"""

from __future__ import annotations

import numpy as np

from agora.agents.baselines.ordering import srpt_scan
from agora.agents.sim.capacity import Capacity
from agora.agents.sim.engine import Decision, Simulator
from agora.agents.ledger import TaskEntry

REMOTE_PENALTY = 0.9


def _after_fractions(cap: Capacity, t: TaskEntry) -> list[np.ndarray]:
    """Used fraction of each resource the task asks for, on every node, after placing it."""
    d = t.demand
    out = [1 - (cap.free_cpu - d.cpu) / np.maximum(cap.cap_cpu, 1),
           1 - (cap.free_mem - d.mem) / np.maximum(cap.cap_mem, 1)]
    if d.gpu:
        out.append(1 - (cap.free_gpu - d.gpu) / np.maximum(cap.cap_gpu, 1))
    return out


def alignment(cap: Capacity, d) -> np.ndarray:
    """Tetris' alignment of demand ``d`` with every node's free resources: the dot product,
    both normalised by the node's capacity."""
    align = d.cpu * cap.free_cpu / np.maximum(cap.cap_cpu, 1) ** 2 \
        + d.mem * cap.free_mem / np.maximum(cap.cap_mem, 1) ** 2
    if d.gpu:
        align = align + d.gpu * cap.free_gpu / np.maximum(cap.cap_gpu, 1) ** 2
    return align


class LeastLoaded:
    name = "least-loaded"

    def reset(self, sim: Simulator) -> None:
        pass

    def schedule(self, ctx: Decision) -> None:
        cap = ctx.cap
        for t in ctx.fitting(ctx.pool.scan()):
            while t.open:
                fit = ctx.fit_nodes(t)
                if fit is None:
                    break
                used = np.stack(_after_fractions(cap, t))
                score = (1 - used).mean(axis=0) + (1 - used.std(axis=0))
                node = int(np.argmax(np.where(fit, score, -np.inf)))
                ctx.assign(t, int(cap.node_site[node]), 1, node=node)


class Tetris:
    name = "tetris"

    def reset(self, sim: Simulator) -> None:
        pass

    def schedule(self, ctx: Decision) -> None:
        cap = ctx.cap
        for t in ctx.fitting(srpt_scan(ctx)):
            d = t.demand
            while t.open:
                fit = ctx.fit_nodes(t)
                if fit is None:
                    break
                align = alignment(cap, d)
                align = np.where(cap.node_site == t.job.origin, align, align * REMOTE_PENALTY)
                node = int(np.argmax(np.where(fit, align, -np.inf)))
                ctx.assign(t, int(cap.node_site[node]), 1, node=node)
