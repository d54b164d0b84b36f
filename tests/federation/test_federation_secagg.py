"""Tests of federation/secagg.py: Flower's SecAgg+ FedAvg over a SiteGrid of real ClientApps.

The learners are the least-squares test fake of tests/fakes.py. The reference for every
SecAgg+ aggregate is the plain path (``run_federation`` with Flower's FedAvg) on identically
seeded learners; the two must agree within the quantisation bound derived in
``federation/secagg.py``:

    |SecAgg+ FedAvg - FedAvg| < k · (2 · clipping_range + spread / 2) / sum_i q_i,
    q_i = round(n_i · quantization_range / max_weight)

(k sites, n_i their sample counts, spread the max - min of the sites' values per
coordinate). With the defaults (8.0, 2**22, 1000) and 3 sites of 10/30/60 samples this is
about 1.2e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import (RECORD_KEY_CONFIGS, Key,
                                                                  Stage)

from agora.federation.client_app import make_client_app
from agora.federation.grid import FIRST_NODE_ID, SiteGrid, SiteNode, client_app_node
from agora.federation.secagg import SecAggConfig, make_secagg_client_app, run_secagg_federation
from agora.federation.server import FederationConfig, run_federation
from tests.fakes import W_TRUE, LinearSite

pytestmark = pytest.mark.timeout(120)

ZERO = [np.zeros(3), np.zeros(1)]


def sites(counts, shift=True):
    return [LinearSite(f"s{i}", i, n, W_TRUE + (i if shift else 0))
            for i, n in enumerate(counts)]


def stage(msg) -> str | None:
    if msg.has_content() and RECORD_KEY_CONFIGS in msg.content.config_records:
        return msg.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE)
    return None


def secagg_grid(learners, drop=None, tap=None) -> SiteGrid:
    """SecAgg+ ClientApps; ``drop(site, stage, round)`` True makes the site not answer
    that message; ``tap`` collects (site, message, reply)."""
    nodes = {}
    for i, l in enumerate(learners):
        node = client_app_node(l.site, FIRST_NODE_ID + i, make_secagg_client_app(l), 1,
                               l.weight_names())

        def deliver(msg, site=l.site, inner=node.deliver):
            st = stage(msg)
            if drop and drop(site, st, msg.metadata.group_id):
                return None
            reply = inner(msg)
            if tap is not None:
                tap.append((site, st, msg, reply))
            return reply
        nodes[FIRST_NODE_ID + i] = SiteNode(l.site, deliver, l.weight_names())
    return SiteGrid(nodes)


def run_secagg(learners, secagg=SecAggConfig(), drop=None, tap=None, evaluate_fn=None, **kw):
    grid = secagg_grid(learners, drop, tap)
    try:
        res = run_secagg_federation(grid, ZERO, FederationConfig(**kw), secagg,
                                    evaluate_fn=evaluate_fn)
    finally:
        grid.close()
    return res.arrays.to_numpy_ndarrays(), res


def run_plain(learners, **kw):
    grid = SiteGrid({FIRST_NODE_ID + i: client_app_node(l.site, FIRST_NODE_ID + i,
                                                        make_client_app(l), 1, l.weight_names())
                     for i, l in enumerate(learners)})
    try:
        res = run_federation(grid, ZERO, FederationConfig(**kw))
    finally:
        grid.close()
    return res.arrays.to_numpy_ndarrays()


def trained(learners, steps):
    """Each site's local model after one round from zeros, recomputed independently."""
    out = []
    for l in learners:
        ref = LinearSite(l.site, int(l.site[1:]), len(l.y), W_TRUE)
        ref.X, ref.y = l.X, l.y
        ref.train(steps, {})
        out.append(np.concatenate(ref.get_weights()))
    return np.array(out)


def bound_for(learners, steps, secagg=SecAggConfig()):
    p = trained(learners, steps)
    spread = float((p.max(axis=0) - p.min(axis=0)).max())
    return secagg.bound([len(l.y) for l in learners], spread), p


def test_secagg_fedavg_equals_plain_fedavg_within_the_quantisation_bound():
    counts = (10, 30, 60)
    plain = run_plain(sites(counts), rounds=1, local_steps=5)
    secure, res = run_secagg(sites(counts), rounds=1, local_steps=5)
    bound, p = bound_for(sites(counts), 5)
    diff = float(np.abs(np.concatenate(secure) - np.concatenate(plain)).max())
    print(f"SecAgg+ vs FedAvg: max |diff| = {diff:.3e}, bound = {bound:.3e}")
    assert bound < 2e-4
    assert 0 < diff < bound, (diff, bound)     # > 0: it really went through quantisation
    # ... and it is the sample-weighted mean, not the plain mean of the sites.
    assert np.abs(np.concatenate(secure) - p.mean(axis=0)).max() > 100 * bound
    assert res.train_metrics_clientapp[1]["loss"] > 0


def test_secagg_runs_are_reproducible_from_the_seed_and_learn():
    a, res = run_secagg(sites((40,) * 4, shift=False), rounds=3, local_steps=20, seed=7)
    b, _ = run_secagg(sites((40,) * 4, shift=False), rounds=3, local_steps=20, seed=7)
    c, _ = run_secagg(sites((40,) * 4, shift=False), rounds=3, local_steps=20, seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)        # masks differ run to run; sums do not
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))   # the rounding is seeded
    np.testing.assert_allclose(a[0], W_TRUE, atol=0.05)
    losses = [res.evaluate_metrics_clientapp[r]["loss"] for r in (1, 2, 3)]
    assert losses[-1] < losses[0]


def test_a_site_dropping_out_after_sharing_keys_is_unmasked_out_of_the_round():
    """Site s2 answers setup and share_keys of round 1, then never sends its masked vector:
    the survivors' shares of its key remove its pairwise masks, the round's aggregate is
    FedAvg over the three survivors, and s2 is back in round 2."""
    asked = []

    def drop(site, st, rnd):
        if site == "s2" and st == Stage.COLLECT_MASKED_VECTORS:
            asked.append(rnd)
            return rnd == "1"
        return False

    round1 = {}
    counts = (20, 30, 40, 50)
    learners = sites(counts)
    _, res = run_secagg(learners, drop=drop, rounds=2, local_steps=5, min_fraction=0.5,
                        evaluate_fn=lambda rnd, arrays: round1.setdefault(rnd, arrays) and None)
    survivors = [learners[i] for i in (0, 1, 3)]
    plain = run_plain(sites(counts)[:2] + sites(counts)[3:], rounds=1, local_steps=5)
    bound, _ = bound_for(survivors, 5)
    diff = float(np.abs(np.concatenate(round1[1]) - np.concatenate(plain)).max())
    print(f"drop-out round: max |diff| = {diff:.3e}, bound = {bound:.3e}")
    assert diff < bound, (diff, bound)
    assert asked == ["1", "2"] and 2 in res.train_metrics_clientapp


def test_a_round_with_too_few_sites_left_is_halted_and_the_model_kept():
    """3 sites, threshold round(0.67·3) = 2 live neighbours: losing two is one too many."""
    def drop(site, st, rnd):
        return site in ("s1", "s2") and st == Stage.COLLECT_MASKED_VECTORS

    out, res = run_secagg(sites((20, 30, 40)), drop=drop, rounds=1, local_steps=5,
                          min_fraction=0.5)
    for x, z in zip(out, ZERO):
        np.testing.assert_array_equal(x, z)
    assert res.train_metrics_clientapp == {}


def test_the_server_never_receives_a_sites_unmasked_weights():
    tap = []
    secagg = SecAggConfig()
    learners = sites((10, 30, 60))
    run_secagg(learners, tap=tap, rounds=1, local_steps=5)
    p = trained(learners, 5)
    C, Q = secagg.clipping_range, secagg.quantization_range
    seen = 0
    for site, st, _, reply in tap:
        assert reply is not None and not reply.has_error(), (site, st)
        for rec in reply.content.array_records.values():   # no arrays go back in the clear
            assert len(rec) == 0, (site, st, list(rec))
        if st != Stage.COLLECT_MASKED_VECTORS:
            continue
        i = int(site[1:])
        masked = [bytes_to_ndarray(b) for b in
                  reply.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]]
        r = round(len(learners[i].y) * Q / secagg.max_weight) / Q
        plain_q = (r * p[i] + C) * Q / (2 * C)    # the unmasked quantised vector
        got = np.concatenate([m.ravel() for m in masked[1:]]).astype(float)
        assert np.all(np.abs(got - plain_q) > 2), (site, got, plain_q)
        assert masked[0][0] != round(r * Q)       # the sample weight is masked too
        seen += 1
    assert seen == 3


class Float32Site(LinearSite):
    """The fake with float32 weights, as the real actor-critic's: SecAgg+ unmasks the global
    model to float64."""

    def get_weights(self) -> list[np.ndarray]:
        return [self.w.astype(np.float32), self.b.astype(np.float32)]


def test_float32_sites_keep_aggregating_after_the_first_secagg_round():
    """A probe: from round 2 each site refused its own update (float32 weights checked
    against the float64 model it received), so the model never moved again while the run
    said every round aggregated."""
    learners = [Float32Site(f"s{i}", i, 40, W_TRUE) for i in range(4)]
    zero32 = [np.zeros(3, np.float32), np.zeros(1, np.float32)]
    grid = secagg_grid(learners)
    try:
        res = run_secagg_federation(grid, zero32, FederationConfig(rounds=3, local_steps=3,
                                                                    seed=7), SecAggConfig())
    finally:
        grid.close()
    assert set(res.train_metrics_clientapp) >= {1, 2, 3}, res.train_metrics_clientapp
    losses = [res.train_metrics_clientapp[r]["loss"] for r in (1, 2, 3)]
    assert losses[2] < losses[1] < losses[0], losses    # each round starts where the last ended
