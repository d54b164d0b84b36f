"""The seam between the simulator and whatever decides where work goes.

A policy sees the open tasks and the cluster's free capacity through a ``Decision`` and
allocates instances to sites; the site then places each instance on a node with its local
rule (best-fit) unless the policy names a node. Heuristic baselines, the learned agents'
market, and the PettingZoo environment all drive the simulator through this one interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agora.agents.sim.engine import Decision, Simulator


class Policy(Protocol):
    name: str

    def reset(self, sim: Simulator) -> None:
        """Called once before a run (seed the policy's own state here)."""

    def schedule(self, ctx: Decision) -> None:
        """Allocate open work with ``ctx.assign``; anything left stays open until the next
        decision (the next event)."""
