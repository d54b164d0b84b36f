"""The gpu placer as a federation learner (federation/placement_learner.py): real Flower
rounds (FedAvg over a SiteGrid of ClientApps) over sites that search their own replays.

Small clusters and pod lists built here (not the openb traces): 4 two-gpu nodes per site and
a few dozen fractional and whole-gpu pods, enough for FGD and the search to differ."""

from __future__ import annotations

import numpy as np
import pytest

from agora.agents.baselines.fgd import FragModel, fgd_choice
from agora.agents.domain import Demand
from agora.agents.learn.placement import FEATURES, arrivals, cost, fgd_weights, replay
from agora.agents.sim.capacity import Capacity
from agora.federation.client_app import make_client_app
from agora.federation.grid import grid_of
from agora.federation.placement_learner import (PlacementSiteLearner, SearchTrace,
                                                SiteReplays, replays_to, search)
from agora.federation.server import FederationConfig, run_federation
from tests.simkit import cluster, node, site

pytestmark = pytest.mark.timeout(120)


def replays(name: str, pods: tuple[tuple[int, int], ...]) -> SiteReplays:
    """Five T4 nodes of different sizes; ``pods``: (cores, milli-gpus)."""
    cl = cluster(site(name, node(name, "n0", 8, gpus=2, model="T4"),
                      node(name, "n1", 32, gpus=4, model="T4"),
                      node(name, "n2", 16, gpus=2, model="T4"),
                      node(name, "n3", 64, gpus=8, model="T4"),
                      node(name, "n4", 8, gpus=1, model="T4")))
    return SiteReplays(cl, [Demand(1000 * c, 0, g) for c, g in pods])


A = ((2, 300), (4, 600), (1, 250), (8, 1000), (2, 500), (6, 700), (4, 2000), (2, 400), (16, 0),
     (8, 0), (12, 4000))
B = ((4, 500), (2, 500), (8, 1000), (1, 250), (2, 750), (8, 2000), (2, 300), (4, 600), (24, 0),
     (4, 0))


def test_a_site_s_ratio_is_its_cost_over_fgd_s_on_the_same_orders():
    rep = replays("a", A)
    cap = Capacity(rep.cluster)
    seq = arrivals(rep.pods, int(cap.cap_gpu.sum()), np.random.default_rng(5))
    m = FragModel(rep.shapes, cap.models)
    by_hand = cost(replay(cap, seq, lambda c, d, fit: fgd_choice(m, c, d, fit)))
    assert rep.fgd(5) == pytest.approx(by_hand)
    # the linear placer with FGD's weights is FGD: ratio exactly 1
    assert rep.ratio(fgd_weights(), [5, 6]) == pytest.approx(1.0)


def test_train_spends_the_replays_it_reports_and_never_returns_worse_weights():
    rep = replays("a", A)
    learner = PlacementSiteLearner("a", rep, train_orders=(0, 1), val_orders=(7,),
                                   population=4, seed=3)      # a seed whose search gains
    start = rep.ratio(learner.get_weights()[0], (0, 1))
    used, metrics = learner.train(16, {})
    trace = learner.traces[-1]
    assert used == sum(trace.replays) == metrics["train/replays"]
    assert learner.iterations_for(16) == 2 and len(trace.ratios) == 1 + 2 * 4 - 1
    assert metrics["train/ratio_start"] == pytest.approx(start)
    assert rep.ratio(learner.get_weights()[0], (0, 1)) == pytest.approx(min(trace.ratios))
    assert min(trace.ratios) < start == 1.0
    n, ev = learner.evaluate({})
    assert n == 1 and ev["eval/ratio"] == pytest.approx(rep.ratio(learner.weights, (7,)))


def test_a_trace_counts_replays_to_a_threshold():
    t = SearchTrace(replays=[2, 2, 2, 2], ratios=[1.0, 0.97, 0.99, 0.9])
    assert t.best_curve() == [(2, 1.0), (4, 0.97), (6, 0.97), (8, 0.9)]
    c = t.best_curve()
    assert replays_to(c, 1.0) == 2 and replays_to(c, 0.95) == 8 and replays_to(c, 0.5) == float("inf")


def test_flower_fedavg_over_placer_sites_averages_what_each_site_found():
    learners = [PlacementSiteLearner("a", replays("a", A), population=4, seed=3),
                PlacementSiteLearner("b", replays("b", B), population=4, seed=1)]
    grid = grid_of(learners, make_client_app)
    try:
        res = run_federation(grid, [fgd_weights()], FederationConfig(
            rounds=1, local_steps=8, strategy="fedavg", min_fraction=1.0, seed=0))
    finally:
        grid.close()
    agg = res.arrays.to_numpy_ndarrays()[0]
    # every site used the same number of replays, so FedAvg's weighted mean is the mean;
    # after the round each site has evaluated the aggregate (set_weights) on its own orders
    found = [l.traces[-1] for l in learners]
    assert [sum(t.replays) for t in found] == [8, 8]
    assert agg.shape == (len(FEATURES),)
    assert np.allclose(learners[0].weights, agg) and np.allclose(learners[1].weights, agg)
    # reproducible from the seeds: the same sites searching again find the same weights
    again = [PlacementSiteLearner("a", replays("a", A), population=4, seed=3),
             PlacementSiteLearner("b", replays("b", B), population=4, seed=1)]
    for l in again:
        l.train(8, {})
    # both searches moved away from FGD (and from each other): the mean is not trivially FGD
    assert all(min(l.traces[-1].ratios) < 1.0 for l in again)
    assert not np.allclose(again[0].weights, again[1].weights)
    assert np.allclose(np.mean([l.weights for l in again], axis=0), agg)


def test_search_from_a_start_evaluates_the_start_first():
    rep = replays("a", A)
    w0 = np.array([1.0, 0.5, 0, 0, 0, 0, 0])
    w, trace = search(rep, w0, (0,), iters=1, population=3, sigma=0.5, seed=0)
    assert trace.ratios[0] == pytest.approx(rep.ratio(w0, (0,)))
    assert rep.ratio(w, (0,)) == pytest.approx(min(trace.ratios))


def test_bad_learner_arguments_say_what_is_expected():
    with pytest.raises(ValueError, match="population"):
        PlacementSiteLearner("a", replays("a", A), population=1)
    with pytest.raises(ValueError, match="train_orders"):
        PlacementSiteLearner("a", replays("a", A), train_orders=())
    with pytest.raises(ValueError, match="pods"):
        replays("a", ())
