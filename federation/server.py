"""The server side of a federation: Flower's own strategies run over a ``SiteGrid``.

Aggregation is Flower's code (``flwr.serverapp.strategy``): ``fedavg`` (sample-count
weighted mean), ``median`` (coordinate-wise median) and ``trimmed`` (trimmed mean, ``beta``
cut from each end). Agora only chooses the strategy, says how few sites a round may go on
with (``min_fraction``; a site that drops out or answers after ``timeout`` is left out of
that round and asked again next round) and seeds the one random draw Flower makes (which
sites to sample, through Python's ``random``) so a run is reproducible.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp.strategy.result import Result

from agora.federation.grid import SiteGrid
from agora.federation.guard import GuardedFedAvg, GuardedFedMedian, GuardedFedTrimmedAvg

STRATEGIES = {"fedavg": GuardedFedAvg, "median": GuardedFedMedian,
              "trimmed": GuardedFedTrimmedAvg}
"""Flower's strategies, each checking every reply first (``federation/guard.py``)"""


def site_seed(seed: int, i: int) -> int:
    """Site ``i``'s own seed, drawn from a run's ``seed``."""
    return int(np.random.SeedSequence([seed, 1, i]).generate_state(1)[0])


def round_seed(seed: int, r: int) -> int:
    """Round ``r``'s server seed (Flower's node sampling), drawn from a run's ``seed``."""
    return int(np.random.SeedSequence([seed, 2, r]).generate_state(1)[0])


def round_metrics(res: Result, rnd: int = 1) -> dict[str, float]:
    """Flower's aggregates of the sites' train and evaluate reports for round ``rnd``."""
    out: dict[str, float] = {}
    for rec in (res.train_metrics_clientapp, res.evaluate_metrics_clientapp):
        out.update({k: float(v) for k, v in (rec.get(rnd) or {}).items()})
    return out


@dataclass(frozen=True)
class FederationConfig:
    rounds: int = 5
    local_steps: int = 2048
    strategy: str = "fedavg"
    min_fraction: float = 0.5
    """a round goes on with at least ceil(min_fraction · sites) replies"""
    timeout_s: float = 600.0
    """how long a round waits for its sites' replies"""
    trim_beta: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy: {self.strategy!r}; expected one of "
                             f"{', '.join(STRATEGIES)}")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds: {self.rounds!r}; expected an int >= 1")
        if not isinstance(self.local_steps, int) or self.local_steps < 0:
            # a probe: -5 ran, each site training nothing
            raise ValueError(f"local_steps: {self.local_steps!r}; expected an int >= 0")
        if not 0.0 < self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction: {self.min_fraction!r}; expected in (0, 1]")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: {self.timeout_s!r}; expected > 0")
        if not 0.0 <= self.trim_beta < 0.5:
            raise ValueError(f"trim_beta: {self.trim_beta!r}; expected in [0, 0.5)")


def check_strategy(cfg: FederationConfig, n_sites: int) -> None:
    """Refuse a trimmed mean that would trim nothing of ``n_sites`` sites' updates: Flower
    cuts int(beta x replies) from each end, so 0.2 of 4 sites cut none -- a plain mean under
    a robust name (a probe); and a median of fewer than 3 sites, the mean of two (every
    round of it would keep the model: ``guard.GuardedFedMedian.robust_with``)."""
    if cfg.strategy == "median" and n_sites < 3:
        raise ValueError(f"strategy: 'median' of {n_sites} sites' updates is their mean (it "
                         f"bounds no member); expected at least 3 sites, or 'fedavg'")
    if cfg.strategy == "trimmed" and int(cfg.trim_beta * n_sites) < 1:
        need = ("at least 3 sites (no trim of 2 cuts one and keeps one), or 'fedavg'"
                if n_sites < 3 else
                f"at least {math.ceil(100 / n_sites) / 100:.2f} for {n_sites} sites")
        raise ValueError(f"trim_beta: {cfg.trim_beta:g} trims int({cfg.trim_beta:g} x "
                         f"{n_sites}) = 0 of {n_sites} sites' updates from each end: a plain "
                         f"mean; expected {need}")


def kept_model(res: Result, initial: list[np.ndarray]) -> Result:
    """``res``, its model ``initial`` when no round changed it (Flower leaves it empty)."""
    if not len(res.arrays):
        res.arrays = ArrayRecord(list(initial))
    return res


def make_strategy(cfg: FederationConfig, n_sites: int, describe=None):
    """``describe``: node id -> (site, weight names), how the guard names what it leaves out
    (``SiteGrid.describe``; None: node ids)."""
    check_strategy(cfg, n_sites)
    least = max(1, math.ceil(cfg.min_fraction * n_sites))
    kw = dict(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=least,
              min_evaluate_nodes=least, min_available_nodes=least, min_replies=least,
              describe=describe)
    if cfg.strategy == "trimmed":
        kw["beta"] = cfg.trim_beta
    return STRATEGIES[cfg.strategy](**kw)


def run_federation(grid: SiteGrid, initial: list[np.ndarray], cfg: FederationConfig,
                   evaluate_fn: Callable[[int, list[np.ndarray]], dict | None] | None = None,
                   train_config: dict | None = None) -> Result:
    """``cfg.rounds`` rounds of train + evaluate over every site of ``grid``, starting from
    ``initial``; returns Flower's ``Result`` (final arrays and per-round metrics)."""
    strategy = make_strategy(cfg, len(grid.nodes), grid.describe)
    random.seed(cfg.seed)                  # Flower samples nodes with the global ``random``
    tc = ConfigRecord({"local-steps": int(cfg.local_steps), "seed": int(cfg.seed),
                       **(train_config or {})})

    def central(rnd: int, arrays: ArrayRecord) -> MetricRecord | None:
        if evaluate_fn is None:
            return None
        out = evaluate_fn(rnd, arrays.to_numpy_ndarrays())
        return None if out is None else MetricRecord({k: float(v) for k, v in out.items()})

    try:
        res = strategy.start(grid=grid, initial_arrays=ArrayRecord(list(initial)),
                             num_rounds=cfg.rounds, timeout=cfg.timeout_s, train_config=tc,
                             evaluate_config=ConfigRecord({"seed": int(cfg.seed)}),
                             evaluate_fn=central if evaluate_fn else None)
        return kept_model(res, initial)
    finally:   # what the strategy's guard left out, beside what the grid refused
        grid.errors.extend((grid.site_of(node), f"left out: {why}")
                           for _rnd, node, why in strategy.refused)
        grid.errors.extend(("(all)", "too few usable replies for min_fraction: the model was "
                            "not updated") for _rnd in strategy.skipped_rounds)
