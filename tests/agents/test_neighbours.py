"""Bounded peer neighbourhoods (agents/step/neighbours.py): each site listens to its nearest
``peers`` sites, the step attends only over their codes, training masks as acting did, and a
cluster agent streams its code only to the sites that listen to it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from agora.agents.domain import Link
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.ppo import _forward, flatten
from agora.agents.learn.ranking import log_prob
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.step.neighbours import link_matrices, listeners_of, listening
from agora.agents.step.simulation import AgentsPolicy, Recorder
from agora.agents.step.step import act
from agora.agents.workloads.synthetic import generate
from tests.simkit import cluster, node, site

torch.set_num_threads(1)


@given(st.integers(1, 12), st.integers(1, 14), st.data())
def test_each_site_listens_to_its_nearest_peers_and_never_to_itself(s, peers, data):
    lat = np.array(data.draw(st.lists(st.lists(st.sampled_from([0.001, 0.01, 0.02, 0.1]),
                                               min_size=s, max_size=s), min_size=s, max_size=s)))
    lat = np.minimum(lat, lat.T)
    listen = listening(lat, np.zeros((s, s)), peers)
    assert not listen.diagonal().any()
    assert (listen.sum(axis=1) == min(peers, s - 1)).all()
    for r in range(s):
        heard = [x for x in range(s) if listen[r, x]]
        unheard = [x for x in range(s) if x != r and not listen[r, x]]
        if heard and unheard:
            assert max(lat[r, heard]) <= min(lat[r, unheard])
        assert set(listeners_of(listen, r)) == {x for x in range(s) if listen[x, r]}


def test_peers_below_one_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="peers"):
        listening(np.zeros((2, 2)), np.zeros((2, 2)), 0)


FAR = Link(latency_ms=80.0)
CL = cluster(site("a", node("a", "n", 8, 65536)), site("b", node("b", "n", 8, 65536)),
             site("c", node("c", "n", 8, 65536)), site("d", node("d", "n", 4, 8192)),
             links={frozenset(("a", "c")): FAR, frozenset(("b", "c")): FAR,
                    frozenset(("c", "d")): FAR})


def test_the_nearest_sites_by_link_are_heard():
    listen = listening(*link_matrices(CL), 1)
    # a, b, d are 20 ms apart, c 80 ms from all: among equals each hears the next one round
    # the ring (a: b; b: d; c: d; d: a), and no one hears c
    assert [np.flatnonzero(row).tolist() for row in listen] == [[1], [3], [3], [0]]
    assert listeners_of(listen, 2) == []


@given(st.integers(2, 80), st.integers(1, 20))
def test_with_equal_links_every_site_is_heard_by_as_many_as_it_hears(s, peers):
    """One ``default`` link for every pair (the common cluster file): ties broken by site order
    made sites 0..peers the only ones heard (at 64 sites, 17 agents each streamed to 63
    listeners and 47 sites' codes reached no one)."""
    listen = listening(np.full((s, s), 0.02), np.zeros((s, s)), peers)
    k = min(peers, s - 1)
    assert (listen.sum(axis=1) == k).all() and (listen.sum(axis=0) == k).all()


def _pol(peers: int) -> AgentsPolicy:
    torch.manual_seed(0)
    ag = Agents(AgentConfig(k=4, hidden=32, comm="always", peers=peers))
    return AgentsPolicy(ag.policy(), rng=np.random.default_rng(0))


def _decide(peers: int, code_of: dict[int, int]) -> list[float]:
    """The log-probabilities of every site's ranking in one round, with ``code_of`` (site ->
    value) in the mailbox."""
    wl = generate(CL, seed=2, jobs=30, load=0.95)
    sim = Simulator(CL, wl, SimConfig())
    for _ in range(8):
        sim.step_events()
    pol = _pol(peers)
    pol.reset(sim)
    info = pol.clearinghouse.round_info()
    for s, v in code_of.items():        # sent in this round: they count from the next one
        pol.exchange.book.put(s, info.round, np.full(8, v, np.int8))
    info = dataclasses.replace(info, round=info.round + 1)
    assert pol.exchange.codes(info.round)[1][list(code_of)].all()
    return [d.logp for d in act(pol.agents, info, submit=False)]


def test_a_code_no_site_listens_to_changes_no_decision():
    base = _decide(1, {0: 5, 1: -7, 2: 3})
    assert _decide(1, {0: 5, 1: -7, 2: 90}) == base         # nobody listens to c
    moved = _decide(1, {0: 90, 1: -7, 2: 3})                 # b, c and d listen to a
    assert moved[0] == base[0] and moved[1:] != base[1:]
    # with every site heard, c's code reaches the others' decisions
    assert _decide(3, {0: 5, 1: -7, 2: 90}) != _decide(3, {0: 5, 1: -7, 2: 3})


def test_training_masks_the_peers_as_acting_did():
    wl = generate(CL, seed=2, jobs=12, load=0.95)
    rec = Recorder()
    torch.manual_seed(0)
    ag = Agents(AgentConfig(k=4, hidden=32, comm="always", peers=1))
    pol = AgentsPolicy(ag.policy(), rng=np.random.default_rng(0), recorder=rec)
    Simulator(CL, wl, SimConfig()).run(pol)
    ep = rec.arrays()
    b = flatten(ep, 8)
    listen = listening(*link_matrices(CL), 1)
    pm = np.asarray(b["peer_mask"]).reshape(len(ep["now"]), 4, 4)
    assert not (pm & ~listen[None]).any() and pm.any()
    # the torch actor on the recorded inputs gives the log-probabilities the numpy one acted
    # with: the peer inputs are those it saw (an all-to-all mask would change them)
    idx = torch.flatten(torch.nonzero(b["active"]))
    with torch.no_grad():
        logits, _ = _forward(ag, b, idx)
        lp = log_prob(logits, b["order"][idx], b["plen"][idx])
    assert np.allclose(lp.numpy(), b["logp"][idx].numpy(), atol=1e-4)
