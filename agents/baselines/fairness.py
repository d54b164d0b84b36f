"""**DRF** — Dominant Resource Fairness (Ghodsi et al., NSDI 2011), weighted. Each job is a
user; its dominant share is the largest fraction of any cluster resource its running
instances hold, divided by the job's weight. One instance at a time goes to the job with the
lowest dominant share that has work that fits (progressive filling); placement is
origin-first, nearest-site, best-fit."""

from __future__ import annotations

import heapq

from agora.agents.baselines.common import place_nearest
from agora.agents.sim.engine import Decision, Simulator


class DominantResourceFairness:
    name = "drf"

    def reset(self, sim: Simulator) -> None:
        cap = sim.cap
        total = (int(cap.cap_cpu.sum()), int(cap.cap_mem.sum()), int(cap.cap_gpu.sum()))
        self.inv = tuple(1.0 / t if t > 0 else 0.0 for t in total)

    def _scaled(self, t, n: int) -> tuple[float, float, float]:
        d = t.demand
        return (n * d.cpu * self.inv[0], n * d.mem * self.inv[1], n * d.gpu * self.inv[2])

    def schedule(self, ctx: Decision) -> None:
        by_job: dict[int, list] = {}
        for t in ctx.pool.fifo():
            if ctx.fit_nodes(t) is not None:
                by_job.setdefault(t.job.idx, []).append(t)
        heap, held = [], {}
        for jidx, tasks in by_job.items():
            job = tasks[0].job
            h = [0.0, 0.0, 0.0]
            for t in job.tasks:
                if t.running:
                    for r, v in enumerate(self._scaled(t, t.running)):
                        h[r] += v
            held[jidx] = h
            heap.append((max(h) / job.job.weight, jidx))
        heapq.heapify(heap)
        while heap:
            _, jidx = heapq.heappop(heap)
            tasks = by_job[jidx]
            while tasks and (tasks[0].open == 0 or place_nearest(ctx, tasks[0], 1) == 0):
                tasks.pop(0)              # drained, or no longer fits this decision
            if not tasks:
                continue
            t, h = tasks[0], held[jidx]
            for r, v in enumerate(self._scaled(t, 1)):
                h[r] += v
            heapq.heappush(heap, (max(h) / t.job.job.weight, jidx))
