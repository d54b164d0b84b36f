"""**EASY backfilling** (Lifka, "The ANL/IBM SP scheduling system", JSSPP 1995; Mu'alem &
Feitelson, TPDS 2001), at node granularity.

Work is taken in FIFO order. When the head cannot start, it gets a *reservation*: the node
where it could start earliest if running instances end when their stated durations say
(the shadow time), and what that node would have left over then (the extra). Work behind the
head may then start now anywhere, except that on the reserved node it must either end before
the shadow time or fit in the extra — so backfilling never delays the head. Only the head
holds a reservation (that is what distinguishes EASY from conservative backfilling).
"""

from __future__ import annotations

import heapq

import numpy as np

from agora.agents.baselines.common import place_nearest
from agora.agents.domain import MILLI, Demand
from agora.agents.sim.capacity import take_gpus
from agora.agents.sim.engine import Decision, Simulator
from agora.agents.ledger import TaskEntry


class Reservation:
    __slots__ = ("node", "shadow", "cpu", "mem", "gpu")

    def __init__(self, node: int, shadow: float, cpu: int, mem: int, gpu: list[int]) -> None:
        self.node, self.shadow = node, shadow
        self.cpu, self.mem, self.gpu = cpu, mem, gpu   # free at the shadow time, head removed


def _fits(d: Demand, cpu: int, mem: int, gpu: list[int]) -> bool:
    if d.cpu > cpu or d.mem > mem:
        return False
    if not d.gpu:
        return True
    if d.gpu >= MILLI:
        return sum(1 for f in gpu if f == MILLI) >= d.gpu // MILLI
    return any(f >= d.gpu for f in gpu)


def reserve(ctx: Decision, head: TaskEntry) -> Reservation | None:
    """Earliest node and time at which one instance of ``head`` could start."""
    cap, d = ctx.cap, head.demand
    best: Reservation | None = None
    candidates = np.flatnonzero(cap.static_mask(d) & cap.alive)
    now = ctx.now
    for node in candidates:
        if best is not None and now >= best.shadow:
            break                     # no node can start it sooner than the one found
        cpu, mem = int(cap.free_cpu[node]), int(cap.free_mem[node])
        gpu = list(cap.gpu_free[node])
        t = now
        if not _fits(d, cpu, mem, gpu):
            # the node's running instances by stated end (ties in start order), taken lazily
            # until the head fits: a heap, not a sort of every instance on the node
            run = ctx.sim.node_running[node]
            ends = [(e if (e := a.start + a.transfer + a.task.duration) > now else now, i, a)
                    for i, a in enumerate(run)]
            heapq.heapify(ends)
            while ends:
                t, _, a = heapq.heappop(ends)
                cpu, mem = cpu + a.task.demand.cpu, mem + a.task.demand.mem
                for i, g in a.slots:
                    gpu[i] += g
                if _fits(d, cpu, mem, gpu) or (best is not None and t >= best.shadow):
                    break
        if not _fits(d, cpu, mem, gpu) or (best is not None and t >= best.shadow):
            continue
        take_gpus(gpu, d)
        best = Reservation(int(node), t, cpu - d.cpu, mem - d.mem, gpu)
    return best


class EasyBackfill:
    name = "easy-backfill"

    def reset(self, sim: Simulator) -> None:
        pass

    def schedule(self, ctx: Decision) -> None:
        res: Reservation | None = None
        not_reserved: np.ndarray | None = None
        for t in ctx.pool.scan():
            if res is None:
                place_nearest(ctx, t, t.open)
                if t.open:
                    res = reserve(ctx, t)
                    if res is None:
                        return            # nothing can ever make room: wait for an event
                    not_reserved = np.ones(ctx.cap.n_nodes, dtype=bool)
                    not_reserved[res.node] = False
                continue
            if not ctx.fits_any():
                return                    # behind the head: nothing more can start now
            if ctx.fit_nodes(t) is None:
                continue
            ends_in_time = ctx.now + _transfer(ctx, t, res.node) + t.duration <= res.shadow
            while t.open:
                if ends_in_time or _fits(t.demand, res.cpu, res.mem, res.gpu):
                    # May also use the reserved node: it ends before the head needs it, or
                    # fits in what the head leaves over.
                    if place_nearest(ctx, t, 1) == 0:
                        break
                    if not ends_in_time and ctx.last_node == res.node:
                        res.cpu -= t.demand.cpu
                        res.mem -= t.demand.mem
                        take_gpus(res.gpu, t.demand)
                elif place_nearest(ctx, t, 1, allowed=not_reserved) == 0:
                    break


def _transfer(ctx: Decision, t: TaskEntry, node: int) -> float:
    site = ctx.sim.cluster.sites[int(ctx.cap.node_site[node])].name
    link = ctx.sim.cluster.link(t.job.job.origin, site)
    return 0.0 if link is None else link.transfer_s(t.task.data_mb)
