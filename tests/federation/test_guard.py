"""The server's guard on train replies (``federation/guard.py``), on the path where nothing else
checks them: a SuperLink's grid hands the ServerApp what members sent as it is. A grid that
delivers replies unchecked stands in for it here (a fake, as the test says); the members are
the linear fakes of ``tests/fakes.py`` and hostile variants of them. A probe (2026-12-04):
NaN made the deployed model NaN, 1e30 took FedAvg and the trimmed mean over, a sample count of
10^12 froze the model at one member's update, -1000 extrapolated, and 2 of 5 replies were
aggregated where min_fraction asked for 3."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app.message_type import MessageType

from agora.federation.client_app import make_client_app
from agora.federation.grid import SiteGrid, grid_of
from agora.federation.guard import COUNT_CAP
from agora.federation.learner import MAX_ABS_WEIGHT
from agora.federation.server import FederationConfig, make_strategy, run_federation
from tests.fakes import LinearSite

pytestmark = pytest.mark.timeout(60)
W = np.array([1.0, -2.0, 3.0])


class Unchecked(SiteGrid):
    """Delivers each reply as the member sent it (a SuperLink's grid checks nothing)."""

    def _deliver(self, msg):
        return self.nodes[msg.metadata.dst_node_id].deliver(msg)


def hostile(reply, attack: str):
    """``reply`` (a train reply) as a member with ``attack`` sends it instead."""
    from flwr.app import ArrayRecord

    arrays = reply.content["arrays"].to_numpy_ndarrays()
    metrics = next(iter(reply.content.metric_records.values()))
    w, b = arrays
    sent = {"huge": [np.full_like(w, 1e30), b], "nan": [np.full_like(w, np.nan), b],
            "dtype": [w.astype(np.float16), b], "shape": [np.zeros(7), b]}.get(attack)
    if attack in ("count_huge", "count_negative"):
        sent = [-50.0 * w - 10.0, -50.0 * b - 10.0]
        metrics["num-examples"] = 10**12 if attack == "count_huge" else -1000
    if attack == "nan_metric":
        metrics["loss"] = float("nan")
    if sent is not None:
        reply.content["arrays"] = ArrayRecord(sent)
    return reply


def run(attack: str, *, honest: int = 3, hostiles: int = 1, strategy: str = "fedavg",
        min_fraction: float = 0.5, rounds: int = 2):
    sites = [LinearSite(f"s{i}", i, 40, W) for i in range(honest)]
    sites += [LinearSite(f"bad{k}", 9 + k, 40, W) for k in range(hostiles)]
    grid = grid_of(sites, make_client_app)
    grid.__class__ = Unchecked
    for node in grid.nodes.values():
        if node.site.startswith("bad"):
            def deliver(msg, honest_deliver=node.deliver):
                reply = honest_deliver(msg)
                train = msg.metadata.message_type == MessageType.TRAIN
                return hostile(reply, attack) if train and reply.has_content() else reply
            node.deliver = deliver
    try:
        res = run_federation(grid, [np.zeros(3), np.zeros(1)], FederationConfig(
            rounds=rounds, local_steps=20, strategy=strategy, min_fraction=min_fraction))
    finally:
        grid.close()
    return res.arrays.to_numpy_ndarrays(), grid.errors


def honest_only(rounds: int = 2, n: int = 3):
    grid = grid_of([LinearSite(f"s{i}", i, 40, W) for i in range(n)], make_client_app)
    try:
        res = run_federation(grid, [np.zeros(3), np.zeros(1)],
                             FederationConfig(rounds=rounds, local_steps=20))
    finally:
        grid.close()
    return res.arrays.to_numpy_ndarrays()


@pytest.mark.parametrize("attack, why", [
    ("huge", f"expected at most {MAX_ABS_WEIGHT:g}"), ("nan", "non-finite"),
    ("dtype", "dtype float16, expected float64"), ("shape", "shape (7,)"),
    ("count_negative", "expected a whole number of samples >= 1"),
    ("nan_metric", "metric 'loss' is nan")])
def test_a_reply_that_cannot_be_aggregated_is_left_out_and_named(attack, why):
    agg, errors = run(attack)
    # what the three honest members make alone, to the bit
    np.testing.assert_allclose(agg[0], honest_only()[0], rtol=1e-9)
    assert all(np.isfinite(a).all() for a in agg)
    named = [e for e in errors if e[0] == "bad0"]
    assert len(named) == 2 and all(why in e[1] for e in named), errors   # once a round


@pytest.mark.parametrize("honest", [3, 1])
def test_a_member_claiming_huge_sample_counts_weighs_at_most_twice_the_median(honest):
    """Twice the round's median; with two members, twice the other's: with one honest member
    beside it (a probe, deployed with the recipe's two SuperNodes), 2x the median of both
    counts was their sum, and the hostile member's update became the model."""
    agg, errors = run("count_huge", honest=honest, rounds=1)
    assert errors == []                        # not refused: its count is capped
    # without the cap its update (-50 w - 10) would be the aggregate, to 1e-10
    honest_agg = honest_only(rounds=1, n=honest)[0]   # members of 40 samples, equal weights
    twin = LinearSite("bad0", 9, 40, W)         # what the hostile member trained
    twin.train(20, {})
    evil = -50.0 * twin.w - 10.0
    share = COUNT_CAP * 40 / (honest * 40 + COUNT_CAP * 40)
    np.testing.assert_allclose(agg[0], (1 - share) * honest_agg + share * evil, rtol=1e-9)


def test_a_round_with_fewer_usable_replies_than_min_fraction_keeps_the_model():
    agg, errors = run("nan", honest=2, hostiles=3, min_fraction=0.6, rounds=1)
    np.testing.assert_array_equal(agg[0], np.zeros(3))     # 2 usable of the 3 asked for
    assert ("(all)", "too few usable replies for min_fraction: the model was not updated") \
        in errors


def test_a_trimmed_mean_that_would_trim_nothing_is_refused():
    with pytest.raises(ValueError, match=r"trims int\(0.2 x 4\) = 0 of 4 sites.*at least 0.25"):
        make_strategy(FederationConfig(strategy="trimmed", trim_beta=0.2), 4)
    with pytest.raises(ValueError, match="at least 0.34 for 3 sites"):
        make_strategy(FederationConfig(strategy="trimmed", trim_beta=0.3), 3)
    make_strategy(FederationConfig(strategy="trimmed", trim_beta=0.2), 5)
    make_strategy(FederationConfig(strategy="trimmed", trim_beta=0.34), 3)


def test_a_median_of_two_is_refused_and_the_deployed_app_reads_its_trim():
    """A review: a median of 2 sites is their mean (every round of it would keep the model);
    the deployed ServerApp had no key for the trim, always 0.2."""
    from agora.federation.deploy_serverapp import config_from

    with pytest.raises(ValueError, match="'median' of 2 sites' updates is their mean"):
        make_strategy(FederationConfig(strategy="median"), 2)
    make_strategy(FederationConfig(strategy="median"), 3)
    rc = {"num-server-rounds": 1, "local-steps": 8, "strategy": "trimmed",
          "min-fraction": 1.0, "timeout-s": 60.0, "seed": 0, "trim-beta": 0.34}
    assert config_from(rc).trim_beta == 0.34
    make_strategy(config_from(rc), 3)              # trims one of 3 from each end


def test_the_deployed_server_app_without_its_initial_model_says_which_setting(tmp_path):
    """A probe: the app's default run config (initial-arrays = "") failed with a bare
    FileNotFoundError traceback, and `flwr run` still exited 0."""
    from flwr.app import Context, RecordDict

    from agora.federation import deploy_serverapp

    rc = {"num-server-rounds": 1, "local-steps": 1, "strategy": "fedavg",
          "min-fraction": 0.5, "timeout-s": 10.0, "seed": 0, "min-nodes": 2,
          "initial-arrays": "", "final-arrays": ""}
    for path, said in (("", r"'initial-arrays' / 'initial-checkpoint': neither given; "
                             r"expected one: the path of an .npz"),
                       (str(tmp_path / "none.npz"), r"run config 'initial-arrays': .* is no "
                                                    r"file; expected the path of an .npz")):
        ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(),
                      run_config={**rc, "initial-arrays": path})
        with pytest.raises(ValueError, match=said):
            deploy_serverapp.main(None, ctx)


def test_the_grid_returns_replies_by_node_whatever_order_flower_sampled_them():
    """Flower samples nodes with the process's shared ``random``: the order of the replies,
    and so the order of the aggregate's sums, must not follow it (a resumed run differed
    from an uninterrupted one in its last bits once in a full suite run)."""
    from flwr.app import Message, RecordDict

    from agora.federation.grid import FIRST_NODE_ID, SiteNode

    ids = [FIRST_NODE_ID + i for i in range(4)]
    grid = SiteGrid({n: SiteNode(f"s{n}", lambda msg: Message(RecordDict(), reply_to=msg), [])
                     for n in ids})
    try:
        for order in ([3, 1, 0, 2], [2, 3, 1, 0]):
            msgs = [grid.create_message(RecordDict(), MessageType.TRAIN, ids[i], "1")
                    for i in order]
            replies = grid.send_and_receive(msgs, timeout=10)
            assert [r.metadata.src_node_id for r in replies] == ids
    finally:
        grid.close()
