"""Tests of federation/: Flower's strategies over a SiteGrid of real ClientApps.

The site learners here are a test fake (tests/fakes.py): least-squares models on site-local data (not the
PPO agents), small enough that every aggregate can be recomputed by hand. They exercise the
parts federation owns: the Grid, the ClientApp, weight checks, drop-outs, late sites and
Byzantine sites under Flower's FedAvg / median / trimmed mean.
"""

from __future__ import annotations

import time
from importlib import metadata

import numpy as np
import pytest

from agora.federation.client_app import make_client_app
from agora.federation.grid import ERR_WEIGHTS, SiteGrid
from agora.federation.grid import grid_of as federation_grid_of
from agora.federation.learner import WeightError, check_weights
from agora.federation.server import FederationConfig, run_federation
from tests.fakes import LinearSite

pytestmark = pytest.mark.timeout(60)


class Byzantine(LinearSite):
    """Sends its weights scaled by -50 (a model-poisoning site)."""

    def get_weights(self):
        return [-50.0 * self.w - 10.0, -50.0 * self.b - 10.0]


class NaNSite(LinearSite):
    def get_weights(self):
        return [np.full_like(self.w, np.nan), self.b.copy()]


class Sleepy(LinearSite):
    """Answers its first train request after ``delay`` seconds, later ones at once."""
    delay = 1.5

    def train(self, steps, config):
        if self.calls == 0:
            time.sleep(self.delay)
        return super().train(steps, config)


W = np.array([1.0, -2.0, 3.0])


def grid_of(learners) -> SiteGrid:
    return federation_grid_of(learners, make_client_app)


def run(learners, **kw):
    grid = grid_of(learners)
    try:
        res = run_federation(grid, [np.zeros(3), np.zeros(1)], FederationConfig(**kw))
    finally:
        grid.close()
    return grid, res.arrays.to_numpy_ndarrays(), res


def test_pinned_flower_fedavg_is_the_sample_weighted_mean():
    """Fails loudly if the pinned flwr's FedAvg stops weighting by 'num-examples'."""
    assert metadata.version("flwr") == "1.41.0"
    sites = [LinearSite(f"s{i}", i, n, W + i) for i, n in enumerate((10, 30, 60))]
    _, agg, _ = run(sites, rounds=1, local_steps=5, strategy="fedavg")
    # Each site trained from zeros; recompute its local model independently.
    ref = [LinearSite(s.site, i, len(s.y), W + i) for i, s in enumerate(sites)]
    for r in ref:
        r.train(5, {})
    n = np.array([len(r.y) for r in ref], dtype=float)
    want_w = sum(k * r.w for k, r in zip(n, ref)) / n.sum()
    np.testing.assert_allclose(agg[0], want_w, rtol=1e-6)
    assert not np.allclose(agg[0], np.mean([r.w for r in ref], axis=0), rtol=1e-3)


def test_federation_learns_a_shared_model():
    sites = [LinearSite(f"s{i}", i, 40, W) for i in range(4)]
    _, agg, res = run(sites, rounds=4, local_steps=20)
    np.testing.assert_allclose(agg[0], W, atol=0.05)
    losses = [res.evaluate_metrics_clientapp[r]["loss"] for r in sorted(res.evaluate_metrics_clientapp)]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("strategy, hurt", [("fedavg", True), ("median", False),
                                            ("trimmed", False)])
def test_a_byzantine_site_hurts_fedavg_not_the_robust_strategies(strategy, hurt):
    sites = [LinearSite(f"s{i}", i, 40, W) for i in range(4)] + [Byzantine("bad", 9, 40, W)]
    _, agg, _ = run(sites, rounds=3, local_steps=20, strategy=strategy, trim_beta=0.2)
    err = float(np.abs(agg[0] - W).max())
    assert (err > 1.0) if hurt else (err < 0.2), (strategy, agg[0])


def test_nan_weights_are_refused_naming_site_and_tensor_and_the_round_goes_on():
    sites = [LinearSite(f"s{i}", i, 40, W) for i in range(3)] + [NaNSite("nan", 5, 40, W)]
    grid, agg, _ = run(sites, rounds=2, local_steps=20, min_fraction=0.5)
    assert np.isfinite(agg[0]).all()
    reasons = [r for site, r in grid.errors if site == "nan"]
    assert len(reasons) == 2 and all("site nan: tensor 'w'" in r and "non-finite" in r
                                     for r in reasons), grid.errors


@pytest.mark.timing
def test_a_late_site_is_left_out_of_the_round_and_rejoins_the_next():
    sites = [LinearSite(f"s{i}", i, 40, W) for i in range(3)]
    late = Sleepy("late", 7, 40, W)
    t0 = time.perf_counter()
    grid, _, res = run(sites + [late], rounds=2, local_steps=5, timeout_s=0.8,
                       min_fraction=0.5)
    assert time.perf_counter() - t0 < 6
    # Its round-1 reply missed the round; it was asked (and trained) again in round 2.
    assert grid.late >= 1 and late.calls == 2


def test_weight_checks_name_the_site_and_tensor():
    ref = [np.zeros((2, 3)), np.zeros(4)]
    with pytest.raises(WeightError, match=r"site a: tensor 'fc.weight' has shape \(3, 2\)"):
        check_weights("a", ["fc.weight", "fc.bias"], ref, [np.zeros((3, 2)), np.zeros(4)])
    with pytest.raises(WeightError, match="site a: sent 1 tensors, expected 2"):
        check_weights("a", ["fc.weight", "fc.bias"], ref, [np.zeros((2, 3))])
    with pytest.raises(WeightError, match="tensor 'fc.bias' has dtype int64"):
        check_weights("a", ["fc.weight", "fc.bias"], ref, [np.zeros((2, 3)), np.zeros(4, int)])
    assert ERR_WEIGHTS == 1002


def test_a_round_that_kept_the_model_does_not_say_it_aggregated():
    """A probe: every update refused, the model kept -- and the round's row said
    "aggregated": true (federation/train.py ``_one_round``)."""
    from agora.federation.train import FedTrainConfig, _one_round

    start = [np.zeros(3), np.zeros(1)]
    good = federation_grid_of([LinearSite(f"s{i}", i, 20, W) for i in range(3)],
                              make_client_app)
    bad = federation_grid_of([NaNSite(f"s{i}", i, 20, W) for i in range(3)], make_client_app)
    try:
        moved, fed = _one_round(good, start, FedTrainConfig(local_steps=5), 1)
        assert fed["aggregated"] and not np.array_equal(moved[0], start[0])
        kept, fed = _one_round(bad, start, FedTrainConfig(local_steps=5), 1)
        assert not fed["aggregated"] and all(np.array_equal(a, b) for a, b in zip(kept, start))
    finally:
        good.close()
        bad.close()
