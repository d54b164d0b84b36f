"""The one agent step (agents/step): what a site observes (its own site and the open work,
nothing else), the numpy actor against its torch twin, the one-round delay of codes, the
trigger, and the bids a ranking makes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.networks import ActorCritic
from agora.agents.market import price_of
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.step.codes import CodeBook, normalised_entropy
from agora.agents.step.observe import LOCAL_DIM, OWN_FEATURES, SLOT_FEATURES, Observer
from agora.agents.step.policy import NEG, NumpyPolicy, offers_of, sample_orders
from agora.agents.step.simulation import AgentsPolicy
from agora.agents.step.step import act
from agora.agents.workloads.synthetic import generate
from tests.simkit import cluster, job, node, site, task, workload

torch.set_num_threads(1)   # tests share a 2-core machine

CL = cluster(site("a", node("a", "n0", 8, 65536), node("a", "n1", 4, 65536)),
             site("b", node("b", "g", 16, 65536, gpus=1, model="T4")),
             site("c", node("c", "n", 2, 8192)))


def agents(k: int = 4, comm: str = "trigger", seed: int = 0) -> Agents:
    torch.manual_seed(seed)
    return Agents(AgentConfig(k=k, hidden=32, comm=comm))


def midway(wl, steps: int = 6) -> Simulator:
    sim = Simulator(CL, wl, SimConfig())
    for _ in range(steps):
        if sim.has_events:
            sim.step_events()
    return sim


# ---- the numpy actor is the torch actor ---------------------------------------------------

def assert_numpy_is_torch(ag: Agents, pol: NumpyPolicy, slots, mask, own, codes, pm) -> None:
    """The numpy actor's logits equal its torch twin's on the same inputs."""
    from agora.agents.step.codes import dequantise
    got = pol.logits(slots, mask, own, codes, pm)
    want, _ = ag.model(torch.from_numpy(slots), torch.from_numpy(mask), torch.from_numpy(own),
                       torch.from_numpy(dequantise(codes)), torch.from_numpy(pm),
                       torch.zeros(len(slots), ag.state_dim))
    assert np.allclose(got, want.detach().numpy(), atol=1e-4)


@pytest.mark.parametrize("k,b,s", [(1, 3, 2), (4, 5, 3), (9, 2, 8)])
def test_numpy_policy_computes_the_torch_actors_logits_and_codes(k, b, s):
    ag = agents(k)
    pol = ag.policy()
    rng = np.random.default_rng(k)
    slots = rng.normal(size=(b, k, len(SLOT_FEATURES))).astype(np.float32)
    mask = rng.random((b, k)) < 0.6
    own = rng.normal(size=(b, len(OWN_FEATURES))).astype(np.float32)
    codes = rng.integers(-100, 100, size=(b, s, 8)).astype(np.int8)
    pm = rng.random((b, s)) < 0.5
    assert_numpy_is_torch(ag, pol, slots, mask, own, codes, pm)
    local = rng.normal(size=(b, LOCAL_DIM)).astype(np.float32)
    assert np.array_equal(pol.encode(local), ag.codec.wire(local))


def test_actor_masks_slots_and_has_no_per_site_parameters():
    m = ActorCritic(slot_dim=len(SLOT_FEATURES), own_dim=len(OWN_FEATURES), state_dim=5,
                    code_dim=8, hidden=16)
    assert not any("site" in n for n, _ in m.named_parameters())
    mask = torch.tensor([[True, False, True]])
    logits, _ = m(torch.randn(1, 3, len(SLOT_FEATURES)), mask, torch.randn(1, len(OWN_FEATURES)),
                  torch.randn(1, 6, 8), torch.ones(1, 6, dtype=torch.bool), torch.randn(1, 5))
    assert logits[0, 1] == NEG and logits[0, 0] > NEG / 2 and logits[0, 3] > NEG / 2


# ---- what a site sees --------------------------------------------------------------------------

def test_a_sites_observation_does_not_depend_on_other_sites():
    wl = generate(CL, seed=1, jobs=25, load=0.95)
    sim = midway(wl)
    obs = Observer(CL, 5)
    before = obs.observe(sim.ledger, sim.cap, [0], sim.now)[0]
    sl = sim.cap.site_slice[2]                           # fill site c's node to the brim
    sim.cap.free_cpu[sl] = 0
    sim.cap.free_mem[sl] = 0
    after = obs.observe(sim.ledger, sim.cap, [0], sim.now)[0]
    assert np.array_equal(before.slots, after.slots) and np.array_equal(before.own, after.own)
    assert np.array_equal(before.local, after.local)
    alone = obs.observe(sim.ledger, sim.cap, [1], sim.now)[0]
    together = obs.observe(sim.ledger, sim.cap, [0, 1, 2], sim.now)[1]
    assert np.array_equal(alone.slots, together.slots)  # one site alone = its row of many
    assert [t.rank for t in alone.window] == [t.rank for t in together.window]


def test_the_window_holds_only_work_that_fits_the_site_and_reaches_past_the_fifo_head():
    big = [job(f"big{i}", 0.0, "a", task("t", 1000.0, 8)) for i in range(12)]
    small = job("short", 1.0, "a", task("t", 5.0, 1))
    sim = Simulator(CL, workload(*big, small), SimConfig())
    sim.step_events()
    sim.step_events()
    obs = Observer(CL, 4).observe(sim.ledger, sim.cap, [0, 2], sim.now)
    a, c = obs
    assert any(t.job.job.id == "short" for t in a.window)   # FIFO's first 4 would hide it
    assert len({t.rank for t in a.window}) == len(a.window) == 4
    assert [t.job.job.id for t in c.window] == ["short"]    # site c's 2 cores hold only it
    assert a.slots.shape == (4, len(SLOT_FEATURES)) and a.local.shape == (LOCAL_DIM,)
    hist = a.own[OWN_FEATURES.index("nodes_free_cpu_0"):][:12].reshape(3, 4)
    assert np.allclose(hist[:2].sum(-1), 1.0)             # distributions over alive nodes



def test_a_site_that_fits_nothing_at_the_heads_sees_the_work_it_can_hold_further_back():
    """A review: past SCAN open tasks an agent looked only at the heads of its five orders;
    when none of them fitted its site it saw nothing and never decided, while the replicated
    schedule -- which looks at every open shape -- expected it: the round waited for good.
    The 2-core site c here can hold only the last task of every order."""
    from agora.agents.step.observe import SCAN
    big = [job(f"big{i:04d}", 0.0, "a", task("t", 10.0, 16), weight=2.0)
           for i in range(SCAN + 20)]                          # fit no node (16 cores)
    tail = job("tail", 0.0, "a", task("t", 1e6, 1), weight=0.5)  # last in every order
    sim = Simulator(CL, workload(*big, tail), SimConfig())
    while sim.has_events and len(sim.ledger.pool) < SCAN + 21:
        sim.step_events()
    assert len(sim.ledger.pool) == SCAN + 21
    a, c = Observer(CL, 4).observe(sim.ledger, sim.cap, [0, 2], sim.now)
    assert [t.job.job.id for t in c.window] == ["tail"] and c.mask.sum() == 1
    assert [t.job.job.id for t in a.window] == ["tail"]


# ---- bids ---------------------------------------------------------------------------------------

def test_every_valid_slot_bids_within_the_sites_free_resources_and_prices_fall():
    rng = np.random.default_rng(0)
    k = 6
    wl = workload(*[job(f"j{i}", 0.0, "a", task("t", 10.0 + i, 3, instances=3))
                    for i in range(k)])
    sim = midway(wl, 1)
    window = sim.ledger.pool.fifo()[:k]
    for _ in range(200):
        mask = rng.random(k) < 0.6
        logits = np.append(np.where(mask, rng.normal(size=k) * 3, NEG), rng.normal())
        order, plen = sample_orders(logits[None], np.append(mask, True)[None], rng)
        free = (int(rng.integers(0, 40)) * 1000, 10 ** 9, 0)
        offers = offers_of(window, order[0], plen[0], mask, k, free)
        ids = [t.job.job.id for t in window]
        assert all(mask[ids.index(o.job_id)] for o in offers)
        assert sum(o.instances * 3000 for o in offers) <= free[0]
        if free[0] >= 3000 * 3 * mask.sum():
            assert len(offers) == mask.sum()      # work-conserving when there is room
        prices = [o.price for o in offers]
        assert prices == sorted(prices, reverse=True) and len(set(prices)) == len(prices)
        pre = [o.price for o in offers if list(order[0]).index(ids.index(o.job_id)) < plen[0]]
        assert all(p > price_of(k + 1) for p in pre)


# ---- codes and the trigger ---------------------------------------------------------------------

def test_a_code_counts_from_the_round_after_it_was_sent():
    book = CodeBook(3, 2)
    book.put(1, 4, np.array([1, 1], np.int8))
    codes, has = book.codes(4)
    assert not has[1]                                   # not in the round it describes
    codes, has = book.codes(5)
    assert has[1] and codes[1].tolist() == [1, 1]
    book.put(1, 5, np.array([2, 2], np.int8))
    assert book.codes(5)[0][1].tolist() == [1, 1]       # round 5 still sees round 4's
    assert book.codes(6)[0][1].tolist() == [2, 2]
    book.put(1, 3, np.array([9, 9], np.int8))           # a stale code changes nothing
    assert book.codes(6)[0][1].tolist() == [2, 2]


def test_normalised_entropy_bounds():
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]], bool)
    logits = np.array([[0.0, 0.0, 0.0, 99.0], [50.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    h = normalised_entropy(logits, mask)
    assert h[0] == pytest.approx(1.0) and h[1] < 1e-6 and h[2] == 0.0


@pytest.mark.parametrize("mode,thr,frac", [("always", 0.5, 1.0), ("none", 0.5, 0.0),
                                           ("trigger", 0.0, 1.0), ("trigger", 1.01, 0.0)])
def test_message_fraction_by_mode(mode, thr, frac):
    wl = generate(CL, seed=3, jobs=15, load=0.9)
    pol = AgentsPolicy(agents().policy(comm=mode, threshold=thr))
    Simulator(CL, wl, SimConfig()).run(pol)
    assert sum(a.sent + a.suppressed for a in pol.agents) > 0
    assert pol.sent_frac == frac


def test_only_an_agent_with_candidates_acts_and_speaks():
    wl = workload(job("gpu", 0.0, "b", task("t", 10.0, 1, gpu=0.5)))
    sim = midway(wl, 1)
    pol = AgentsPolicy(agents().policy(comm="always"))
    pol.reset(sim)
    ds = act(pol.agents, pol.clearinghouse.round_info(), submit=False)
    assert [d.obs.active for d in ds] == [False, True, False]   # only site b has a gpu
    assert [d.code is not None for d in ds] == [False, True, False]
    assert [len(d.offers) for d in ds] == [0, 1, 0]


def test_the_agents_only_bid_where_the_task_fits_and_lose_nothing():
    wl = generate(CL, seed=2, jobs=25, load=0.95)
    pol = AgentsPolicy(agents().policy(), rng=np.random.default_rng(0))
    r = Simulator(CL, wl, SimConfig(check_invariants=True)).run(pol)
    assert pol.clearinghouse.refused == 0, "an agent asked for more than its site has"
    assert r.metrics["tasks_lost"] == 0
    assert r.metrics["jobs_completed"] + r.metrics["jobs_unschedulable"] == 25


def test_a_step_re_ranks_a_given_observation_as_it_would_a_fresh_one():
    # the cluster agent's re-decision on new peer codes alone passes the observation of its
    # last step (nothing it sees has changed): the step must use it, and decide the same
    wl = generate(CL, seed=2, jobs=25, load=0.95)
    sim = midway(wl, 8)
    pol = AgentsPolicy(agents().policy(comm="always"))
    pol.reset(sim)
    info = pol.clearinghouse.round_info()
    fresh = act(pol.agents, info, submit=False)
    assert any(d.offers for d in fresh)
    again = act(pol.agents, info, submit=False, obs=[d.obs for d in fresh])
    assert all(a.obs is f.obs for a, f in zip(again, fresh))
    assert [a.offers for a in again] == [f.offers for f in fresh]
    assert [a.order.tolist() for a in again] == [f.order.tolist() for f in fresh]
