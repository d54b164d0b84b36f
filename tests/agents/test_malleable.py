"""The malleable-stage model (``SimConfig.malleable``) and its baselines (``srpt-cap``,
``weighted-fair``): hand-made clusters where the effect of a job's width is computed by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.agents.baselines import is_baseline, make_policy
from agora.agents.sim.config import Malleability, SimConfig, load_sim_config
from agora.agents.sim.runner import run_one
from tests.simkit import cluster, job, node, site, task, workload


def one_node(cores: int = 8):
    return cluster(site("a", node("a", "n0", cores)))


def starts_and_ends(r, job_id: str):
    """(start, end) of every run of the job's instances, rounded to the microsecond."""
    return sorted((round(a.start, 6), round(a.end, 6)) for a in r.attempts
                  if a.task.job.job.id == job_id)


def test_contention_lengthens_each_instance_by_how_wide_its_job_already_is():
    wl = workload(job("j", 0.0, "a", task("t", 10.0, 1, instances=4)))
    cfg = SimConfig(malleable=Malleability(contention=0.1))
    r = run_one(one_node(), wl, "srpt", config=cfg)
    # the k-th of 4 instances started together runs 10 * (1 + 0.1 * (k - 1))
    assert [e for _, e in starts_and_ends(r, "j")] == pytest.approx([10.0, 11.0, 12.0, 13.0])
    off = run_one(one_node(), wl, "srpt", config=SimConfig())
    assert [e for _, e in starts_and_ends(off, "j")] == pytest.approx([10.0] * 4)


def test_an_ended_instance_no_longer_counts_towards_its_jobs_width():
    # one core: the instances run one after another, each alone, so none is slowed
    wl = workload(job("j", 0.0, "a", task("t", 10.0, 1, instances=3)))
    r = run_one(one_node(1), wl, "srpt",
                config=SimConfig(malleable=Malleability(contention=0.5)))
    assert starts_and_ends(r, "j") == [(0, 10), (10, 20), (20, 30)]


def test_warmup_is_paid_once_per_node_and_job():
    c = cluster(site("a", node("a", "n0", 1), node("a", "n1", 1)))
    wl = workload(job("j", 0.0, "a", task("t", 10.0, 1, instances=4)),
                  job("k", 100.0, "a", task("u", 10.0, 1)))
    r = run_one(c, wl, "srpt", config=SimConfig(malleable=Malleability(warmup_s=5.0)))
    # two nodes: the first instance on each pays 5 s, the second starts warm
    assert starts_and_ends(r, "j") == [(0, 15), (0, 15), (15, 25), (15, 25)]
    # another job on a node that ran j pays its own warm-up
    assert starts_and_ends(r, "k") == [(100, 115)]
    assert r.metrics["remote_runs"] == 0      # a warm-up is not a transfer


def test_the_model_is_off_by_default_and_the_default_schedule_is_unchanged():
    wl = workload(job("j", 0.0, "a", task("t", 10.0, 1, instances=5)),
                  job("k", 1.0, "a", task("u", 3.0, 2, instances=2)))
    a = run_one(one_node(4), wl, "srpt")
    b = run_one(one_node(4), wl, "srpt",
                config=SimConfig(malleable=Malleability(contention=0.0, warmup_s=0.0)))
    assert [(x.start, x.end, x.node) for x in a.attempts] == \
        [(x.start, x.end, x.node) for x in b.attempts]


def test_capping_a_jobs_width_wins_when_contention_is_high():
    # 4 cores; a 4-instance job at 0 and a 1-instance job at 0.5; contention 1: the k-th
    # instance a job runs at once takes k times as long
    wl = workload(job("wide", 0.0, "a", task("t", 10.0, 1, instances=4)),
                  job("small", 0.5, "a", task("u", 10.0, 1)))
    cfg = SimConfig(malleable=Malleability(contention=1.0))
    full = run_one(one_node(4), wl, "srpt", config=cfg)
    # all four at once end at 10, 20, 30, 40; the small job waits for the first core: 10..20
    assert starts_and_ends(full, "wide") == [(0, 10), (0, 20), (0, 30), (0, 40)]
    assert starts_and_ends(full, "small") == [(10, 20)]
    capped = run_one(one_node(4), wl, "srpt-cap:1", config=cfg)
    # one at a time ends at 40 as well, and the small job starts on arrival
    assert starts_and_ends(capped, "wide") == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert starts_and_ends(capped, "small") == [(0.5, 10.5)]
    assert capped.metrics["jct_mean_s"] == pytest.approx((40 + 10) / 2)
    assert full.metrics["jct_mean_s"] == pytest.approx((40 + 19.5) / 2)


def test_srpt_cap_never_runs_a_job_wider_than_its_cap():
    wl = workload(job("j", 0.0, "a", task("t", 10.0, 1, instances=9), task("v", 5.0, 1,
                                                                         instances=9)))
    r = run_one(one_node(16), wl, "srpt-cap:3")
    runs = starts_and_ends(r, "j")
    for s, _ in runs:
        assert sum(1 for s2, e2 in runs if s2 <= s < e2) <= 3
    assert len(runs) == 18
    # inf is plain SRPT
    inf = run_one(one_node(16), wl, "srpt-cap:inf")
    srpt = run_one(one_node(16), wl, "srpt")
    assert starts_and_ends(inf, "j") == starts_and_ends(srpt, "j")


def test_weighted_fair_shares_follow_the_work_left():
    # 8 cores, two jobs present together: 1 instance of 100 s vs 8 instances of 10 s
    wl = workload(job("big", 0.0, "a", task("t", 100.0, 1, instances=8)),
                  job("small", 0.0, "a", task("u", 10.0, 1, instances=8)))

    def width_at_0(alpha):
        r = run_one(one_node(8), wl, f"weighted-fair:{alpha}")
        return {j: sum(1 for s, _ in starts_and_ends(r, j) if s == 0) for j in ("big", "small")}

    fair = width_at_0(0)
    assert fair == {"big": 4, "small": 4}
    favour_big = width_at_0(1)             # work 800 vs 80: shares 7.3 and 0.7 -> 7 and 1
    assert favour_big == {"big": 7, "small": 1}
    favour_small = width_at_0(-1)
    assert favour_small == {"big": 1, "small": 7}


def test_parameterised_names_are_checked():
    assert is_baseline("srpt-cap:4") and is_baseline("weighted-fair:-0.5")
    assert not is_baseline("srpt-cap:0") and not is_baseline("srpt-cap:x")
    assert not is_baseline("weighted-fair:5") and not is_baseline("nope:1")
    with pytest.raises(ValueError, match="'x' is not a number"):
        make_policy("srpt-cap:x")
    with pytest.raises(ValueError, match="srpt-cap:<number>"):
        make_policy("srpt-cp:4")


def test_the_model_is_read_from_the_simulation_yaml(tmp_path):
    p = tmp_path / "sim.yaml"
    p.write_text("malleable: {contention: 0.1, warmup_s: 4}\n")
    assert load_sim_config(p).malleable == Malleability(contention=0.1, warmup_s=4.0)
    p.write_text("malleable: {contention: -1}\n")
    with pytest.raises(ValueError, match=r"sim.yaml:1: field 'malleable.contention': found -1 "
                                         r"\(negative\); expected a finite number >= 0"):
        load_sim_config(p)
    p.write_text("malleable: {speedup: 2}\n")
    with pytest.raises(ValueError, match=r"sim.yaml:1: field 'malleable.speedup': unknown key "
                                         r"'speedup'; expected only contention, warmup_s"):
        load_sim_config(p)


@settings(max_examples=25, deadline=None)
@given(c=st.floats(0, 1), w=st.floats(0, 30), cap=st.sampled_from(["1", "2", "5", "inf"]),
       widths=st.lists(st.integers(1, 12), min_size=1, max_size=5))
def test_runs_never_get_shorter_and_every_instance_completes(c, w, cap, widths):
    jobs = [job(f"j{i}", float(i), "a", task("t", 7.0, 1, instances=k))
            for i, k in enumerate(widths)]
    wl = workload(*jobs)
    r = run_one(one_node(4), wl, f"srpt-cap:{cap}",
                config=SimConfig(malleable=Malleability(contention=c, warmup_s=w)))
    assert r.metrics["jobs_completed"] == len(widths)
    assert all(a.end - a.start >= 7.0 - 1e-9 for a in r.attempts)


def test_the_learned_width_starts_as_a_tuned_heuristic_and_its_features_move_it():
    from agora.agents.learn.width import FEATURES, LearnedWidth, start_weights
    from agora.agents.sim.engine import Simulator

    wl = workload(*[job(f"j{i}", 3.0 * i, "a", task("t", 10.0, 1, instances=6),
                        task("u", 4.0, 1, instances=5, after=["t"])) for i in range(6)])
    cfg = SimConfig(malleable=Malleability(contention=0.2, warmup_s=1.0))

    def runs(policy):
        r = Simulator(one_node(8), wl, cfg).run(policy)
        return [(x.task.job.job.id, x.instance, x.start, x.end, x.node) for x in r.attempts]

    for cap in (1, 3, 4):
        assert runs(LearnedWidth(start_weights(cap))) == runs(make_policy(f"srpt-cap:{cap}"))
    for alpha in (-1.0, 0.0, 1.0):
        assert runs(LearnedWidth(start_weights(), alpha)) == \
            runs(make_policy(f"weighted-fair:{alpha:g}"))
    # a weight on the job's rank in the SRPT order narrows the later jobs: not srpt-cap
    w = start_weights(4)
    w[FEATURES.index("rank")] = -3.0
    assert runs(LearnedWidth(w)) != runs(make_policy("srpt-cap:4"))
    with pytest.raises(ValueError, match="expected 7 finite weights"):
        LearnedWidth([1.0, float("nan"), 0, 0, 0, 0, 0])
