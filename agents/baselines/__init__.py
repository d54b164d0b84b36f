"""Heuristic schedulers users would pick instead of Agora, behind the one ``Policy`` seam."""

from __future__ import annotations

from agora.agents.baselines.backfill import EasyBackfill
from agora.agents.baselines.fairness import DominantResourceFairness
from agora.agents.baselines.fgd import FragmentationGradientDescent
from agora.agents.baselines.ordering import Fifo, JobSrpt, ShortestJobFirst
from agora.agents.baselines.packing import LeastLoaded, Tetris
from agora.agents.baselines.spread import RandomSite, RoundRobin
from agora.agents.policy import Policy

BASELINES: dict[str, type] = {p.name: p for p in (
    RandomSite, RoundRobin, LeastLoaded, Fifo, ShortestJobFirst, JobSrpt, Tetris,
    DominantResourceFairness, EasyBackfill, FragmentationGradientDescent)}


def make_policy(name: str) -> Policy:
    """A fresh baseline by name; the error lists the names that exist."""
    try:
        return BASELINES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(BASELINES)}") \
            from None
