"""Heuristic schedulers users would pick instead of Agora, behind the one ``Policy`` seam."""

from __future__ import annotations

import math

from agora.agents.baselines.backfill import EasyBackfill
from agora.agents.baselines.energy import EnergyFirst
from agora.agents.baselines.fairness import DominantResourceFairness
from agora.agents.baselines.fgd import FragmentationGradientDescent
from agora.agents.baselines.holding import Reserve
from agora.agents.baselines.ordering import Fifo, JobSrpt, ShortestJobFirst
from agora.agents.baselines.packing import LeastLoaded, Tetris
from agora.agents.baselines.parallelism import SrptCap, WeightedFair
from agora.agents.baselines.routing import DelayedRouting, EarliestFinish
from agora.agents.baselines.spread import RandomSite, RoundRobin
from agora.agents.policy import Policy

BASELINES: dict[str, type] = {p.name: p for p in (
    RandomSite, RoundRobin, LeastLoaded, Fifo, ShortestJobFirst, JobSrpt, Tetris,
    DominantResourceFairness, EasyBackfill, FragmentationGradientDescent, EarliestFinish)}

FAMILIES: dict[str, type] = {p.family: p for p in (SrptCap, WeightedFair, EnergyFirst,
                                                      DelayedRouting, Reserve)}
"""parameterised baselines by family: ``make_policy("srpt-cap:8")``"""


def is_baseline(name: str) -> bool:
    """Does ``make_policy`` know ``name`` (a plain baseline, or a family and a valid value)?"""
    if name in BASELINES:
        return True
    if name.partition(":")[0] not in FAMILIES:
        return False
    try:
        make_policy(name)
    except ValueError:
        return False
    return True


def choices() -> str:
    """The baselines' names for an error message."""
    return ", ".join([*BASELINES, *(f + ":<number>" for f in FAMILIES)])


def make_policy(name: str) -> Policy:
    """A fresh baseline by name, or a parameterised one as ``family:value`` (``srpt-cap:8``,
    ``weighted-fair:-0.5``, ``energy-first:0.2``: ``FAMILIES``); the error lists what exists."""
    family, sep, value = name.partition(":")
    if sep and family in FAMILIES:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"policy {name!r}: {value!r} is not a number; expected e.g. "
                             f"{family}:8") from None
        if math.isnan(number):
            raise ValueError(f"policy {name!r}: expected a number, got nan")
        return FAMILIES[family](number)
    try:
        return BASELINES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {choices()}") from None
