"""The deployed ServerApp (``federation/deploy_serverapp.py``) run in this process over the
in-process ``SiteGrid`` of linear fakes (``tests/fakes.py``; a SuperLink's grid would hand
it the same calls): a site gone for longer than ``timeout-s`` ends the run with one line and
the last finished round's model written, and a bad run config names its key. A probe
(2026-12-05, the recipe on one machine): one of two SuperNodes killed under the default
``min-fraction`` 1.0 left the run waiting for good, naming no one; ``num-server-rounds=-1``
was "rounds: -1", ``'two'`` a bare int() error, ``local-steps=-5`` and ``min-nodes=0``
ran."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from flwr.app.message_type import MessageType

from agora.federation import deploy_serverapp
from agora.federation.client_app import make_client_app
from agora.federation.deploy_serverapp import BoundedWait, TooFewNodes, config_from, min_nodes
from agora.federation.grid import grid_of
from tests.fakes import LinearSite

pytestmark = pytest.mark.timeout(60)
RC = {"num-server-rounds": 3, "local-steps": 5, "strategy": "fedavg", "min-fraction": 1.0,
      "timeout-s": 2.0, "seed": 0, "min-nodes": 2, "final-arrays": ""}


def test_a_site_gone_for_longer_than_the_timeout_ends_the_run_with_the_last_model(
        tmp_path, capsys):
    sites = [LinearSite(s, i, 40) for i, s in enumerate("ab")]
    grid = grid_of(sites, make_client_app)
    b = next(n for n, node in grid.nodes.items() if node.site == "b")
    evaluated = []

    def deliver(msg, own=grid.nodes[b].deliver):   # b stops after round 1's evaluation
        reply = own(msg)
        if msg.metadata.message_type == MessageType.EVALUATE:
            evaluated.append(1)
            grid.offline.add(b)
        return reply
    grid.nodes[b].deliver = deliver
    np.savez(tmp_path / "init.npz", np.zeros(3), np.zeros(1))
    rc = {**RC, "initial-arrays": str(tmp_path / "init.npz"),
          "final-arrays": str(tmp_path / "final.npz")}
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=rc)
    try:
        with pytest.raises(TooFewNodes, match=r"1 of the 2 nodes a round needs .* connected "
                                              r"for 2 s \('timeout-s'\)"):
            deploy_serverapp.main(grid, ctx)
    finally:
        grid.close()
    assert evaluated == [1]                        # round 1 finished, round 2 never began
    with np.load(tmp_path / "final.npz") as f:
        final = [f["arr_0"], f["arr_1"]]
    # round 1's aggregate: both sites trained 5 steps from zero, equal counts
    twins = [LinearSite(s, i, 40) for i, s in enumerate("ab")]
    for t in twins:
        t.train(5, {})
    np.testing.assert_allclose(final[0], (twins[0].w + twins[1].w) / 2, rtol=1e-9)
    assert "agora federation: stopped: 1 of the 2 nodes" in capsys.readouterr().out


def test_a_wait_is_bounded_and_starts_again_once_enough_nodes_are_back():
    """(a fake grid and clock, standing in for a SuperLink's and the time)"""
    class Nodes:
        ids = [1]

        def get_node_ids(self):
            return list(self.ids)
    now = [0.0]
    grid = Nodes()
    w = BoundedWait(grid, 2, 10.0, clock=lambda: now[0])
    for t in (0.0, 5.0, 10.0):
        now[0] = t
        assert w.get_node_ids() == [1]
    grid.ids = [1, 2]
    now[0] = 30.0
    assert w.get_node_ids() == [1, 2]              # enough again: the wait starts over
    grid.ids = [1]
    for t in (31.0, 41.0):
        now[0] = t
        w.get_node_ids()
    now[0] = 41.5
    with pytest.raises(TooFewNodes, match="1 of the 2 nodes"):
        w.get_node_ids()


@pytest.mark.parametrize("key, value, said", [
    ("num-server-rounds", -1, "run config 'num-server-rounds': -1; expected an int >= 1"),
    ("num-server-rounds", "two", "run config 'num-server-rounds': 'two'; expected a whole"),
    ("num-server-rounds", 2.5, "run config 'num-server-rounds': 2.5; expected a whole"),
    ("local-steps", -5, "run config 'local-steps': -5; expected an int >= 0"),
    ("timeout-s", -1, "run config 'timeout-s': -1.0; expected > 0"),
    ("min-fraction", "all", "run config 'min-fraction': 'all'; expected a number"),
    ("trim-beta", 0.7, "run config 'trim-beta': 0.7; expected in [0, 0.5)"),
    ("strategy", "mean", "run config 'strategy': 'mean'; expected one of fedavg"),
    ("seed", None, "run config 'seed': missing; expected it in [tool.flwr.app.config]"),
])
def test_a_bad_run_config_names_its_key(key, value, said):
    rc = {k: v for k, v in RC.items() if not (k == key and value is None)}
    if value is not None:
        rc[key] = value
    with pytest.raises(ValueError, match=None) as e:
        config_from(rc)
    assert str(e.value).startswith(said), str(e.value)


def test_min_nodes_and_a_strategy_too_robust_for_them_are_named(tmp_path):
    with pytest.raises(ValueError, match="run config 'min-nodes': 0; expected the number"):
        min_nodes({**RC, "min-nodes": 0})
    np.savez(tmp_path / "init.npz", np.zeros(3), np.zeros(1))
    rc = {**RC, "strategy": "trimmed", "initial-arrays": str(tmp_path / "init.npz")}
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=rc)
    with pytest.raises(ValueError) as e:
        deploy_serverapp.main(None, ctx)
    # not "expected 'median'": a median of 2 is refused too
    assert str(e.value).startswith("run config 'trim-beta': 0.2 trims") and \
        "expected at least 3 sites" in str(e.value) and "median" not in str(e.value)


def test_agoras_agents_train_across_domains_through_the_deployed_apps(tmp_path, capsys):
    """The deployed ClientApp over ``federation.deployed_learner`` (each site's learner built
    again for every message, as a SuperExec's ClientApp process per message would: local
    state from the site's ``state`` folder) and the deployed ServerApp from the shipped
    checkpoint: the result is an Agora checkpoint ``agora simulate --policy`` runs. A probe:
    the deployed path could train only the least-squares fake; its result was an .npz no
    Agora command read."""
    from flwr.app import Message

    from agora.agents.learn import checkpoint
    from agora.deploy.cli import main as agora
    from agora.federation import deploy_clientapp
    from agora.federation.grid import SiteGrid, SiteNode

    fix = __import__("pathlib").Path(__file__).parents[1] / "fixtures"
    nodes, contexts = {}, {}
    for i, site in enumerate(("a", "b")):
        cfg = {"site": site, "learner": "agora.federation.deployed_learner:site_learner",
               "cluster": str(fix / "cluster_small.yaml"), "workload": "synthetic",
               "state": str(tmp_path / f"state-{site}"), "seed": i,
               "train-jobs": 5, "val-episodes": 1}
        contexts[site] = Context(run_id=1, node_id=1000 + i, node_config=cfg,
                                 state=RecordDict(), run_config={})

        def deliver(msg: Message, site=site) -> Message:
            deploy_clientapp._apps.clear()         # a ClientApp process per message
            return deploy_clientapp.app(msg, contexts[site])
        nodes[1000 + i] = SiteNode(site, deliver)
    grid = SiteGrid(nodes)
    rc = {**RC, "num-server-rounds": 2, "local-steps": 20, "timeout-s": 120.0,
          "initial-checkpoint": str(deploy_clientapp.__file__).replace(
              "federation/deploy_clientapp.py", "agents/learn/checkpoints/learned-synE.pt"),
          "final-checkpoint": str(tmp_path / "fed.pt"),
          "final-metrics": str(tmp_path / "fed.jsonl")}
    ctx = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=rc)
    try:
        deploy_serverapp.main(grid, ctx)
    finally:
        grid.close()
        deploy_clientapp._apps.clear()
    assert grid.errors == []
    # each site's budget carried across the processes: 2 rounds of 20 steps, +- an episode
    for site in ("a", "b"):
        steps = checkpoint.read(tmp_path / f"state-{site}" / "state.pt")["progress"]["step"]
        assert 40 <= steps < 40 + 200, (site, steps)
    rows = [__import__("json").loads(x) for x in (tmp_path / "fed.jsonl").read_text()
            .splitlines()]
    assert [r["round"] for r in rows] == [1, 2] and all("eval/score" in r and "train/charts/steps" in r for r in rows)
    agents, blob = checkpoint.load_agents(tmp_path / "fed.pt")
    assert blob["federation"]["rounds"] == 2
    # a complete checkpoint: a site's learner takes it as its own (it needs train_config)
    assert blob["train_config"] == checkpoint.read(rc["initial-checkpoint"])["train_config"]
    from agora.agents.learn.networks import get_weights

    shipped, _ = checkpoint.load_agents(rc["initial-checkpoint"])
    assert any(not np.array_equal(a, b) for a, b in zip(get_weights(agents.modules),
                                                         get_weights(shipped.modules)))
    capsys.readouterr()
    assert agora(["simulate", "--policy", str(tmp_path / "fed.pt"), "--cluster",
                  str(fix / "cluster_small.yaml"), "--workload", "synthetic:jobs=5",
                  "--out", str(tmp_path / "sim"), "--json"]) == 0


def test_a_site_learner_names_a_bad_node_config_key(tmp_path):
    from agora.federation.deployed_learner import site_learner

    with pytest.raises(ValueError, match="node config 'workload': missing"):
        site_learner("a", cluster="c.yaml", state=str(tmp_path))
    with pytest.raises(ValueError, match="node config 'hiden': not a key of this learner"):
        site_learner("a", cluster="c.yaml", workload="w", state=str(tmp_path), hiden=3)
    with pytest.raises(ValueError, match=r"node config 'train-jobs': 0; expected a whole "
                                         r"number >= 1"):
        site_learner("a", cluster="default", workload="synthetic", state=str(tmp_path),
                     **{"train-jobs": 0})


def test_an_error_reply_is_named_with_its_site(caplog):
    """A probe: a dead SuperNode's "Node Unavailable" was said nowhere (the guard kept the
    model before Flower's own failure log)."""
    import logging

    from flwr.app import Error, Message, RecordDict as RD

    from agora.federation.guard import GuardedFedAvg

    grid_of([LinearSite("a", 0, 40)], make_client_app).close()   # sets Flower's run identity
    g = GuardedFedAvg(describe=lambda node: ("site-b", None))
    sent = Message(RD(), 7, MessageType.TRAIN)
    sent.metadata.__dict__["_message_id"] = "m"
    reply = Message(Error(1001, "Node Unavailable"), reply_to=sent)
    reply.metadata.__dict__["_src_node_id"] = 7
    with caplog.at_level(logging.INFO, logger="flwr"):
        usable, failed = g._sort(3, [reply], lambda m: None)
    assert usable == [] and failed == [reply]
    assert "round 3: the reply of site-b is an error: Node Unavailable" in caplog.text
