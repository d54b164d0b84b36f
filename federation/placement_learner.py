"""A site's gpu placer (``agents.learn.placement``) as a federation learner: the shared model
is the placer's linear weights, local training is the cross-entropy search on replays of the
site's own tasks on the site's own nodes.

What crosses the site's boundary: the weights (one array, ``placer.weights``, in the order of
``agents.learn.placement.FEATURES``), a sample count (the replays a round used) and scalar
metrics (cost ÷ FGD's). What stays at the site: its nodes, its pod list, its arrival orders,
every replay.

**Training.** ``train(steps)`` runs CEM from the weights it was given (the round's aggregate)
for as many iterations as ``steps`` replays allow, and returns the best weights it evaluated
(CEM's mean is one of its candidates, so a site never returns weights that are worse on its
own objective than the ones it received). The objective: over the site's training orders,
the mean of cost(weights) ÷ cost(FGD), cost being the FGD evaluation's mean unallocated gpu
share at 100–130% arrived (``agents.learn.placement.cost``). FGD is Weng et al.'s own rule
(``agents.baselines.fgd.fgd_choice``), so a ratio below 1 is a gain over the strongest
heuristic for this lever.

**Seeds.** The site's search seed for its k-th ``train`` call is drawn from
``SeedSequence([seed, 3, k])``; arrival orders are seeds of ``numpy.random.default_rng``.
A run is a function of the seeds and the rounds' aggregates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from agora.agents.baselines.fgd import fgd_choice, typical_shapes
from agora.agents.domain import Cluster, Demand
from agora.agents.learn.placement import FEATURES, LinearPlacer, cem, replay_cost

WEIGHTS = "placer.weights"


@dataclass
class SiteReplays:
    """One site's placement replays: its nodes, its pods, and the FGD cost of each order
    (computed once)."""

    cluster: Cluster
    pods: list[Demand]
    shapes: list = field(default_factory=list)
    _fgd: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.pods:
            raise ValueError("SiteReplays.pods: empty; a site needs its own pods to learn on")
        if not self.shapes:
            self.shapes = typical_shapes(self.pods)

    def run(self, order: int, weights: np.ndarray | None) -> float:
        """The cost of one replay of arrival order ``order`` with the linear placer of
        ``weights`` (None: FGD itself)."""
        if weights is None:
            def chooser(model):
                return lambda c, d, fit: fgd_choice(model, c, d, fit)
        else:
            placer = LinearPlacer(weights)

            def chooser(model):
                return lambda c, d, fit: placer.choose(model, c, d, fit)
        return replay_cost(self.cluster, self.pods, self.shapes, order, chooser)

    def fgd(self, order: int) -> float:
        if order not in self._fgd:
            self._fgd[order] = self.run(order, None)
        return self._fgd[order]

    def ratio(self, weights: np.ndarray, orders: Sequence[int]) -> float:
        """Mean over ``orders`` of cost(weights) ÷ cost(FGD) (below 1: better than FGD)."""
        return float(np.mean([self.run(o, weights) / max(self.fgd(o), 1e-12)
                              for o in orders]))


@dataclass
class SearchTrace:
    """Every objective evaluation of a search, in order: what it cost in replays and what it
    scored."""

    replays: list[int] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    def best_curve(self) -> list[tuple[int, float]]:
        out, best, spent = [], float("inf"), 0
        for n, r in zip(self.replays, self.ratios):
            spent += n
            best = min(best, r)
            out.append((spent, best))
        return out


def replays_to(curve: Sequence[tuple[int, float]], threshold: float) -> float:
    """Replays spent when a best-so-far ``curve`` [(replays, ratio), ...] first reached
    ``threshold``; inf when it never did (it needed more than the whole search)."""
    for spent, best in curve:
        if best <= threshold + 1e-12:
            return float(spent)
    return math.inf


def search(replays: SiteReplays, start: np.ndarray, orders: Sequence[int], *, iters: int,
           population: int, sigma: float, seed: int,
           log: Callable[[str], None] | None = None) -> tuple[np.ndarray, SearchTrace]:
    """CEM from ``start`` on ``replays``' orders; the best weights and the trace of every
    evaluation (each costs ``len(orders)`` replays)."""
    trace = SearchTrace()

    def objective(w) -> float:
        r = replays.ratio(np.asarray(w, dtype=float), orders)
        trace.replays.append(len(orders))
        trace.ratios.append(r)
        return r

    found = cem(objective, np.asarray(start, dtype=float), iters=iters, population=population,
                elite=max(2, population // 4), sigma=sigma, seed=seed, log=log)
    return found.weights, trace


class PlacementSiteLearner:
    """``federation.learner.SiteLearner`` over one site's placement replays.

    Args:
        site: the site's name.
        replays: its nodes and pods.
        train_orders: arrival orders the search scores weights on.
        val_orders: arrival orders ``evaluate`` scores on (not searched on).
        population, sigma: CEM's population and initial spread per round.
        seed: the site's seed (its per-round search seeds are drawn from it).
    """

    def __init__(self, site: str, replays: SiteReplays, *, train_orders: Sequence[int] = (0, 1),
                 val_orders: Sequence[int] = (100, 101), population: int = 8,
                 sigma: float = 0.5, seed: int = 0) -> None:
        if population < 2:
            raise ValueError(f"population: {population!r}; expected an int >= 2")
        if not train_orders or not val_orders:
            raise ValueError("train_orders and val_orders: each needs at least one order")
        self.site = site
        self.replays = replays
        self.train_orders = tuple(int(o) for o in train_orders)
        self.val_orders = tuple(int(o) for o in val_orders)
        self.population = int(population)
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.weights = np.zeros(len(FEATURES))
        self.weights[0] = 1.0                      # FGD until a round says otherwise
        self.calls = 0
        self.traces: list[SearchTrace] = []

    def weight_names(self) -> list[str]:
        return [WEIGHTS]

    def get_weights(self) -> list[np.ndarray]:
        return [self.weights.copy()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        self.weights = np.array(weights[0], dtype=float).reshape(len(FEATURES))

    def iterations_for(self, steps: int) -> int:
        """CEM iterations that ``steps`` replays pay for (at least one)."""
        per_iter = self.population * len(self.train_orders)
        return max(1, int(steps) // per_iter)

    def train(self, steps: int, config: dict) -> tuple[int, dict[str, float]]:
        k = self.calls
        self.calls += 1
        seed = int(np.random.SeedSequence([self.seed, 3, k]).generate_state(1)[0])
        w, trace = search(self.replays, self.weights, self.train_orders,
                          iters=self.iterations_for(steps), population=self.population,
                          sigma=self.sigma, seed=seed)
        self.traces.append(trace)
        self.weights = w
        used = sum(trace.replays)
        return used, {"train/ratio_start": trace.ratios[0], "train/ratio": min(trace.ratios),
                      "train/replays": float(used)}

    def evaluate(self, config: dict) -> tuple[int, dict[str, float]]:
        return len(self.val_orders), {
            "eval/ratio": self.replays.ratio(self.weights, self.val_orders)}
