"""Episodes played in worker processes (``agents/learn/rollouts.py``): an update's rollouts,
the teacher's warm-start episodes and the validation runs give the same result whether one
process plays them or several, and bad worker counts are refused naming the flag. The workers
are real spawned processes."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from agora.agents.learn.learned_policy import AgentConfig
from agora.agents.learn.loop import PPOLoop, TrainConfig
from agora.agents.learn.rollouts import Episode, EpisodeRunner
from tests.agents.test_learn_threshold import write_instance

torch.set_num_threads(1)


def _weights(lp: PPOLoop) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in lp.agents.model.state_dict().values()]


def _run(sc, workers: int) -> tuple[list[dict], dict, list[np.ndarray]]:
    cfg = TrainConfig(scenario=asdict(sc), steps=10**6, seed=2, train_jobs=12, bc_episodes=2,
                      bc_epochs=2, rollouts=3, val_episodes=2, agent=AgentConfig(k=4, hidden=16))
    lp = PPOLoop(cfg, workers=workers)
    try:
        lp.bc_warm_start()
        rows = [lp.update()[0] for _ in range(2)]
        val = lp.validate()
    finally:
        lp.close()
    return rows, val, _weights(lp)


@pytest.mark.timeout(180)
def test_two_workers_give_what_one_process_gives(tmp_path):
    sc = write_instance(tmp_path, n_jobs=120)
    rows1, val1, w1 = _run(sc, 1)
    rows2, val2, w2 = _run(sc, 2)
    keys = ("charts/episodic_return", "charts/jct_mean_s", "charts/rounds", "losses/policy")
    assert [[r[k] for k in keys] for r in rows1] == [[r[k] for k in keys] for r in rows2]
    assert val1 == val2
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))
    assert rows1[0]["charts/rounds"] > 0


@pytest.mark.timeout(120)
def test_the_runner_returns_episodes_in_order_and_stops_its_workers(tmp_path):
    from agora.agents.learn.learned_policy import Agents
    from agora.agents.sim.runner import Scenario

    sc = write_instance(tmp_path, n_jobs=40)
    cluster, wl = Scenario(**asdict(sc)).build(0)
    torch.manual_seed(0)
    pol = Agents(AgentConfig(k=4, hidden=16)).policy()
    eps = [Episode(cluster, wl, seed=i, sample_seed=100 + i) for i in range(4)]
    here = EpisodeRunner(1).run(pol, eps)
    with EpisodeRunner(2) as runner:
        there = runner.run(pol, eps)
        procs = list(runner._pool._processes.values())
        assert len(procs) == 2
    assert not any(p.is_alive() for p in procs), "close() stops the workers"
    timed = {"wall_s", "events_per_s"}                  # the only metrics read off a clock

    def metrics(played):
        return [{k: v for k, v in p.result.metrics.items() if k not in timed} for p in played]

    assert metrics(here) == metrics(there)
    assert all(np.array_equal(a.arrays["order"], b.arrays["order"]) for a, b in zip(here, there))
    # different sample seeds sample differently: the order of results is the order asked
    assert len({p.arrays["logp"].tobytes() for p in here}) == 4


@pytest.mark.parametrize("bad", [0, -1, 65, 1.5, "2"])
def test_a_bad_worker_count_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="workers"):
        EpisodeRunner(bad)


LEARNER = """
import sys, time
from dataclasses import asdict
from pathlib import Path
import torch
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.rollouts import Episode, EpisodeRunner
from agora.agents.sim.runner import Scenario
from tests.agents.test_learn_threshold import write_instance
sc = write_instance(Path(sys.argv[1]), n_jobs=8)
cluster, wl = Scenario(**asdict(sc)).build(0)
pol = Agents(AgentConfig(k=4, hidden=16)).policy()
runner = EpisodeRunner(2)
runner.run(pol, [Episode(cluster, wl, seed=i) for i in range(2)])
print(*runner._pool._processes, flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(120)
def test_workers_exit_when_their_learner_is_killed(tmp_path):
    """A learner killed by a signal runs no ``finally``: its workers must not live on."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from agora.deploy.pid_file import alive

    root = Path(__file__).resolve().parents[2]
    p = subprocess.Popen([sys.executable, "-c", LEARNER, str(tmp_path)], cwd=root,
                         stdout=subprocess.PIPE, text=True)
    workers = [int(x) for x in p.stdout.readline().split()]
    assert len(workers) == 2
    os.kill(p.pid, signal.SIGKILL)
    p.wait()

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    left = [w for w in workers if alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, "the workers outlived their learner"
