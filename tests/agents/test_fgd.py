"""FGD (Weng et al., ATC 2023): the fragmentation measure by hand, and the placement it
makes where best-fit strands gpu shares."""

from __future__ import annotations

import numpy as np
import pytest

from agora.agents.baselines.fgd import FragModel, Shape, fgd_choice, fgd_score, typical_shapes
from agora.agents.domain import Demand
from agora.agents.sim.capacity import Capacity
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.sim.verify import verify
from agora.agents.baselines import make_policy
from tests.simkit import cluster, job, node, site, task, workload


def test_typical_shapes_cover_the_threshold_most_frequent_first():
    d = [Demand(1000, 0, 500)] * 6 + [Demand(2000, 0, 1000)] * 3 + [Demand(1000, 0)]
    assert typical_shapes(d, 0.5) == [(Shape(1000, 500, 1, None), 1.0)]
    shapes = typical_shapes(d, 0.9)          # 6 + 3 of 10 tasks: the cpu task is left out
    assert [s for s, _ in shapes] == [Shape(1000, 500, 1, None), Shape(2000, 1000, 1, None)]
    assert [p for _, p in shapes] == pytest.approx([6 / 9, 3 / 9])
    with pytest.raises(ValueError, match="threshold"):
        typical_shapes(d, 0)


def test_node_fragmentation_by_hand():
    # Shapes: half 0.6-gpu shares, half 2 whole gpus (any model); a node of 4 gpus, 8 cores.
    m = FragModel([(Shape(1000, 600, 1, None), 0.5), (Shape(1000, 1000, 2, None), 0.5)],
                  models=["A100"])
    # gpus free 1000, 1000, 400, 0: the 0.6 share fits (fragment: the 400 it cannot use);
    # two whole gpus fit (fragment: the 400 of the partly used gpu).
    assert m.frag_of([(8000, (1000, 1000, 400, 0), 0)])[0] == pytest.approx(400)
    # one whole gpu left: 2-gpu tasks cannot run, so all 1,400 free milli-gpus are fragment
    assert m.frag_of([(8000, (1000, 0, 400, 0), 0)])[0] == pytest.approx(0.5 * 400 + 0.5 * 1400)
    # cpu short: every task is blocked, every free milli-gpu is fragment
    assert m.frag_of([(500, (1000, 1000, 400, 0), 0)])[0] == pytest.approx(2400)
    # a model the shapes do not allow: no access, all fragment
    pinned = FragModel([(Shape(1000, 600, 1, frozenset({"V100"})), 1.0)], models=["A100"])
    assert pinned.frag_of([(8000, (1000,), 0)])[0] == pytest.approx(1000)


def test_fgd_keeps_shares_usable_where_best_fit_strands_them():
    # Two 1-gpu nodes; the workload is half 0.3 and half 0.6 shares. Node 0's gpu has 0.7
    # left. A 0.3 share: best-fit takes node 0 (tightest; 0.4 left, useless to a 0.6 task);
    # FGD takes node 1 (both keep >= 0.6).
    cl = cluster(site("s", node("s", "a", 8, gpus=1, model="T4"),
                     node("s", "b", 8, gpus=1, model="T4")))
    cap = Capacity(cl)
    cap.place(0, Demand(1000, 0, 300))
    m = FragModel([(Shape(1000, 300, 1, None), 0.5), (Shape(1000, 600, 1, None), 0.5)],
                  cap.models)
    d = Demand(1000, 0, 300)
    fit = cap.fit_mask(d)
    assert cap.best_fit(d, 0) == 0
    assert fgd_choice(m, cap, d, fit) == (1, 0)
    assert fgd_choice(m, cap, d, np.zeros_like(fit)) is None


def test_fgd_scores_as_the_authors_plugin_and_ties_go_to_the_lowest_node():
    from agora.agents.baselines.fgd import candidates
    # int64(sigmoid((before - after) / 1000) * 100): growth 0 scores 50, any growth up to
    # ~40 milli-gpus 49, a shrink of up to ~40 milli-gpus still 50.
    assert list(fgd_score(np.array([0.0, 1.0, 40.0, 41.0, -1.0, -41.0, 1000.0]))) == \
        [50, 49, 49, 48, 50, 51, 26]
    # A 0.5 share on node a (3 cores) leaves 2 cores: the 2.5-core shape (5%) is blocked and
    # the 0.6 shape (2%) too, growth 25 + 10 milli-gpus; on node b (8 cores) only the 0.6
    # shape, growth 10. The exact growth prefers b; both score 49, so FGD takes a, the lower.
    cl = cluster(site("s", node("s", "a", 3, gpus=1, model="T4"),
                     node("s", "b", 8, gpus=1, model="T4")))
    cap = Capacity(cl)
    m = FragModel([(Shape(1000, 500, 1, None), 0.93), (Shape(2500, 500, 1, None), 0.05),
                   (Shape(1000, 600, 1, None), 0.02)], cap.models)
    d = Demand(1000, 0, 500)
    fit = cap.fit_mask(d)
    c = candidates(m, cap, d, fit)
    assert c.places == [(0, 0), (1, 0)] and list(c.growth) == pytest.approx([35.0, 10.0])
    assert list(fgd_score(c.growth)) == [49, 49]
    assert fgd_choice(m, cap, d, fit) == (0, 0)
    # one point apart, the higher score wins whatever the order
    m2 = FragModel([(Shape(1000, 500, 1, None), 0.85), (Shape(2500, 500, 1, None), 0.13),
                    (Shape(1000, 600, 1, None), 0.02)], cap.models)
    assert list(fgd_score(candidates(m2, cap, d, fit).growth)) == [48, 49]
    assert fgd_choice(m2, cap, d, fit) == (1, 0)


def _share_workload():
    # 0.3 at t=0 and t=1 (long), then two 0.6 at t=2. Best-fit stacks both 0.3 on node a
    # (0.4 left), so one 0.6 waits for the other (t=12); FGD spreads them and both start.
    return workload(job("a", 0, "s", task("t", 100, 1, gpu=0.3)),
                    job("b", 1, "s", task("t", 100, 1, gpu=0.3)),
                    job("c", 2, "s", task("t", 10, 1, gpu=0.6)),
                    job("d", 2, "s", task("t", 10, 1, gpu=0.6)))


@pytest.mark.parametrize("policy, d_start", [("fgd", 2.0), ("fifo", 12.0)])
def test_in_the_simulator_fgd_runs_both_large_shares_at_once(policy, d_start):
    cl = cluster(site("s", node("s", "a", 8, gpus=1, model="T4"),
                     node("s", "b", 8, gpus=1, model="T4")))
    r = Simulator(cl, _share_workload(), SimConfig(seed=0, check_invariants=True)).run(
        make_policy(policy))
    assert verify(r) == [] and r.metrics["tasks_lost"] == 0
    starts = {a.task.job.job.id: a.start for a in r.attempts}
    assert starts["c"] == 2.0 and starts["d"] == d_start


def test_the_learned_placer_starts_as_fgd_and_cem_never_returns_worse():
    from agora.agents.learn.placement import LinearPlacer, cem, fgd_weights, replay, cost
    cl = cluster(site("s", *[node("s", f"n{i}", 16, gpus=2, model="T4") for i in range(4)]))
    shares = [Demand(1000, 0, g) for g in (300, 600, 250, 1000, 500, 700, 2000, 400)] * 3
    m = FragModel(typical_shapes(shares), Capacity(cl).models)

    def run_with(choose):
        return replay(Capacity(cl), shares, choose)

    fgd = run_with(lambda cap, d, fit: fgd_choice(m, cap, d, fit))
    as_fgd = LinearPlacer(fgd_weights())
    assert run_with(lambda cap, d, fit: as_fgd.choose(m, cap, d, fit)) == fgd
    seen = []

    def objective(w):
        p = LinearPlacer(w)
        c = cost(run_with(lambda cap, d, fit: p.choose(m, cap, d, fit)))
        seen.append(c)
        return c

    found = cem(objective, fgd_weights(), iters=2, population=4, seed=3)
    assert found.history[0] == pytest.approx(cost(fgd)) and len(seen) == 1 + 2 * 4 - 1
    assert found.history == sorted(found.history, reverse=True)
    assert objective(found.weights) == min(seen[:-1])


def test_learned_weights_are_adopted_only_where_they_beat_fgd_on_every_order():
    from agora.agents.learn.placement import adopt, fgd_weights
    better = np.arange(7, dtype=float)
    costs = {0: (1.0, 0.8), 1: (1.0, 0.9), 2: (1.0, 1.1)}      # order: (fgd, candidate)

    def evaluate(w, order):
        return costs[order][0 if np.array_equal(w, fgd_weights()) else 1]

    kept, check = adopt(better, evaluate, [0, 1])
    assert check["adopted"] and np.array_equal(kept, better)
    kept, check = adopt(better, evaluate, [0, 1, 2])          # cheaper on average, dearer once
    assert not check["adopted"] and np.array_equal(kept, fgd_weights())
    kept, check = adopt(better, evaluate, [])
    assert not check["adopted"]
