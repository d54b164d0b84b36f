"""Tests of agents/env.py: the PettingZoo API and seeding, action masks, deterministic
clearing, episodes that end (terminated or truncated), the reward integral, and the
observation layout."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test, seed_test
from pettingzoo.utils.conversions import parallel_to_aec

from agents.domain import Faults, Link, NodeOutage, Workload
from agents.env import SchedulingEnv, split_obs
from agents.env_obs import OWN_FEATURES, SLOT_FEATURES, STATE_GLOBAL, STATE_SITE, STATE_SLOT
from agents.sim.config import SimConfig
from agents.sim.verify import verify
from agents.workloads.loader import load_cluster
from agents.workloads.synthetic import generate
from tests.simkit import cluster, job, node, site, task, workload

CHECKED = SimConfig(check_invariants=True)
K = 8

CL = cluster(
    site("east", node("east", "n0", 16, 65536), node("east", "n1", 16, 65536)),
    site("west", node("west", "big", 32, 131072),
         node("west", "gpu", 16, 65536, gpus=2, model="A100")),
    site("edge", node("edge", "box", 8, 32768)),
    links={frozenset(("east", "west")): Link(latency_ms=10.0, bandwidth_mbps=10_000.0)},
    link=Link(latency_ms=40.0, bandwidth_mbps=1_000.0),
)


def weighted(wl: Workload) -> Workload:
    """Jobs weighted 1, 2, 3, 1, ... so that the reward's weights matter."""
    return replace(wl, jobs=tuple(replace(j, weight=float(1 + i % 3))
                                  for i, j in enumerate(wl.jobs)))


def make_env(cl=CL, max_steps: int = 3000, **kw) -> SchedulingEnv:
    return SchedulingEnv(cluster=cl, k_tasks=K, max_steps=max_steps, config=CHECKED,
                         workload_fn=lambda s: weighted(generate(cl, seed=s, jobs=20, load=0.9)),
                         **kw)


def greedy(env: SchedulingEnv, infos: dict) -> dict:
    """Every agent bids for the first slot it may bid for, else passes."""
    acts = {}
    for a in env.agents:
        ok = np.flatnonzero(infos[a]["action_mask"][:-1])
        acts[a] = int(ok[0]) if len(ok) else env.k
    return acts


def play(env: SchedulingEnv, policy, seed: int = 0):
    """Run one episode; returns (rewards of agent 0 per step, last step's outputs)."""
    obs, infos = env.reset(seed=seed)
    a0 = env.possible_agents[0]
    rewards, out = [], None
    while env.agents:
        out = env.step(policy(env, infos))
        obs, rew, term, trunc, infos = out
        assert len(set(rew.values())) == 1, "the reward is shared"
        rewards.append(rew[a0])
    return rewards, out


# -- PettingZoo's own checks -----------------------------------------------------------------
def test_parallel_api():
    parallel_api_test(make_env(), num_cycles=400)


def test_seed_aec_and_parallel():
    seed_test(lambda: parallel_to_aec(make_env()), num_cycles=300)
    parallel_seed_test(lambda: make_env(), num_cycles=300)


def test_spaces_cached_and_observations_inside():
    env = make_env()
    obs, infos = env.reset(seed=1)
    for a in env.possible_agents:
        assert env.observation_space(a) is env.observation_space(a)
        assert env.action_space(a) is env.action_space(a)
        assert env.action_space(a).n == K + 1
    assert env.observation_space(env.possible_agents[0]).shape == \
        (len(OWN_FEATURES) + K * len(SLOT_FEATURES),)
    assert env.state_space.shape == \
        (len(STATE_GLOBAL) + 3 * len(STATE_SITE) + K * len(STATE_SLOT),)
    rng = np.random.default_rng(0)
    while env.agents:
        for a in env.agents:
            assert env.observation_space(a).contains(obs[a]), a
            m = infos[a]["action_mask"]
            assert m.dtype == np.int8 and m.shape == (K + 1,) and m[K] == 1
        assert env.state_space.contains(env.state())
        acts = {a: int(rng.integers(K + 1)) for a in env.agents}
        obs, _, _, _, infos = env.step(acts)


def test_same_seed_same_episode_and_unseeded_resets_follow_the_seed():
    e1, e2 = make_env(), make_env()
    (r1, out1), (r2, out2) = play(e1, greedy, seed=3), play(e2, greedy, seed=3)
    a0 = e1.possible_agents[0]
    assert r1 == r2 and out1[4][a0]["metrics"] == out2[4][a0]["metrics"]
    # reset() without a seed continues from the last seed: the same for both envs.
    for env in (e1, e2):
        env.reset(seed=5)
        env.reset()
    assert e1.episode_seed == e2.episode_seed
    assert e1.workload == e2.workload
    e1.reset(seed=6)
    assert e1.workload != e2.workload


# -- masking -----------------------------------------------------------------------------------
def gpu_only_env(instances: int = 1) -> SchedulingEnv:
    """One job from east whose task needs an A100: only west has one."""
    wl = workload(job("j", 0.0, "east", task("t", 30.0, 4, gpu=1.0, models={"A100"},
                                             instances=instances)))
    return SchedulingEnv(cluster=CL, workload=wl, k_tasks=K, max_steps=20, config=CHECKED)


def test_masked_bids_never_allocate():
    env = gpu_only_env()
    east, west, edge = env.possible_agents
    _, infos = env.reset(seed=0)
    assert infos[east]["action_mask"].tolist() == [0] * K + [1]
    assert infos[edge]["action_mask"].tolist() == [0] * K + [1]
    assert infos[west]["action_mask"].tolist() == [1] + [0] * (K - 1) + [1]
    # east (the origin) and edge bid for it; west passes: nothing starts.
    _, _, term, trunc, infos = env.step({east: 0, edge: 0, west: K})
    assert env.sim.attempts == [] and infos[east]["placed"] == 0
    assert infos[east]["invalid_bid"] and infos[edge]["invalid_bid"]
    assert infos[east]["invalid_bids"] == 1 and infos[west]["invalid_bids"] == 0
    # Bids for an empty slot are invalid too.
    env.step({east: 3, edge: 5, west: 1})
    assert env.sim.attempts == []
    # Everyone bids: the origin's bid is masked, so west wins though east is the origin.
    _, _, term, trunc, infos = env.step({east: 0, edge: 0, west: 0})
    assert [a.site for a in env.sim.attempts] == [1]
    assert infos[west]["won"] and not infos[east]["won"]
    assert infos[east]["invalid_bids"] == 3 and infos[west]["invalid_bids"] == 1
    # Nothing else is open: the episode runs out to its end.
    while env.agents:
        _, _, term, trunc, infos = env.step({})
    assert all(term.values()) and infos[east]["metrics"]["jobs_completed"] == 1


# -- clearing ----------------------------------------------------------------------------------
def three_way_env(origin: str) -> SchedulingEnv:
    wl = workload(job("j", 0.0, origin, task("t", 30.0, 2, instances=4)))
    return SchedulingEnv(cluster=CL, workload=wl, k_tasks=K, max_steps=50, config=CHECKED)


@pytest.mark.parametrize("origin, bidders, expected", [
    ("edge", ("east", "west", "edge"), ("edge", "east", "west")),   # the origin first
    ("edge", ("east", "west"), ("east", "west")),   # equal latency (40 ms): lower index
    ("east", ("edge", "west"), ("west", "edge")),   # lower latency (10 ms < 40 ms)
    ("west", ("edge", "east"), ("east", "edge")),
])
def test_clearing_rule_in_any_dict_order(origin, bidders, expected):
    """Every bidder for the 4-instance task gets one instance, served in the origin's order
    of preference, whatever the order of the action dict."""
    for order in (bidders, bidders[::-1]):
        env = three_way_env(origin)
        env.reset(seed=0)
        acts = {f"site:{b}": 0 for b in order}
        _, _, _, _, infos = env.step(acts)
        sites = [env.cluster.sites[a.site].name for a in env.sim.attempts]
        assert sites == list(expected), (order, sites)
        assert all(infos[f"site:{b}"]["won"] for b in bidders)
        assert infos[f"site:{expected[0]}"]["placed"] == len(bidders)


def test_same_bids_in_another_dict_order_same_schedule():
    runs = []
    for reverse in (False, True):
        env = make_env()
        _, infos = env.reset(seed=11)
        rng = np.random.default_rng(0)
        obs_seen = []
        while env.agents:
            acts = {}
            for a in env.agents:    # mostly valid bids, some passes, some invalid
                ok = np.flatnonzero(infos[a]["action_mask"])
                acts[a] = int(rng.choice(ok)) if rng.random() < 0.9 else int(rng.integers(K))
            if reverse:
                acts = dict(reversed(list(acts.items())))
            obs, _, _, _, infos = env.step(acts)
            obs_seen.append(np.stack([obs[a] for a in env.possible_agents]))
        runs.append(([(a.task.rank, a.instance, a.node, a.start) for a in env.sim.attempts],
                     np.stack(obs_seen)))
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1])


def test_bad_action_is_an_error():
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside"):
        env.step({env.possible_agents[0]: K + 1})


# -- whole episodes ----------------------------------------------------------------------------
def test_greedy_completes_all_work():
    env = make_env()
    _, (_, _, term, trunc, infos) = play(env, lambda e, i: greedy(e, i), seed=2)
    assert all(term.values()) and not any(trunc.values())
    m = infos[env.possible_agents[0]]["metrics"]
    assert m["tasks_lost"] == 0
    assert m["jobs_completed"] == m["jobs"] == 20
    assert m["instances_completed"] == m["instances"]
    assert verify(env.sim.result("env")) == []
    assert env.agents == []
    with pytest.raises(RuntimeError):
        env.step({})


def test_greedy_with_faults_and_outages_loses_nothing():
    cl = load_cluster(str(Path(__file__).parent / "fixtures" / "cluster_small.yaml"))
    env = make_env(cl=cl, max_steps=20_000)
    _, (_, _, term, _, infos) = play(env, greedy, seed=4)
    m = infos[env.possible_agents[0]]["metrics"]
    assert all(term.values())
    assert m["tasks_lost"] == 0
    assert m["jobs_completed"] + m["jobs_failed"] + m["jobs_unschedulable"] == m["jobs"]
    assert m["retries"] > 0 or m["preemptions"] > 0, "the faults did happen"
    assert verify(env.sim.result("env")) == []


def test_jobs_charged_are_exactly_the_jobs_in_the_system():
    """The env tracks the jobs present from the events it processes (not by scanning all
    jobs); check it against a scan at every step, outages and failures included."""
    cl = load_cluster(str(Path(__file__).parent / "fixtures" / "cluster_small.yaml"))
    env = make_env(cl=cl, max_steps=20_000)
    _, infos = env.reset(seed=4)
    while env.agents:
        _, _, _, _, infos = env.step(greedy(env, infos))
        sim = env.sim
        scan = {j.idx for j in sim.jobs if j.job.arrival <= sim.now and j.outcome == "pending"}
        assert set(env._present) == scan
        assert env._present_w == pytest.approx(sum(sim.jobs[i].job.weight for i in scan))
    assert env._present == {}


def test_all_pass_truncates_and_reports_stalled_tasks():
    env = make_env(max_steps=60)
    _, (_, _, term, trunc, infos) = play(env, lambda e, i: {a: K for a in e.agents}, seed=2)
    a0 = env.possible_agents[0]
    assert all(trunc.values()) and not any(term.values())
    assert infos[a0]["steps"] == 60
    assert infos[a0]["stalled_tasks"] == len(env.sim.pool) > 0
    assert infos[a0]["stalled_instances"] >= infos[a0]["stalled_tasks"]
    assert "metrics" in infos[a0] and env.sim.attempts == []


def test_reward_integral_is_weighted_total_jct():
    env = make_env()
    rewards, (_, _, term, _, infos) = play(env, greedy, seed=7)
    assert all(term.values())
    jobs = env.sim.jobs
    assert all(j.outcome == "completed" for j in jobs)
    assert len({j.job.weight for j in jobs}) == 3
    expect = -sum(j.job.weight * (j.completion - j.job.arrival) for j in jobs) / 3600 / 3
    assert sum(rewards) == pytest.approx(expect, rel=1e-9)
    assert all(r <= 0 for r in rewards)


def test_reward_charges_failed_and_unschedulable_jobs_until_they_leave():
    """Job a needs west's A100s, and west goes down for good at t=10 before anyone bids for
    it: a is charged 10 s. Job b (weight 2) runs at east from t=0 and fails every attempt
    (max_attempts=1): it is charged until its one attempt ends."""
    faults = Faults(task_failure_prob=1.0, max_attempts=1,
                    outages=(NodeOutage(at=10.0, until=None, site="west"),))
    cl = replace(CL, faults=faults)
    wl = workload(job("a", 0.0, "east", task("t", 30.0, 4, gpu=1.0, models={"A100"})),
                  job("b", 0.0, "east", task("t", 100.0, 2), weight=2.0))
    env = SchedulingEnv(cluster=cl, workload=wl, k_tasks=K, max_steps=20, config=CHECKED)
    east, west, edge = env.possible_agents
    env.reset(seed=0)
    rewards = [env.step({east: 1})[1][east]]                  # b starts at east
    assert [a.task.job.job.id for a in env.sim.attempts] == ["b"]
    while env.agents:
        _, rew, term, _, infos = env.step({})
        rewards.append(rew[east])
    assert all(term.values())
    m = infos[east]["metrics"]
    assert (m["jobs_unschedulable"], m["jobs_failed"], m["tasks_lost"]) == (1, 1, 0)
    b_end = env.sim.attempts[0].end
    assert 0 < b_end < 100
    assert sum(rewards) == pytest.approx(-(1.0 * 10.0 + 2.0 * b_end) / 3600 / 3, rel=1e-12)
    assert env._present == {}


# -- observation layout ------------------------------------------------------------------------
def test_observation_fields():
    env = gpu_only_env(instances=2)
    obs, _ = env.reset(seed=0)
    east, west, edge = env.possible_agents
    own, slots = split_obs(obs[west], K)
    f = {n: own[i] for i, n in enumerate(OWN_FEATURES)}
    assert f["free_cpu"] == f["free_mem"] == f["free_gpu"] == f["alive"] == 1.0
    assert f["util_cpu"] == 0.0 and f["has_gpu"] == 1.0
    assert f["log_open_tasks"] == pytest.approx(np.log1p(1) / 10)
    s = {n: slots[0, i] for i, n in enumerate(SLOT_FEATURES)}
    assert s["valid"] == 1 and s["fits_here"] == 1 and s["is_origin"] == 0
    assert s["gpu"] == pytest.approx(1000 / 2000)                 # 1 of the node's 2 gpus
    assert s["cpu"] == pytest.approx(4 / 32)                      # west's largest node
    assert s["log_transfer"] == pytest.approx(np.log1p(0.010) / 10, rel=1e-5)
    assert s["log_duration"] == pytest.approx(np.log1p(30.0) / 10, rel=1e-6)
    assert s["fit_sites"] == pytest.approx(1 / 3)
    assert (slots[1:] == 0).all(), "empty slots are all zero"
    s_east = split_obs(obs[east], K)[1][0]
    assert s_east[SLOT_FEATURES.index("is_origin")] == 1
    assert s_east[SLOT_FEATURES.index("log_transfer")] == 0
    assert s_east[SLOT_FEATURES.index("gpu")] == 2.0              # east has no gpu at all
    assert split_obs(obs[edge], K)[0][OWN_FEATURES.index("has_gpu")] == 0
    # After one allocation (one instance still open and fitting: no time passes), west's
    # gpu and utilisation match the simulator's own numbers.
    obs, *_ = env.step({west: 0})
    assert env.sim.now == 0.0 and len(env.sim.attempts) == 1
    own = split_obs(obs[west], K)[0]
    u = env.sim.cap.utilisation_of(env.sim.cap.site_slice[1])
    assert own[4:7] == pytest.approx(u, rel=1e-6)
    assert own[OWN_FEATURES.index("free_gpu")] == pytest.approx(0.5)
    st = env.state()
    assert st[len(STATE_GLOBAL) + 4 * 1 + 2] == pytest.approx(0.5)  # west free_gpu
