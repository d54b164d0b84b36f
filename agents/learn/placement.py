"""The gpu placement lever, learned: which node (and gpu) of a site takes a task, scored by
a linear function of features of the place, with weights searched by the cross-entropy
method (CEM; Rubinstein 1999) on placement replays, starting from FGD, and adopted by a site
only where it beats FGD on replays of the site's own recent tasks (``adopt``).

A replay is the FGD evaluation (Weng et al., ATC 2023): tasks arrive one by one in a seeded
order until their gpu requests reach 1.3× the cluster's gpus, each is placed once with no
departures, one that fits nowhere fails. Its cost is the unallocated share of the gpus as
arrivals pass 100, 110, 120 and 130% of capacity (mean of the four; lower is better).

Features of a candidate place (all known to the site when it places the task):

- ``fgd_score``: FGD's score of the place (``agents.baselines.fgd.fgd_score``, whole
  points 0..100, centred on 50 and divided by 25, so ≈ −growth of the node's fragmentation /
  1000 in steps of ~40 milli-gpus) — FGD alone is weight 1 here and 0 elsewhere (its ties
  go to the first candidate, the lowest node, as FGD's do), which is where the search starts;
- ``frag_after``: the node's fragmentation after the placement / 1000;
- ``gpu_left``: free milli-gpus left on the node / 1000;
- ``whole_left``: entirely free gpus left on the node;
- ``cpu_left``: free share of the node's cpu left;
- ``tightness``: −(free share of cpu + mem + gpu left), best-fit's preference;
- ``cpu_task_on_gpu_node``: 1 when a task without gpu would take a gpu node's cpu.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from agora.agents.baselines.fgd import FragModel, candidates, fgd_score
from agora.agents.domain import MILLI, Cluster, Demand
from agora.agents.sim.capacity import Capacity

FEATURES = ("fgd_score", "frag_after", "gpu_left", "whole_left", "cpu_left",
            "tightness", "cpu_task_on_gpu_node")
MARKS = (1.0, 1.1, 1.2, 1.3)


def fgd_weights() -> np.ndarray:
    w = np.zeros(len(FEATURES))
    w[0] = 1.0
    return w


def place_features(model: FragModel, cap: Capacity, d: Demand, c) -> np.ndarray:
    """(candidates, features) for the candidates ``c`` of ``agents.baselines.fgd``."""
    n = len(c.places)
    x = np.empty((n, len(FEATURES)))
    x[:, 0] = (fgd_score(c.growth) - 50.0) / 25.0
    x[:, 1] = model.frag_of(c.after) / MILLI
    nodes = np.fromiter((p[0] for p in c.places), dtype=np.int64, count=n)
    x[:, 2] = [sum(s[1]) / MILLI for s in c.after]
    x[:, 3] = [sum(1 for f in s[1] if f == MILLI) for s in c.after]
    x[:, 4] = [s[0] for s in c.after] / np.maximum(cap.cap_cpu[nodes], 1)
    x[:, 5] = -((cap.free_cpu[nodes] - d.cpu) / np.maximum(cap.cap_cpu[nodes], 1)
                + (cap.free_mem[nodes] - d.mem) / np.maximum(cap.cap_mem[nodes], 1)
                + (cap.free_gpu[nodes] - d.gpu) / np.maximum(cap.cap_gpu[nodes], 1))
    x[:, 6] = (d.gpu == 0) & cap.has_gpu[nodes]
    return x


class LinearPlacer:
    """Places on the candidate with the highest ``weights · features`` (first on ties)."""

    def __init__(self, weights: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=float)

    def choose(self, model: FragModel, cap: Capacity, d: Demand,
               fit: np.ndarray) -> tuple[int, int | None] | None:
        c = candidates(model, cap, d, fit)
        if not c.places:
            return None
        return c.places[int(np.argmax(place_features(model, cap, d, c) @ self.weights))]


def arrivals(pods: list[Demand], capacity_milli: int, rng: np.random.Generator,
             inflate: float = 1.3) -> list[Demand]:
    """Shuffled pods, then pods drawn with replacement, until the gpu asked reaches
    ``inflate`` × capacity (the authors' inflation)."""
    out, asked = [], 0
    order = list(rng.permutation(len(pods)))
    while asked < inflate * capacity_milli:
        i = order.pop() if order else int(rng.integers(len(pods)))
        out.append(pods[i])
        asked += pods[i].gpu
    return out


def replay(cap: Capacity, seq: list[Demand], choose, marks=MARKS) -> dict:
    """Place ``seq`` in order with ``choose(cap, d, fit) -> (node, gpu)``; the unallocated
    gpu share at each mark of arrived requests / capacity, and the share that failed."""
    total = int(cap.cap_gpu.sum())
    asked = failed = 0
    todo = list(marks)
    unalloc: dict[str, float] = {}
    for d in seq:
        asked += d.gpu
        fit = cap.fit_mask(d)
        if fit.any():
            node, device = choose(cap, d, fit)
            cap.place(node, d, device)
        else:
            failed += d.gpu
        while todo and asked >= todo[0] * total:
            unalloc[f"{todo.pop(0):.0%}"] = float(cap.free_gpu.sum()) / total
    return {"unallocated": unalloc, "failed_gpu_share": failed / max(asked, 1)}


def replay_cost(cluster: Cluster, pods: list[Demand], shapes: list, order: int,
                chooser: Callable[[FragModel], Callable]) -> float:
    """The cost of one replay of arrival order ``order`` (a ``numpy.random.default_rng``
    seed) of ``pods`` on a fresh ``cluster``, placing with ``chooser(model)`` — the
    ``choose(cap, d, fit)`` of a policy, given the cluster's FragModel of ``shapes``."""
    cap = Capacity(cluster)
    seq = arrivals(pods, int(cap.cap_gpu.sum()), np.random.default_rng(order))
    return cost(replay(cap, seq, chooser(FragModel(shapes, cap.models))))


def cost(result: dict) -> float:
    """Mean unallocated share over the marks reached (lower is better)."""
    return float(np.mean(list(result["unallocated"].values())))


@dataclass
class Search:
    """A CEM search's result: the best weights, the cost of the mean each iteration, and the
    seed it drew its samples with."""

    weights: np.ndarray
    history: list[float] = field(default_factory=list)
    seed: int = 0


def cem(objective, w0: np.ndarray, *, iters: int = 10, population: int = 12,
        elite: int = 3, sigma: float = 0.5, seed: int = 0, log=None) -> Search:
    """Minimise ``objective(w)`` by the cross-entropy method from mean ``w0``; the mean is
    always one of the candidates, so the result is never worse than ``w0`` on the
    objective (the best evaluated point is returned)."""
    rng = np.random.default_rng(seed)
    mean, std = np.asarray(w0, dtype=float), np.full(len(w0), sigma)
    best_w, best_c = mean.copy(), objective(mean)
    out = Search(best_w, [best_c], seed)
    for it in range(iters):
        pop = [mean] + [mean + std * rng.standard_normal(len(mean)) for _ in range(population - 1)]
        costs = [best_c if k == 0 and it == 0 else objective(w) for k, w in enumerate(pop)]
        order = np.argsort(costs, kind="stable")
        if costs[order[0]] < best_c:
            best_w, best_c = pop[order[0]].copy(), costs[order[0]]
        top = np.array([pop[i] for i in order[:elite]])
        mean, std = top.mean(axis=0), np.maximum(top.std(axis=0), 0.02)
        out.history.append(best_c)
        if log:
            log(f"cem iteration {it + 1}/{iters}: best {best_c:.4f}, elite "
                f"{np.mean([costs[i] for i in order[:elite]]):.4f}")
    out.weights = best_w
    return out


def adopt(candidate: np.ndarray, evaluate, orders: list[int]) -> tuple[np.ndarray, dict]:
    """Adopt learned weights only where they beat FGD on the site's own workload: replay
    ``orders`` (seeds of arrival orders of the site's recent tasks) with FGD's weights and with
    ``candidate`` through ``evaluate(weights, order) -> cost``; keep ``candidate`` only if it
    is cheaper on average and on no order dearer, else FGD's weights. A learned placer moved
    to a workload unlike its training data can be far worse than FGD (measured: 3.5×); this
    check costs a few replays and needs no labels."""
    base = [evaluate(fgd_weights(), o) for o in orders]
    cand = [evaluate(candidate, o) for o in orders]
    ok = bool(orders) and bool(np.mean(cand) < np.mean(base)) \
        and all(c <= b for c, b in zip(cand, base))
    return (np.asarray(candidate, dtype=float) if ok else fgd_weights()), {
        "adopted": ok, "fgd": [float(x) for x in base], "candidate": [float(x) for x in cand]}
