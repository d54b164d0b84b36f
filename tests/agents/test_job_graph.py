"""The graph encoder (``AgentConfig.encoder: "graph"``): what a slot's job graph holds
(``agents/step/job_graph.py``), the numpy actor against its torch twin with graphs, that the
encoder reads a job's structure beyond the candidate, that training reads back what it acted
on, and that a checkpoint keeps the encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.loop import run_episode
from agora.agents.learn.ppo import flatten
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.step.job_graph import (GRAPH_DIM, GRAPH_NODE_FEATURES, GRAPH_NODES,
                                          graph_nodes, split)
from agora.agents.step.observe import OWN_FEATURES, SLOT_FEATURES, Observer
from agora.agents.step.simulation import AgentsPolicy
from agora.agents.workloads.synthetic import generate
from tests.agents.test_learn_global_state import assert_reads_back
from tests.agents.test_step import CL, assert_numpy_is_torch
from tests.simkit import job, task, workload

torch.set_num_threads(1)   # tests share a 2-core machine


def graph_agents(k: int = 4, seed: int = 0) -> Agents:
    torch.manual_seed(seed)
    return Agents(AgentConfig(k=k, hidden=16, encoder="graph"))


def diamond(jid: str, arrival: float, tail: float = 5.0):
    """a -> (b, c) -> d, a's children wait for it."""
    return job(jid, arrival, "a", task("a", 10.0, 1), task("b", 20.0, 1, after=["a"]),
               task("c", 30.0, 1, instances=3, after=["a"]),
               task("d", tail, 1, after=["b", "c"]))


def first_round(wl, graph: bool = True, k: int = 4):
    sim = Simulator(CL, wl, SimConfig())
    sim.step_events()
    return sim, Observer(CL, k, graph=graph).observe(sim.ledger, sim.cap, [0], sim.now)[0]


def test_a_slots_job_graph_holds_the_candidate_then_what_it_unblocks():
    sim, obs = first_round(workload(diamond("j", 0.0)))
    (t,) = obs.window
    assert [u.task.id for u in graph_nodes(t)] == ["a", "b", "c", "d"]
    assert obs.slots.shape == (4, len(SLOT_FEATURES) + GRAPH_DIM)
    x, adj = split(obs.slots[0, len(SLOT_FEATURES):])
    assert x[:, 0].tolist() == [1, 1, 1, 1] + [0] * (GRAPH_NODES - 4)
    ready = GRAPH_NODE_FEATURES.index("ready")
    assert x[:4, ready].tolist() == [1, 0, 0, 0]
    left = GRAPH_NODE_FEATURES.index("log_left")
    assert x[2, left] == pytest.approx(np.log1p(3) / 10)
    edges = {(i, j) for i, j in zip(*np.nonzero(adj))}
    assert edges == {(0, 1), (0, 2), (1, 3), (2, 3)}
    plain = first_round(workload(diamond("j", 0.0)), graph=False)[1]
    assert np.array_equal(plain.slots, obs.slots[:, :len(SLOT_FEATURES)])


def test_a_wide_job_is_cut_at_the_graph_size_candidate_first():
    wide = job("w", 0.0, "a", task("root", 1.0, 1),
               *[task(f"t{i}", 1.0, 1, after=["root"]) for i in range(20)])
    _, obs = first_round(workload(wide))
    nodes = graph_nodes(obs.window[0])
    assert len(nodes) == GRAPH_NODES and nodes[0].task.id == "root"


@pytest.mark.parametrize("k,b,s", [(1, 3, 2), (4, 5, 3)])
def test_numpy_policy_computes_the_torch_actors_logits_with_job_graphs(k, b, s):
    ag = graph_agents(k)
    pol = ag.policy()
    assert pol.graph
    rng = np.random.default_rng(k)
    own_cols = rng.normal(size=(b, k, len(SLOT_FEATURES)))
    x = rng.normal(size=(b, k, GRAPH_NODES, len(GRAPH_NODE_FEATURES)))
    x[..., 0] = rng.random((b, k, GRAPH_NODES)) < 0.7
    adj = (rng.random((b, k, GRAPH_NODES, GRAPH_NODES)) < 0.3).astype(float)
    slots = np.concatenate([own_cols, x.reshape(b, k, -1), adj.reshape(b, k, -1)],
                           -1).astype(np.float32)
    mask = rng.random((b, k)) < 0.6
    own = rng.normal(size=(b, len(OWN_FEATURES))).astype(np.float32)
    codes = rng.integers(-100, 100, size=(b, s, 8)).astype(np.int8)
    pm = rng.random((b, s)) < 0.5
    assert_numpy_is_torch(ag, pol, slots, mask, own, codes, pm)


def test_the_encoder_reads_what_lies_downstream_of_the_candidate():
    """The same round with only the graph columns changed -- the edges dropped, or the task
    that waits at the end 5,000 s instead of 5 s -- scores differently; the candidate's own
    columns are the same in all three."""
    ag = graph_agents()
    pol = ag.policy()
    _, obs = first_round(workload(diamond("j", 0.0)))
    n = len(SLOT_FEATURES)
    x, adj = split(obs.slots[:, n:])

    def scores(x, adj):
        slots = np.concatenate([obs.slots[:, :n], x.reshape(4, -1), adj.reshape(4, -1)], -1)
        return pol.logits(slots[None], obs.mask[None], obs.own[None],
                          np.zeros((1, 1, 8), np.int8), np.zeros((1, 1), bool))[0]

    base = scores(x, adj)
    assert np.allclose(base, scores(x.copy(), adj.copy()))
    assert not np.allclose(base, scores(x, np.zeros_like(adj)))
    longer = x.copy()
    longer[0, 3, GRAPH_NODE_FEATURES.index("log_duration")] = np.log1p(5000.0) / 10
    assert not np.allclose(base, scores(longer, adj))


def test_training_reads_back_the_graphs_it_acted_on_and_a_checkpoint_keeps_the_encoder(
        tmp_path):
    ag = graph_agents(seed=1)
    wl = generate(CL, seed=3, jobs=15, load=0.9)
    res, rec, pol = run_episode(ag, CL, wl, seed=0, rng=np.random.default_rng(0))
    ep = rec.arrays()
    assert ep["slots"].shape[-1] == len(SLOT_FEATURES) + GRAPH_DIM
    assert_reads_back(ag, flatten(ep, ag.cfg.bits))
    path = tmp_path / "g.pt"
    checkpoint.save(path, agents=ag, extra={})
    back = checkpoint.load_policy(path)
    assert back.graph
    r1 = Simulator(CL, wl, SimConfig()).run(AgentsPolicy(ag.policy()))
    r2 = Simulator(CL, wl, SimConfig()).run(AgentsPolicy(back))
    assert r1.metrics["jct_mean_s"] == r2.metrics["jct_mean_s"]


def test_an_unknown_encoder_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="encoder: found 'gnn'; expected one of mlp, graph"):
        AgentConfig(encoder="gnn")


def test_passing_messages_once_more_than_the_longest_path_is_as_passing_them_always(
        monkeypatch):
    """The encoder stops after 1 + the longest path (``path_steps``): every embedding is final
    then, so the scores equal those of the most steps any graph could need."""
    import agora.agents.step.policy as policy_mod

    pol = graph_agents(seed=3).policy()
    _, obs = first_round(workload(diamond("j", 0.0), diamond("i", 0.0, tail=50.0)))
    args = (obs.slots[None], obs.mask[None], obs.own[None], np.zeros((1, 1, 8), np.int8),
            np.zeros((1, 1), bool))
    assert policy_mod.path_steps(split(obs.slots[obs.mask][:, len(SLOT_FEATURES):])[1]) == 3
    fast = pol.logits(*args)
    monkeypatch.setattr(policy_mod, "path_steps", lambda adj: GRAPH_NODES)
    assert np.allclose(fast, pol.logits(*args), atol=1e-6)
    monkeypatch.setattr(policy_mod, "path_steps", lambda adj: 2)     # one too few
    assert not np.allclose(fast, pol.logits(*args), atol=1e-6)


@pytest.mark.timeout(60)
def test_a_cluster_site_agent_reads_job_graphs_from_the_ledger_its_watch_builds():
    """The agent's real step and runtime over the stand-ins of tests/cluster/test_late_round.py
    (the replicated schedule's own state machine, its updates applied to the agent's ledger):
    with a graph policy the agent sees each candidate's DAG -- map, then the reduce it
    unblocks -- and bids."""
    from agora.agents.cluster.runtime import AgentRuntime
    from agora.agents.step.seams import MemoryExchange
    from tests.cluster.test_late_round import SITES, Clearinghouse, Executor
    from tests.coordinator.state_helpers import Run, cluster, submit
    from tests.coordinator.state_helpers import job as dag_job

    r = Run()
    r("site:c", submit(dag_job("x", "c", n=1, cpu=12000)))
    ag = graph_agents()
    pol = ag.policy()
    c = AgentRuntime(site=SITES["c"], name="c", cluster=cluster(), policy=pol,
                     exchange=MemoryExchange(len(SITES), pol.code_dim),
                     clearinghouse=Clearinghouse(r), executor=Executor(SITES["c"]))
    assert c.agent.observer.graph
    ch = c.agent.clearinghouse
    ch.catch_up()
    (t,) = [t for t in ch.ledger.pool.scan()]
    assert [u.task.id for u in graph_nodes(t)] == ["map", "reduce"]
    c.act_if_owed()
    assert [o.job_id for o in ch.parts[0].offers] == ["x"]
