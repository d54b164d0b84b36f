"""Heuristic schedulers users would pick instead of Agora, behind the one ``Policy`` seam."""

from __future__ import annotations

from agents.baselines.backfill import EasyBackfill
from agents.baselines.fairness import DominantResourceFairness
from agents.baselines.fgd import FragmentationGradientDescent
from agents.baselines.ordering import Fifo, JobSrpt, ShortestJobFirst
from agents.baselines.packing import LeastLoaded, Tetris
from agents.baselines.spread import RandomSite, RoundRobin
from agents.policy import Policy

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
