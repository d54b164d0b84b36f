"""A baseline for the energy lever: which node runs an instance, and whether to wait for an
efficient one (holding capacity instead of filling it greedily).

**energy-first:θ**: job-level SRPT order (``ordering.srpt_scan``); each instance goes to the
fitting node that draws the least dynamic power for it (the site's linear power model,
``domain.PowerModel``: watts per core and per gpu between idle and peak, times PUE), ties
broken by Tetris' alignment. θ >= 0 is how much dearer than the cheapest alive node that could
ever hold the instance a node may be: a task whose fitting nodes are all dearer than (1 + θ)
times that waits for one (later tasks still start). θ = inf never waits: greedy
energy-cheapest placement. The power-aware placement family of Beloglazov & Buyya ("Energy
efficient resource management in virtualized cloud data centers", CCGrid 2010: the
power-increase-minimising node), here with a waiting threshold so that the trade-off between
energy and completion time can be searched (``bench/pareto.py``).
"""

from __future__ import annotations

import math

import numpy as np

from agora.agents.baselines.ordering import srpt_scan
from agora.agents.baselines.packing import alignment
from agora.agents.sim.engine import Decision, Simulator

TIE = 1e-6
"""weight of alignment against watts: a tie-breaker only"""


class EnergyFirst:
    family = "energy-first"

    def __init__(self, theta: float = math.inf) -> None:
        if not theta >= 0:
            raise ValueError(f"energy-first: θ = {theta}; expected a number >= 0 (inf: never "
                             f"wait for an efficient node)")
        self.theta = theta
        self.name = f"energy-first:{theta:g}"
        self.w_cpu = self.w_gpu = None
        self._watts: dict[tuple, np.ndarray] = {}

    def reset(self, sim: Simulator) -> None:
        self.w_cpu, self.w_gpu = sim.acct.w_per_mcpu, sim.acct.w_per_mgpu
        self._watts.clear()

    def watts(self, d) -> np.ndarray:
        """Dynamic watts one instance of demand ``d`` draws on each node."""
        w = self._watts.get(d.key)
        if w is None:
            w = self._watts[d.key] = d.cpu * self.w_cpu + d.gpu * self.w_gpu
        return w

    def schedule(self, ctx: Decision) -> None:
        cap = ctx.cap
        for t in ctx.fitting(srpt_scan(ctx)):
            d = t.demand
            watts = self.watts(d)
            ok = None
            if math.isfinite(self.theta):
                could = cap.static_mask(d) & cap.alive
                if not could.any():
                    continue
                ok = watts <= float(watts[could].min()) * (1 + self.theta) + 1e-9
            while t.open:
                fit = ctx.fit_nodes(t)
                if fit is None:
                    break
                if ok is not None:
                    fit = fit & ok
                    if not fit.any():
                        break          # hold: wait for an efficient node
                score = -watts + TIE * alignment(cap, d)
                node = int(np.argmax(np.where(fit, score, -np.inf)))
                ctx.assign(t, int(cap.node_site[node]), 1, node=node)
