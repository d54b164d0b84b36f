"""Learn-to-threshold: on a tiny instance where one site is clearly better, a short PPO run
(no imitation warm start) must learn to send the work there.

The instance: jobs originate at a site that cannot run them; two sites can. Site ``near`` has
the lower link latency from the origin, so the market's tie-break (equal prices: the origin's
nearest site) sends work there — but its link is slow, and fetching a job's 100 MB takes
100 s against a 20 s run. Site ``far`` fetches it in well under a second. Jobs arrive 200 s
apart, so both sites are always free: the only thing that decides a job's completion time is
which site wins it, i.e. whether ``far`` out-prices ``near`` (``far`` ranks the task before
"pass" and ``near`` ranks "pass" first). An untrained pair of agents gets ``far`` a quarter of
the time (mean JCT ≈ 95 s); after training, mean JCT must be under 40 s (``far`` ≥ 80%).
With the policy-gradient sign flipped (``PPOConfig.sign = -1``) the agents learn the opposite
and this test fails (checked by mutation; see ``test_flipped_gradient_does_not_learn``).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.ppo import PPOConfig
from agora.agents.learn.trainer import EpisodeSource, TrainConfig, run_episode, train
from agora.agents.sim.runner import Scenario

torch.set_num_threads(1)   # tests share a 2-core machine

CLUSTER = """
sites:
  - name: origin
    nodes: [{name: tiny, cpu: 1, mem: 1024}]
  - name: near
    nodes: [{name: n, cpu: 2, mem: 4096}]
  - name: far
    nodes: [{name: n, cpu: 2, mem: 4096}]
links:
  default: {latency_ms: 100, bandwidth_mbps: 10000}
  pairs:
    - {a: origin, b: near, latency_ms: 1, bandwidth_mbps: 8}
    - {a: origin, b: far, latency_ms: 50, bandwidth_mbps: 80000}
"""


def write_instance(d, n_jobs: int = 400) -> Scenario:
    (d / "cluster.yaml").write_text(CLUSTER)
    with (d / "jobs.jsonl").open("w") as f:
        for i in range(n_jobs):
            f.write(json.dumps({"id": f"j{i}", "arrival": 200 * i, "origin": "origin", "tasks": [
                {"id": "t", "duration": 20, "demand": {"cpu": 2, "mem": 1024},
                 "data_mb": 100}]}) + "\n")
    return Scenario(cluster=str(d / "cluster.yaml"), workload=str(d / "jobs.jsonl"), sites=3)


def train_and_measure(tmp_path, sign: float) -> tuple[float, float]:
    sc = write_instance(tmp_path)
    cfg = TrainConfig(scenario=asdict(sc), steps=2500, seed=3, train_jobs=40, bc_episodes=0,
                      eval_every=1000, val_episodes=1,
                      agent=AgentConfig(k=4, hidden=32, comm="always"),
                      ppo=PPOConfig(lr=2e-3, gamma=0.9, minibatch=256, ent_coef=0.0, sign=sign))
    src = EpisodeSource(sc, cfg.train_jobs, cfg.train_fraction)

    def jct(agents) -> float:
        out = []
        for i in range(3):
            cl, wl = src.episode(i, validation=True)
            res, _, _ = run_episode(agents, cl, wl, seed=i, record=False)
            out.append(res.metrics["jct_mean_s"])
        return float(np.mean(out))

    train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    agents, _ = checkpoint.load_agents(tmp_path / "run" / "last.pt")
    torch.manual_seed(cfg.seed)
    fresh = Agents(cfg.agent)
    return jct(fresh), jct(agents)


def test_ppo_learns_to_send_work_to_the_better_site(tmp_path):
    before, after = train_and_measure(tmp_path, sign=1.0)
    assert after < 40.0, f"mean JCT {after:.1f} s after training (untrained: {before:.1f} s); " \
                         f"the far site should win almost every job (≈ 20 s)"


@pytest.mark.slow
def test_flipped_gradient_does_not_learn(tmp_path):
    """The mutation check kept as a test: ascending the wrong way must not pass the bar."""
    _, after = train_and_measure(tmp_path, sign=-1.0)
    assert after >= 40.0
