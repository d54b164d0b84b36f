"""The federation's guard against a hostile member, from a review (the ``Unchecked`` grid as
in tests/federation/test_guard.py: a SuperLink delivers replies as the member sent them);
each case failed before its fix:

- a train reply the guard passed crashed Flower's aggregation, ending the run: an extra
  metric name, a list where the others send a number, the right arrays under other names;
- evaluate replies went to Flower unchecked: a count cancelling the others' divided by
  zero, an extra name raised, NaN set the reported score;
- with an honest site dropped, median of 2 replies and a trim of int(beta x 4) = 0 were a
  plain mean: one member's bounded value moved the model anyway -- such a round now keeps
  the model."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.app.message_type import MessageType

from agora.federation.client_app import make_client_app
from agora.federation.grid import SiteGrid, grid_of
from agora.federation.server import FederationConfig, run_federation
from tests.fakes import LinearSite

pytestmark = pytest.mark.timeout(60)
W = np.array([1.0, -2.0, 3.0])
INIT = [np.zeros(3), np.zeros(1)]


class Unchecked(SiteGrid):
    def _deliver(self, msg):
        return self.nodes[msg.metadata.dst_node_id].deliver(msg)


def train_attack(reply, attack):
    content = reply.content
    metrics = next(iter(content.metric_records.values()))
    w, b = content["arrays"].to_numpy_ndarrays()
    if attack == "extra_metric":          # one more (finite) metric than the others send
        metrics["x"] = 1.0
    elif attack == "list_metric":         # a finite list where the others send a number
        metrics["loss"] = [1.0, 2.0]
    elif attack == "renamed_arrays":      # the right arrays, under other names
        content["arrays"] = ArrayRecord(OrderedDict([("w", Array(w)), ("b", Array(b))]))
    elif attack == "within_bound":        # every value within MAX_ABS_WEIGHT (1e4)
        content["arrays"] = ArrayRecord([np.full_like(w, 9999.0), np.full_like(b, 9999.0)])
    return reply


def eval_attack(reply, attack):
    metrics = next(iter(reply.content.metric_records.values()))
    if attack == "eval_cancel_count":      # cancels the 3 honest members' 3 x 40 samples
        metrics["num-examples"] = -120
    elif attack == "eval_extra_metric":
        metrics["x"] = 1.0
    elif attack == "eval_nan":
        metrics["loss"] = float("nan")
    return reply


def run(train=None, evaluate=None, *, honest=3, strategy="fedavg", trim_beta=0.2,
        drop=(), rounds=2, min_fraction=0.5):
    sites = [LinearSite(f"s{i}", i, 40, W) for i in range(honest)]
    sites.append(LinearSite("bad0", 9, 40, W))
    grid = grid_of(sites, make_client_app)
    grid.__class__ = Unchecked
    for node in grid.nodes.values():
        def deliver(msg, inner=node.deliver, site=node.site):
            is_train = msg.metadata.message_type == MessageType.TRAIN
            if site in drop and is_train:
                return None                            # an honest site that dropped out
            reply = inner(msg)
            if site == "bad0" and reply.has_content():
                if is_train and train:
                    return train_attack(reply, train)
                if not is_train and evaluate:
                    return eval_attack(reply, evaluate)
            return reply
        node.deliver = deliver
    try:
        res = run_federation(grid, INIT, FederationConfig(
            rounds=rounds, local_steps=20, strategy=strategy, trim_beta=trim_beta,
            min_fraction=min_fraction))
    finally:
        grid.close()
    return res, grid.errors


def honest_only(rounds=2, honest=3):
    grid = grid_of([LinearSite(f"s{i}", i, 40, W) for i in range(honest)], make_client_app)
    try:
        res = run_federation(grid, INIT, FederationConfig(rounds=rounds, local_steps=20))
    finally:
        grid.close()
    return res.arrays.to_numpy_ndarrays()


# 1. One member crashes every round (and so the run) with a reply the guard lets through.
@pytest.mark.parametrize("attack", ["extra_metric", "list_metric", "renamed_arrays"])
@pytest.mark.parametrize("strategy", ["fedavg", "median"])
def test_a_train_reply_the_guard_passes_does_not_crash_the_round(attack, strategy):
    res, errors = run(train=attack, strategy=strategy)      # raised before the fix
    agg = res.arrays.to_numpy_ndarrays()
    assert len(agg) == 2 and all(np.isfinite(a).all() for a in agg)
    if attack == "renamed_arrays":       # its arrays are left out, named
        assert any(site == "bad0" for site, _ in errors), errors
        if strategy == "fedavg":
            np.testing.assert_allclose(agg[0], honest_only()[0], rtol=1e-9)


# 2. Evaluate replies are not checked at all.
@pytest.mark.parametrize("attack", ["eval_cancel_count", "eval_extra_metric", "eval_nan"])
def test_an_evaluate_reply_is_checked_like_a_train_reply(attack):
    res, errors = run(evaluate=attack)                      # raised / NaN before the fix
    for rnd, rec in res.evaluate_metrics_clientapp.items():
        for k, v in rec.items():
            assert np.isfinite(v), (rnd, k, v)
    if attack != "eval_extra_metric":    # its extra name is dropped, the rest kept
        assert any(site == "bad0" for site, _ in errors), errors


# 3. A robust strategy over a round with fewer replies than it needs to cut anything.
@pytest.mark.parametrize("strategy, honest, drop", [
    ("trimmed", 4, ("s3",)),   # 5 sites trim 1 each end; 4 replies trim int(0.8) = 0
    ("median", 2, ("s1",)),    # 3 sites; 2 replies: the median is their mean
])
def test_one_member_cannot_move_a_robust_aggregate_when_an_honest_site_drops_out(
        strategy, honest, drop):
    res, errors = run(train="within_bound", strategy=strategy, honest=honest, drop=drop,
                      rounds=1)
    agg = res.arrays.to_numpy_ndarrays()
    # honest updates are a few units from 0 after 20 steps; the hostile one is 9999
    assert float(np.abs(agg[0]).max()) < 10.0, agg
