"""The site agents' market as a PettingZoo env: PettingZoo's own checks, the online reward
against the trainer's, and the same agents giving the same schedule in the env as in the
simulation engine (a policy trained in one runs unchanged in the other)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from agora.agents.sim.config import Reward, SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.step.pettingzoo_env import MarketEnv, split
from agora.agents.step.simulation import AgentsPolicy
from agora.agents.workloads.synthetic import generate
from tests.agents.test_step import CL, agents

torch.set_num_threads(1)   # tests share a 2-core machine
K = 4


def make_env(jobs: int = 15, **kw) -> MarketEnv:
    return MarketEnv(cluster=CL, k=K, config=SimConfig(check_invariants=True),
                     workload_fn=lambda s: generate(CL, seed=s, jobs=jobs, load=0.9), **kw)


def test_parallel_api():
    parallel_api_test(make_env(), num_cycles=300)


def test_parallel_seed():
    parallel_seed_test(lambda: make_env(), num_cycles=200)


def test_online_reward_is_the_episode_cost():
    env = make_env(jobs=20, reward=Reward(jct_scale_s=500.0, slowdown_w=0.3))
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


def test_same_agents_same_schedule_in_env_and_simulation_engine():
    pol = agents(K, comm="none").policy()
    wl = generate(CL, seed=7, jobs=25, load=0.95)
    ref = Simulator(CL, wl, SimConfig(seed=0)).run(AgentsPolicy(pol)).metrics
    env = MarketEnv(cluster=CL, workload=wl, k=K, config=SimConfig(seed=0))
    obs, infos = env.reset(seed=0)
    from agora.agents.step.codes import CodeBook
    book = CodeBook(len(CL.sites), 8)
    while env.agents:
        rows = np.stack([obs[a] for a in env.possible_agents])
        own, slots, mask = split(rows, K)
        codes, has = book.codes(0)
        pm = np.zeros((len(rows), len(has)), bool)
        logits = pol.logits(slots, mask, own, np.broadcast_to(codes, (len(rows),) + codes.shape),
                            pm)
        obs, _, _, _, infos = env.step({a: logits[i] for i, a in enumerate(env.possible_agents)})
    got = infos[env.possible_agents[0]]["metrics"]
    for key in ("jct_mean_s", "makespan_s", "score", "jobs_completed"):
        assert got[key] == pytest.approx(ref[key]), key
