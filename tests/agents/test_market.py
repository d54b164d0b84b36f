"""Tests of agents/market.py: the clearing rule, its validation, and its determinism (same
bids in any order give the same allocation), on a dict-backed fake book (a test fake:
capacity is a per-site count of free slots) and on the real simulator through SimBook."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.agents.ledger_book import LedgerBook
from agora.agents.market import (PRICE_MAX, PRICE_SCALE, Bid, Offer, admit_offers, clear,
                                 price_of, site_preference)
from agora.agents.sim.engine import Simulator
from tests.simkit import cluster, job, node, site, task, workload


@dataclass
class FakeBook:
    """Test fake: tasks are names with open instances, a (weight, order) priority and an
    origin; site s has ``slots[s]`` free instance slots; rank = |site - origin|, then site."""
    open: dict[str, int]
    slots: list[int]
    prio: dict[str, tuple] = field(default_factory=dict)
    origin: dict[str, int] = field(default_factory=dict)
    log: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def n_sites(self) -> int:
        return len(self.slots)

    def open_instances(self, task):
        return self.open.get(task, 0)

    def priority(self, task):
        return self.prio.get(task, (0, task))

    def rank(self, task, site):
        return abs(site - self.origin.get(task, 0))

    def place(self, task, site, n):
        got = min(n, self.slots[site])
        self.slots[site] -= got
        self.open[task] -= got
        self.log.append((task, site, got))
        return got


def test_highest_price_wins_and_losers_are_told_why():
    book = FakeBook({"a": 1}, [5, 5, 5])
    out = clear([Bid(0, "a", 1, 10), Bid(2, "a", 1, 30), Bid(1, "a", 1, 20)], book)
    assert [(a.site, a.task, a.instances) for a in out.awards] == [(2, "a", 1)]
    assert sorted((b.site, why.split(":")[0]) for b, why in out.rejected) == [
        (0, "outbid"), (1, "outbid")]


def test_ties_go_to_priority_then_origin_preference_then_site_index():
    # Equal prices: the more urgent task is served first and takes the last slot.
    book = FakeBook({"a": 1, "b": 1}, [1], prio={"a": (0, 2), "b": (-2, 5)})
    out = clear([Bid(0, "a", 1, 7), Bid(0, "b", 1, 7)], book)
    assert [a.task for a in out.awards] == ["b"]
    assert [why.split(":")[0] for _, why in out.rejected] == ["no room"]
    # Same task, same price: the site nearer the origin (2) wins, then the lower index.
    book = FakeBook({"t": 2}, [1, 1, 1, 1], origin={"t": 2})
    out = clear([Bid(0, "t", 1, 3), Bid(1, "t", 1, 3), Bid(3, "t", 1, 3), Bid(2, "t", 1, 3)],
                book)
    assert [a.site for a in out.awards] == [2, 1]


def test_instances_are_capped_by_what_is_open_and_what_fits():
    book = FakeBook({"a": 5}, [3, 10])
    out = clear([Bid(0, "a", 4, 9), Bid(1, "a", 4, 1)], book)
    assert [(a.site, a.instances) for a in out.awards] == [(0, 3), (1, 2)]
    assert book.open["a"] == 0 and book.slots == [0, 8]


@pytest.mark.parametrize("bid, field_name", [
    (Bid(7, "a", 1, 1), "site"),
    (Bid(-1, "a", 1, 1), "site"),
    (Bid(0, "a", 0, 1), "instances"),
    (Bid(0, "a", 1, -5), "price"),
    (Bid(0, "a", 1, PRICE_MAX + 1), "price"),
    (Bid(0, "nope", 1, 1), "task"),
])
def test_invalid_bids_are_rejected_naming_the_field_and_change_nothing(bid, field_name):
    book = FakeBook({"a": 1}, [1, 1])
    out = clear([bid], book)
    assert out.awards == [] and book.log == [] and book.open == {"a": 1}
    [(b, why)] = out.rejected
    assert b == bid and why.startswith(field_name + ":"), why


def test_a_second_bid_by_the_same_site_for_the_same_task_is_a_duplicate_claim():
    book = FakeBook({"a": 3}, [3])
    out = clear([Bid(0, "a", 1, 5), Bid(0, "a", 1, 9)], book)
    assert [(a.instances, a.price) for a in out.awards] == [(1, 9)]
    assert [why.split(":")[0] for _, why in out.rejected] == ["duplicate claim"]


BIDS = st.lists(st.builds(Bid, st.integers(0, 3), st.sampled_from("abcde"),
                          st.integers(1, 4), st.integers(0, 6)), max_size=25)


@settings(max_examples=200, deadline=None)
@given(BIDS, st.randoms(use_true_random=False))
def test_same_bids_in_any_order_clear_the_same(bids, rnd):
    def run(order):
        book = FakeBook({t: 1 + i for i, t in enumerate("abcd")}, [3, 2, 4, 1],
                        prio={"c": (-1, 0)}, origin={"a": 1, "b": 3})
        out = clear(order, book)
        return out.awards, out.rejected, book.log, book.slots

    shuffled = list(bids)
    rnd.shuffle(shuffled)
    first = run(bids)
    assert first == run(shuffled)
    awards, _, _, slots = first
    assert min(slots) >= 0                                # no site over-allocated
    per_task: dict[str, int] = {}
    for a in awards:
        per_task[a.task] = per_task.get(a.task, 0) + a.instances
    assert all(n <= 1 + "abcd".index(t) for t, n in per_task.items())   # never over-placed
    assert len({(a.site, a.task) for a in awards}) == len(awards)        # one award per claim


def test_price_of_quantises_and_refuses_non_finite():
    assert price_of(1.0) == PRICE_SCALE and price_of(-3.0) == 0 and price_of(1e12) == PRICE_MAX
    with pytest.raises(ValueError, match="finite"):
        price_of(float("nan"))


# -- on the simulator -----------------------------------------------------------------------
CL = cluster(site("a", node("a", "n0", 4)), site("b", node("b", "n0", 2)),
             site("c", node("c", "n0", 8, gpus=1, model="T4")))


def test_ledger_book_respects_capacity_and_gpu_models():
    wl = workload(job("j", 0.0, "b", task("cpu", 10.0, 2, instances=5),
                      task("gpu", 10.0, 1, gpu=1, models={"T4"})))
    sim = Simulator(CL, wl)
    sim.step_events()
    cpu, gpu = sorted(sim.pool.fifo(), key=lambda t: t.rank)
    book = LedgerBook(sim.ledger, sim.cap, site_preference(CL))
    out = clear([Bid(0, cpu, 5, 1), Bid(1, cpu, 5, 1), Bid(0, gpu, 1, 9), Bid(2, gpu, 1, 1)],
                book)
    got = sorted((a.site, a.task.task.id, a.instances) for a in out.awards)
    # site a (4 cpus) takes 2 instances of 2 cpus, b (2 cpus) one; the gpu task only fits c.
    assert got == [(0, "cpu", 2), (1, "cpu", 1), (2, "gpu", 1)]
    reasons = {(b.site, b.task.task.id): why.split(":")[0] for b, why in out.rejected}
    assert reasons == {(0, "gpu"): "no room"}
    sim.cap.check_invariants()
    assert [(t.task.id, i) for t, i, _ in book.placed] == [("cpu", 0), ("cpu", 1), ("cpu", 2),
                                                           ("gpu", 0)]
    assert cpu.open == 2 and cpu.running == 3 and gpu.open == 0      # the ledger holds them


def test_admitting_offers_refuses_each_bad_one_naming_its_field():
    wl = workload(job("j", 0.0, "b", task("cpu", 10.0, 2, instances=5),
                      task("gpu", 10.0, 1, gpu=1, models={"T4"})))
    sim = Simulator(CL, wl)
    sim.step_events()
    offers = [Offer("j", "cpu", 2, 5), Offer("j", "cpu", 1, 5), Offer("j", "nope", 1, 1),
              Offer("j", "gpu", 1, 1), Offer("j", "cpu", 9, 1), Offer("j", "cpu", 1, -1)]
    bids, refused = admit_offers(sim.ledger, sim.cap, 0, "a", offers)
    assert [(b.task.task.id, b.instances) for b in bids] == [("cpu", 2)]
    assert [(r.index, r.kind, r.field) for r in refused] == [
        (1, "bid.duplicate", "task_id"), (2, "bid.unknown_task", "task_id"),
        (3, "bid.never_fits", "task_id"), (4, "bid.bad_instances", "instances"),
        (5, "bid.bad_price", "price")]
    _, over = admit_offers(sim.ledger, sim.cap, 1, "b", [Offer("j", "cpu", 2, 5)])
    assert [r.kind for r in over] == ["bid.over_allocation"]    # site b has 2 cores


def test_site_preference_puts_the_origin_first():
    pref = site_preference(CL)
    assert [int(pref[o, o]) for o in range(3)] == [0, 0, 0]
    assert sorted(pref[1].tolist()) == [0, 1, 2]
