"""The learned agents' market as a PettingZoo env: PettingZoo's own checks, the online reward
against the trainer's, and the same agents giving the same schedule in the env as behind the
simulator's ``Policy`` seam (a policy trained in one runs unchanged in the other)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from agents.learn.features import FeatureBuilder
from agents.learn.learned_policy import AgentConfig, Agents, LearnedPolicy
from agents.learn.market_env import MarketEnv, split
from agents.learn.ppo import PPOConfig
from agents.sim.config import SimConfig
from agents.sim.engine import Simulator
from agents.workloads.synthetic import generate
from tests.test_learn_policy import CL

torch.set_num_threads(1)   # tests share a 2-core machine
K = 5


def make_env(jobs: int = 15, **kw) -> MarketEnv:
    return MarketEnv(cluster=CL, k=K, config=SimConfig(check_invariants=True),
                     workload_fn=lambda s: generate(CL, seed=s, jobs=jobs, load=0.9), **kw)


def test_parallel_api():
    parallel_api_test(make_env(), num_cycles=300)


def test_parallel_seed():
    parallel_seed_test(lambda: make_env(), num_cycles=200)


def test_online_reward_is_the_episode_cost():
    cfg = PPOConfig(jct_scale_s=500.0, slowdown_w=0.3)
    env = make_env(jobs=20, reward=cfg)
    env.reset(seed=4)
    rng = np.random.default_rng(0)
    total = 0.0
    while env.agents:
        acts = {a: rng.normal(size=K + 1).astype(np.float32) for a in env.agents}
        _, rew, term, trunc, infos = env.step(acts)
        total += rew[env.possible_agents[0]] if rew else 0.0
    assert all(term.values())
    cost = sum((1 / 500.0 + 0.3 / max(j.critical_path, 10.0)) * (j.completion - j.job.arrival)
               for j in env.sim.jobs if j.completion is not None)
    assert total == pytest.approx(-cost, rel=1e-6)
    assert infos[env.possible_agents[0]]["metrics"]["tasks_lost"] == 0


def test_same_agents_same_schedule_in_env_and_simulator():
    torch.manual_seed(0)
    agents = Agents(AgentConfig(k=K, hidden=32, comm="none"), 3, FeatureBuilder(CL, K).state_dim)
    wl = generate(CL, seed=7, jobs=25, load=0.95)
    sim_r = Simulator(CL, wl, SimConfig(seed=7)).run(LearnedPolicy(agents, comm="none"))

    env = MarketEnv(cluster=CL, k=K, workload=wl)
    obs, _ = env.reset(seed=7)
    codes, has = np.zeros((3, 8), np.int8), np.zeros(3, bool)
    while env.agents:
        o = np.stack([obs[a] for a in env.possible_agents])
        own, slots, mask = split(o, K)
        rv = SimpleNamespace(own=own, slots=np.ascontiguousarray(slots), mask=mask,
                             state=env.state())
        logits, _ = agents.forward_np(rv, codes, has)
        obs, _, _, _, infos = env.step({a: logits[i] for i, a in enumerate(env.possible_agents)})
    env_m = infos[env.possible_agents[0]]["metrics"]
    for key in ("jct_mean_s", "makespan_s", "score", "remote_runs"):
        assert env_m[key] == pytest.approx(sim_r.metrics[key]), key
