"""Faults during full cluster-engine runs (real Ray, real 4-replica PBFT over gRPC):

- a site agent SIGKILLed mid-run: Ray restarts it, it registers again, the run completes,
  and no instance is lost or run twice;
- the primary replica SIGKILLed mid-run: a view change, the run completes, and every
  allocation the world started is in the committed schedule;
- one Byzantine replica (the coordinator's fault harness) throughout: the schedule equals
  the simulation engine's.

"Run twice" is checked against the world's attempt log: every instance completes exactly
once, and the coordinator committed exactly one allocation per attempt (an instance that
failed is allocated again, once per failure).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
import ray

from tests.test_cluster_engine import QUALITY, make_checkpoint, sim_engine_metrics, up_config

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("ck") / "random.pt"
    make_checkpoint(p)
    return p


def run(tmp: Path, ckpt: Path, on_round=None, byzantine=None):
    from deploy.up import bring_up, run_episode, system_figures

    cfg = up_config(tmp, ckpt)
    cluster, wl = cfg.scenario().build(cfg.seed)
    system = bring_up(cfg, cluster, cfg.cluster, Path(cfg.out), byzantine=byzantine)
    try:
        res, pol, wall, world = run_episode(
            system, cluster, wl, seed=0, k=16, live_speed=None, call_timeout_s=120,
            on_round=(lambda p: on_round(system, p)) if on_round else None,
            record_attempts=True)
        figs = system_figures(system, pol, wall)
        sched = system.loop.run(system.operator.client.schedule(all=True), timeout=60)
    finally:
        system.close()
    return res, figs, world, sched.schedule


def assert_nothing_lost_or_run_twice(res, world, schedule) -> None:
    m = res.metrics
    assert m["jobs_completed"] == m["jobs"] and m["tasks_lost"] == 0
    completed = Counter((a.task.job.job.id, a.task.task.id, a.instance)
                        for a in world.attempts if a.outcome == "completed")
    total = sum(ts.task.instances for js in world.jobs for ts in js.tasks)
    assert len(completed) == total and set(completed.values()) == {1}
    started = Counter((a.task.job.job.id, a.task.task.id) for a in world.attempts)
    committed = Counter()
    for x in schedule.allocations:
        committed[(x.job_id, x.task_id)] += x.instance_end - x.instance_begin
    assert committed == started, "one committed allocation per attempt, no more, no less"


def test_a_killed_site_agent_is_restarted_and_the_run_completes(tmp_path, ckpt):
    killed = []

    def kill_once(system, pol):
        if pol.stats["rounds"] == 4 and not killed:
            info = ray.get(system.actors[1].info.remote())
            os.kill(info["pid"], signal.SIGKILL)
            killed.append(info)

    res, figs, world, schedule = run(tmp_path, ckpt, kill_once)
    assert killed, "the run had fewer than 4 rounds: nothing was killed"
    assert figs["agent_restarts"] >= 1
    site = killed[0]["site"]
    assert figs["agents"][site]["pid"] != killed[0]["pid"], "a new process serves the site"
    assert_nothing_lost_or_run_twice(res, world, schedule)


def test_a_killed_primary_replica_costs_a_view_change_not_an_allocation(tmp_path, ckpt):
    killed = []

    def kill_primary(system, pol):
        if pol.stats["rounds"] == 4 and not killed:
            system.group.kill(0)          # replica 0 is the primary of view 0
            killed.append(True)

    res, figs, world, schedule = run(tmp_path, ckpt, kill_primary)
    assert killed
    assert figs["view_changes"] >= 1, "the backups should have moved to a new view"
    assert_nothing_lost_or_run_twice(res, world, schedule)


def test_a_byzantine_primary_does_not_change_the_schedule(tmp_path, ckpt):
    res, figs, world, schedule = run(tmp_path, ckpt, byzantine={0: "equivocate"})
    ref = sim_engine_metrics(ckpt)
    for key in QUALITY:
        assert res.metrics[key] == pytest.approx(ref[key], rel=0.02), key
    assert_nothing_lost_or_run_twice(res, world, schedule)
