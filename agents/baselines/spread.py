"""Baselines that spread work across sites without looking at load: **random** (a uniformly
random feasible site per instance, seeded by ``SimConfig.seed``) and **round-robin** (the
next feasible site in a fixed cycle). Both take open work in FIFO order without blocking."""

from __future__ import annotations

import numpy as np

from agora.agents.sim.engine import Decision, Simulator


class RandomSite:
    name = "random"

    def reset(self, sim: Simulator) -> None:
        self.rng: np.random.Generator = sim.rng

    def schedule(self, ctx: Decision) -> None:
        for t in ctx.fitting(ctx.pool.scan()):
            while t.open:
                sites = ctx.feasible_sites(t)
                if sites is None:
                    break
                ctx.assign(t, int(self.rng.choice(np.flatnonzero(sites))), 1)


class RoundRobin:
    name = "round-robin"

    def reset(self, sim: Simulator) -> None:
        self.next = 0
        self.n = sim.n_sites

    def schedule(self, ctx: Decision) -> None:
        for t in ctx.fitting(ctx.pool.scan()):
            while t.open:
                sites = ctx.feasible_sites(t)
                if sites is None:
                    break
                order = np.roll(np.arange(self.n), -self.next)
                s = int(order[np.argmax(sites[order])])
                ctx.assign(t, s, 1)
                self.next = (s + 1) % self.n
