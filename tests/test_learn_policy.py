"""The learned agents' shapes and masking: the candidate window, the feature arrays, the
pointer actor over a variable number of slots, and the rule that a masked slot (a task that
does not fit the site now) never gets a bid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import agents.learn.learned_policy as lp
from agents.learn.features import (LOCAL_DIM, OWN_FEATURES, SLOT_FEATURES, FeatureBuilder,
                                   candidates)
from agents.learn.learned_policy import AgentConfig, Agents, LearnedPolicy
from agents.learn.networks import NEG, ActorCritic
from agents.learn.ranking import bids_of, sample_orders
from agents.market import price_of
from agents.sim.config import SimConfig
from agents.sim.engine import Simulator
from agents.workloads.synthetic import generate
from tests.simkit import cluster, job, node, site, task, workload

torch.set_num_threads(1)   # tests share a 2-core machine

CL = cluster(site("a", node("a", "n0", 8, 65536), node("a", "n1", 4, 65536)),
             site("b", node("b", "g", 16, 65536, gpus=1, model="T4")),
             site("c", node("c", "n", 2, 8192)))


def net(n_sites=3, state_dim=11):
    torch.manual_seed(0)
    return ActorCritic(slot_dim=len(SLOT_FEATURES), own_dim=len(OWN_FEATURES),
                       state_dim=state_dim, n_sites=n_sites, code_dim=8, hidden=32)


@pytest.mark.parametrize("k", [1, 3, 9])
def test_actor_scores_any_number_of_slots_and_masks_them(k):
    m = net()
    b = 5
    mask = torch.rand(b, k) > 0.4
    logits, value = m(torch.randn(b, k, len(SLOT_FEATURES)), mask,
                      torch.randn(b, len(OWN_FEATURES)), torch.arange(b) % 3,
                      torch.randn(b, 3, 8), torch.rand(b, 3) > 0.5, torch.randn(b, 11))
    assert logits.shape == (b, k + 1) and value.shape == (b,)
    assert torch.all(logits[:, :k][~mask] == NEG)
    assert torch.all(logits[:, :k][mask] > NEG / 2) and torch.all(logits[:, k] > NEG / 2)


def test_peer_attention_ignores_masked_peers():
    m = net()
    args = [torch.randn(2, 4, len(SLOT_FEATURES)), torch.ones(2, 4, dtype=torch.bool),
            torch.randn(2, len(OWN_FEATURES)), torch.tensor([0, 1])]
    codes = torch.randn(2, 3, 8)
    pm = torch.tensor([[False, True, False], [True, False, False]])
    st = torch.randn(2, 11)
    l1, _ = m(*args, codes, pm, st)
    codes2 = codes.clone()
    codes2[:, 2] += 5.0                              # a peer nobody has heard from changes
    l2, _ = m(*args, codes2, pm, st)
    assert torch.allclose(l1, l2)
    codes2[0, 1] += 5.0                              # a heard peer changes: receiver 0 reacts
    l3, _ = m(*args, codes2, pm, st)
    assert not torch.allclose(l1[0], l3[0]) and torch.allclose(l1[1], l3[1])


def test_masked_slots_never_get_a_bid():
    rng = np.random.default_rng(0)
    k = 6
    window = [type("T", (), {"open": 2})() for _ in range(k)]
    for _ in range(300):
        mask = rng.random((4, k)) < 0.5
        logits = np.where(mask, rng.normal(size=(4, k)) * 3, NEG)
        logits = np.concatenate([logits, rng.normal(size=(4, 1))], axis=1)
        valid = np.concatenate([mask, np.ones((4, 1), bool)], axis=1)
        order, plen = sample_orders(logits, valid, rng)
        bids = bids_of(window, order, plen, mask, k)
        for b in bids:
            assert mask[b.site, window.index(b.task)]
        # every valid slot is bid (reluctantly after "pass"): the round stays work-conserving
        assert len(bids) == mask.sum()
        for i in range(4):      # prices fall along the ranking; preferred above reluctant
            mine = [b.price for b in bids if b.site == i]
            assert mine == sorted(mine, reverse=True) and len(set(mine)) == len(mine)
            pre = [b.price for b in bids if b.site == i
                   and list(order[i]).index(window.index(b.task)) < plen[i]]
            assert all(p > price_of(k + 1) for p in pre)
        assert all(order[i, plen[i] - 1] == k for i in range(4))


def test_candidates_fit_somewhere_and_reach_past_the_fifo_head():
    big = [job(f"big{i}", 0.0, "a", task("t", 1000.0, 8)) for i in range(12)]
    small = job("short", 1.0, "a", task("t", 5.0, 1))
    sim = Simulator(CL, workload(*big, small), SimConfig())
    sim.step_events()
    sim.step_events()
    ctx = sim.begin_decision()
    c = candidates(ctx, 4)
    assert len(c) == 4 and len({t.rank for t in c}) == 4
    assert any(t.job.job.id == "short" for t in c)      # FIFO's first 4 would hide it
    assert all(ctx.fit_nodes(t) is not None for t in c)


def test_feature_shapes():
    wl = generate(CL, seed=1, jobs=20, load=0.9)
    sim = Simulator(CL, wl, SimConfig())
    sim.step_events()
    ctx = sim.begin_decision()
    fb = FeatureBuilder(CL, 5)
    rv = fb.view(sim, candidates(ctx, 5), 0.0)
    assert rv.slots.shape == (3, 5, len(SLOT_FEATURES)) and rv.slots.dtype == np.float32
    assert rv.own.shape == (3, len(OWN_FEATURES)) and rv.local.shape == (3, LOCAL_DIM)
    assert rv.state.shape == (fb.state_dim,) and rv.mask.shape == (3, 5)
    assert np.isfinite(rv.slots).all() and np.isfinite(rv.local).all()
    # the per-node histograms are distributions over a site's alive nodes
    hist = rv.own[:, 10:22].reshape(3, 3, 4)
    assert np.allclose(hist[:, :2].sum(-1), 1.0)


def test_learned_policy_only_bids_where_the_task_fits(monkeypatch):
    seen = []
    real = lp.clear_sim

    def spy(ctx, bids, pref):
        for b in bids:
            seen.append(bool(ctx.feasible_sites(b.task)[b.site]))
        return real(ctx, bids, pref)

    monkeypatch.setattr(lp, "clear_sim", spy)
    wl = generate(CL, seed=2, jobs=25, load=0.95)
    fb = FeatureBuilder(CL, 4)
    torch.manual_seed(1)
    agents = Agents(AgentConfig(k=4, hidden=32), 3, fb.state_dim)
    pol = LearnedPolicy(agents, rng=np.random.default_rng(0))
    r = Simulator(CL, wl, SimConfig(check_invariants=True)).run(pol)
    assert seen and all(seen)
    assert r.metrics["tasks_lost"] == 0
    assert r.metrics["jobs_completed"] + r.metrics["jobs_unschedulable"] == 25
