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
        if not ctx.fits_any():
            return
        pool = ctx.pool
        jobs = {js.seq: js for js in pool.jobs()}
        held = {s: [h * i for h, i in zip(js.held, self.inv)] for s, js in jobs.items()}
        heap = [(max(held[s]) / js.job.weight, s) for s, js in jobs.items()]
        heapq.heapify(heap)
        walks: dict[int, tuple] = {}           # job -> (its fitting tasks, lazily; the current)
        while heap and ctx.fits_any():
            _, jidx = heapq.heappop(heap)
            walk = walks.get(jidx)
            if walk is None:
                it = ctx.fitting(pool.of_job(jobs[jidx]))
                walk = (it, next(it, None))
            it, t = walk
            while t is not None and (t.open == 0 or place_nearest(ctx, t, 1) == 0):
                t = next(it, None)            # drained, or no longer fits this decision
            walks[jidx] = (it, t)
            if t is None:
                continue
            h = held[jidx]
            for r, v in enumerate(self._scaled(t, 1)):
                h[r] += v
            heapq.heappush(heap, (max(h) / t.job.job.weight, jidx))
