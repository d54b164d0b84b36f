"""**DRF** — Dominant Resource Fairness (Ghodsi et al., NSDI 2011), weighted. Each job is a
user; its dominant share is the largest fraction of any cluster resource its running
instances hold, divided by the job's weight. One instance at a time goes to the job with the
lowest dominant share that has work that fits (progressive filling); placement is
origin-first, nearest-site, best-fit."""

from __future__ import annotations

import heapq

import numpy as np

from agents.baselines.common import place_nearest
from agents.sim.engine import Decision, Simulator


class DominantResourceFairness:
    name = "drf"

    def reset(self, sim: Simulator) -> None:
        cap = sim.cap
        total = np.array([cap.cap_cpu.sum(), cap.cap_mem.sum(), cap.cap_gpu.sum()], float)
        self.inv_total = np.where(total > 0, 1.0 / np.maximum(total, 1), 0.0)

    def _share_of(self, tasks) -> np.ndarray:
        return np.array([[t.running * t.demand.cpu, t.running * t.demand.mem,
                          t.running * t.demand.gpu] for t in tasks], float).sum(axis=0)

    def schedule(self, ctx: Decision) -> None:
        by_job: dict[int, list] = {}
        for t in ctx.pool.fifo():
            if ctx.fit_nodes(t) is not None:
                by_job.setdefault(t.job.idx, []).append(t)
        heap, held = [], {}
        for jidx, tasks in by_job.items():
            job = tasks[0].job
            held[jidx] = self._share_of(job.tasks) * self.inv_total
            heap.append((float(held[jidx].max()) / job.job.weight, jidx))
        heapq.heapify(heap)
        while heap:
            share, jidx = heapq.heappop(heap)
            tasks = by_job[jidx]
            while tasks and (tasks[0].open == 0 or place_nearest(ctx, tasks[0], 1) == 0):
                tasks.pop(0)              # drained, or no longer fits this decision
            if not tasks:
                continue
            t = tasks[0]
            held[jidx] += np.array([t.demand.cpu, t.demand.mem, t.demand.gpu]) * self.inv_total
            heapq.heappush(heap, (float(held[jidx].max()) / t.job.job.weight, jidx))
