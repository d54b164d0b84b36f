"""The clearing's placement is computed once per node used (``LedgerBook.place``), on the
book's list view of a site's free resources, reusing the last best fit of a site while
nothing else changed there. Differential test: on random clusters (cpu, memory, whole and
shared gpus, gpu models, dead nodes, sites larger than ``SMALL_SITE``) and random rounds of
bids -- with nodes going down and up and instances ending between rounds -- it gives exactly the placements -- the same
(task, instance, node) in the same order, the same awards and rejections, the same free
capacity and gpu slots -- as the implementation before it, kept here verbatim as the
reference (one best-fit search per instance)."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import Cluster, Demand, Job, Node, Site, Task
from agora.agents.ledger import Ledger
from agora.agents.ledger_book import LedgerBook
from agora.agents.market import Bid, clear, site_preference
from agora.agents.sim.capacity import Capacity


def reference_best_fit(cap: Capacity, d: Demand, site: int) -> int | None:
    """Capacity.best_fit as it was (np.where over the fit mask)."""
    sl = cap.site_slice[site]
    fit = cap.fit_mask(d, sl)
    if not fit.any():
        return None
    score = (cap.free_cpu[sl] - d.cpu) * cap._inv_cpu[sl] \
        + (cap.free_mem[sl] - d.mem) * cap._inv_mem[sl]
    if d.gpu:
        score = score + (cap.free_gpu[sl] - d.gpu) * cap._inv_gpu[sl]
    else:
        score = score + cap.has_gpu[sl]
    score = np.where(fit, score, np.inf)
    return sl.start + int(np.argmin(score))


class ReferenceBook(LedgerBook):
    """LedgerBook.place as it was: a best-fit search for every instance."""

    def place(self, task, site, n):
        cap, demand = self.capacity, task.demand
        got = 0
        for inst in task.open_indices(n):
            node = reference_best_fit(cap, demand, site)
            if node is None:
                break
            slots = cap.place(node, demand)
            self.ledger.start(task, inst, node, slots)
            self.placed.append((task, inst, node))
            got += 1
        return got


def world(seed: int):
    rng = random.Random(seed)
    sites = []
    for s in range(rng.randint(1, 4)):
        nodes = []
        for k in range(rng.choice([1, 2, 3, 4, 5, 6, 20])):
            gpus = rng.choice([0, 0, 1, 2, 4])
            nodes.append(Node(f"s{s}/n{k}", f"s{s}", cpu=rng.choice([2000, 4000, 16000]),
                              mem=rng.choice([2048, 8192, 65536]), gpus=gpus,
                              gpu_model=rng.choice(["T4", "A100"]) if gpus else None))
        sites.append(Site(name=f"s{s}", nodes=tuple(nodes)))
    cluster = Cluster(sites=tuple(sites))
    ledger = Ledger()
    for j in range(rng.randint(1, 12)):
        tasks = []
        for t in range(rng.randint(1, 4)):
            gpu = rng.choice([0, 0, 0, 250, 500, 1000, 2000])
            models = frozenset({rng.choice(["T4", "A100"])}) if gpu and rng.random() < .3 \
                else None
            tasks.append(Task(f"t{t}", 1.0, Demand(rng.choice([0, 250, 500, 1000, 2000]),
                                                   rng.choice([0, 256, 1024, 4096]), gpu,
                                                   gpu_models=models),
                              instances=rng.randint(1, 12)))
        ledger.admit(Job(f"j{j}", 0.0, f"s{j % len(sites)}", tuple(tasks)),
                     j % len(sites), 0.0)
    return cluster, ledger


def churn(cap: Capacity, ledger: Ledger, r: random.Random, p: float) -> None:
    """Between rounds: with probability ``p`` each running instance ends (its resources
    released) and each node goes down or up."""
    for ts in sorted(ledger.tasks.values(), key=lambda t: t.rank):
        for inst in sorted(ts.placements):
            if r.random() < p:
                node, slots = ledger.complete(ts, inst, 0.0)
                cap.release(node, ts.demand, slots)
    for node in range(cap.n_nodes):
        if r.random() < p / 2:
            cap.set_alive(node, not cap.alive[node])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**9), dead=st.floats(0, 0.3), rounds=st.integers(1, 3),
       between=st.sampled_from([0.0, 0.3]))
def test_placement_equals_the_per_instance_reference_on_random_rounds(seed, dead, rounds,
                                                                      between):
    out = []
    for book_cls in (LedgerBook, ReferenceBook):
        cluster, ledger = world(seed)
        cap = Capacity(cluster)
        kill = random.Random(seed + 2)
        for i in range(cap.n_nodes):
            if kill.random() < dead:
                cap.alive[i] = False
        book = book_cls(ledger, cap, site_preference(cluster))
        r = random.Random(seed + 3)
        for k in range(rounds):               # one book, as the reference kept it
            if k and between:
                churn(cap, ledger, r, between)
            tasks = sorted(ledger.pool.tasks(), key=lambda t: t.rank)
            bids = [Bid(r.randrange(cap.n_sites), t, r.randint(1, 12), r.randint(0, 3))
                    for t in tasks for _ in range(r.randint(0, 2))]
            c = clear(bids, book)
            out.append(([(a.site, a.task.key, a.instances) for a in c.awards],
                        [(b.site, b.task.key, why) for b, why in c.rejected]))
        out.append([(t.key, i, n) for t, i, n in book.placed])
        out.append((cap.free_cpu.tolist(), cap.free_mem.tolist(), cap.free_gpu.tolist(),
                    [list(g) for g in cap.gpu_free], cap.alive.tolist()))
        cap.check_invariants()
    half = len(out) // 2
    assert out[:half] == out[half:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**9), fill=st.floats(0, 1), use_allowed=st.booleans())
def test_best_fit_in_plain_python_equals_numpys_on_small_sites(seed, fill, use_allowed):
    """``Capacity.best_fit`` runs in plain Python on sites of at most ``SMALL_SITE`` nodes:
    the same node as the numpy path (and the reference) for every demand, partly used and
    dead nodes, whole and shared gpus, gpu models, and an ``allowed`` mask."""
    import agora.agents.sim.capacity as capacity_mod

    cluster, ledger = world(seed)
    cap = Capacity(cluster)
    r = random.Random(seed + 5)
    for i in range(cap.n_nodes):              # used capacity, and some nodes down
        for free in (cap.free_cpu, cap.free_mem):
            free[i] = int(free[i] * (1 - fill * r.random()))
        cap.alive[i] = r.random() > 0.15
    demands = [ts.demand for ts in ledger.tasks.values()]
    for d in [d for d in demands if d.gpu] * 2:  # gpus partly taken: whole ones and shares
        fits = np.flatnonzero(cap.fit_mask(d))
        if len(fits) and r.random() < fill:
            cap.place(int(r.choice(fits)), d)
    allowed = np.array([r.random() < 0.7 for _ in range(cap.n_nodes)]) if use_allowed else None
    small = capacity_mod.SMALL_SITE
    try:
        for d in demands:
            for site in range(cap.n_sites):
                capacity_mod.SMALL_SITE = 10**6
                python = cap.best_fit(d, site, allowed)
                capacity_mod.SMALL_SITE = -1
                numpy_ = cap.best_fit(d, site, allowed)
                assert python == numpy_, (d, site)
                if allowed is None:
                    assert python == reference_best_fit(cap, d, site)
    finally:
        capacity_mod.SMALL_SITE = small
