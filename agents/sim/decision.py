"""What a policy sees and does at one decision point of the simulator (``engine.Simulator``):
which open tasks fit where now (answers remembered per demand shape within the decision) and
``assign``, which starts instances through the simulator."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from agora.agents.ledger import TaskEntry

if TYPE_CHECKING:
    from agora.agents.sim.engine import Simulator

FIRST_SHAPES = 4
"""``fits_any`` checks this many open shapes one by one before the rest all at once"""


class Decision:
    """What a policy may look at and do at one decision point."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.cap = sim.cap
        self.pool = sim.pool
        self.now = 0.0
        self.last_node: int | None = None
        """node of the most recent instance ``assign`` started"""
        self._blocked: set[tuple] = set()
        self._fits: dict[tuple, np.ndarray] = {}

    def _begin(self, now: float) -> None:
        self.now = now
        self._blocked.clear()
        self._fits.clear()

    # -- looking ---------------------------------------------------------------------------
    def fit_nodes(self, t: TaskEntry) -> np.ndarray | None:
        """Mask of nodes where one instance of ``t`` fits now, or None if none does (do not
        modify it). Answers are remembered per demand shape: misses until the next event
        (capacity only shrinks within a decision), hits until the next allocation, so a
        backlog of thousands of tasks of a few shapes costs a few vectorised checks."""
        return self._fit_shape(t.shape, t.demand)

    def _fit_shape(self, k: tuple, demand) -> np.ndarray | None:
        m = self._fits.get(k)
        if m is not None:
            return m
        if k in self._blocked:
            return None
        m = self.cap.fit_mask(demand)
        if not m.any():
            self._blocked.add(k)
            return None
        self._fits[k] = m
        return m

    def fits_any(self) -> bool:
        """Whether one instance of some open task fits somewhere now: O(open shapes) once per
        allocation (a shape found blocked stays blocked until the next event)."""
        if self._fits:
            return True
        shapes = self.pool.shapes()
        for d in shapes[:FIRST_SHAPES]:            # with room, one of the first fits
            if self._fit_shape(d.key, d) is not None:
                return True
        shapes = [d for d in shapes[FIRST_SHAPES:] if d.key not in self._blocked]
        plain = [d for d in shapes if not d.gpu]
        if len(plain) > 1:              # cpu and memory only: every shape in one numpy check
            ok = self.cap.plain_fits(plain)
            for d, fits in zip(plain, ok.tolist()):
                if not fits:
                    self._blocked.add(d.key)
            if ok.any():
                d = plain[int(ok.argmax())]
                return self._fit_shape(d.key, d) is not None   # remembers its mask
            shapes = [d for d in shapes if d.gpu]
        return any(self._fit_shape(d.key, d) is not None for d in shapes)

    def fitting(self, tasks: Iterable[TaskEntry]) -> Iterator[TaskEntry]:
        """Those of ``tasks`` (in their order) one instance of which fits now, until nothing
        open fits anywhere: a policy that walks a backlog through it pays for the tasks it
        could start, not for a backlog of thousands blocked behind a full cluster."""
        for t in tasks:
            if not self.fits_any():
                return
            if self.fit_nodes(t) is not None:
                yield t

    def feasible_sites(self, t: TaskEntry) -> np.ndarray | None:
        m = self.fit_nodes(t)
        return None if m is None else self.cap.sites_of(m)

    # -- acting ----------------------------------------------------------------------------
    def assign(self, t: TaskEntry, site: int, n: int = 1, node: int | None = None,
               allowed: np.ndarray | None = None, device: int | None = None) -> int:
        """Allocate up to ``n`` open instances of ``t`` to ``site`` (on ``node`` if given,
        else the site's best fit among ``allowed`` nodes; a share on gpu ``device`` of the
        node if given and it holds it). Returns how many started; stops at the first that
        does not fit."""
        placed = 0
        while placed < n and t.open > 0:
            target = node if node is not None else self.cap.best_fit(t.demand, site, allowed)
            if target is None or self.cap.node_site[target] != site:
                break
            if node is not None and not self.cap.fit_mask(t.demand, slice(node, node + 1))[0]:
                break
            self.sim._start(t, target, self.now, device)
            self._fits.clear()
            self.last_node = target
            placed += 1
        return placed
