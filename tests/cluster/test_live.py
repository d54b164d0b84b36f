"""Jobs that really run: the live system (``agora up``'s ``bring_up(live=True)``) on a local
multi-node Ray, one Ray node per site, real commands under the nodes' runners, a 4-replica
PBFT coordinator. Each instance writes a record of itself (who it is, where it ran, when) to
a file of its own, so the tests see every execution, also a second one.

The tests share one system (start-up costs ~20 s on 2 cores); the last one removes a Ray node
for good."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from agora.agents.domain import Demand, Job, Run, Task
from tests.cluster.test_replay import random_checkpoint

CLUSTER = """
sites:
  - name: east
    nodes: [{name: n0, cpu: 2, mem: 2048}]
  - name: west
    nodes: [{name: n0, cpu: 2, mem: 2048}]
  - name: edge
    nodes: [{name: n0, cpu: 2, mem: 2048}]
faults:
  max_attempts: 2
"""

RECORD = """
import json, os, sys, time
rec = {k: os.environ['AGORA_' + k.upper()] for k in
       ('job', 'task', 'instance', 'site', 'node', 'attempt', 'ray_node')}
rec['pid'], rec['start'] = os.getpid(), time.time()
out = os.path.join(sys.argv[1], '{job}-{task}-{instance}-{attempt}-{pid}.json'.format(**rec))
time.sleep(float(sys.argv[2]))
rec['end'] = time.time()
json.dump(rec, open(out, 'w'))
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    import ray

    from agora.agents.cluster.ray_executor import RayExecutorSpec
    from agora.deploy.launch import bring_up
    from agora.deploy.replay import policy_arrays
    from agora.deploy.up_config import load_up_config

    d = tmp_path_factory.mktemp("live")
    (d / "cluster.yaml").write_text(CLUSTER)
    (d / "record.py").write_text(RECORD)
    (d / "records").mkdir()
    data = {"cluster": str(d / "cluster.yaml"), "policy": str(random_checkpoint(d / "r.pt")),
            "out": str(d / "out"), "replicas": 4, "round_timeout_s": 1.0,
            "ray": {"multi_node": True, "dashboard": False}, "metrics": {"enabled": False},
            "coordinator": {"view_change_timeout_s": 1.0, "site_timeout_s": 4.0}}
    (d / "up.yaml").write_text(yaml.safe_dump(data))
    cfg = load_up_config(d / "up.yaml")
    cluster = cfg.load_cluster()
    weights, pconf = policy_arrays(cfg.policy)
    system = bring_up(cfg, cluster, str(d / "cluster.yaml"), Path(cfg.out), weights=weights,
                      policy_config=pconf, executor_spec=RayExecutorSpec(namespace="agora"),
                      live=True)
    system.dir = d
    try:
        yield system
    finally:
        system.close()
        assert not ray.is_initialized()


def task(tid: str, seconds: float, *, instances: int = 1, after=(), exit_code: int = 0,
         d: Path) -> Task:
    return Task(id=tid, duration=seconds, demand=Demand(cpu=500, mem=64), instances=instances,
                after=tuple(after), run=Run(argv=(sys.executable, str(d / "record.py"),
                                                  str(d / "records"), str(seconds),
                                                  str(exit_code))))


def submit(system, *jobs: Job) -> None:
    res = system.loop.run(system.operator.submit_jobs(list(jobs)), timeout=60)
    assert res.accepted == len(jobs), list(res.rejections)


def wait(system, pred, timeout: float = 120.0, what: str = ""):
    """Until ``pred(ledger view)`` is truthy; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = system.loop.run(system.operator.ledger(), timeout=30)
        got = pred(view)
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def job_rec(view, job_id: str):
    return next((j for j in view.jobs if j.job.id == job_id), None)


def finished(job_id: str):
    return lambda v: (job_rec(v, job_id) is not None and
                      job_rec(v, job_id).outcome != "pending" and job_rec(v, job_id))


def records(system, job_id: str) -> list[dict]:
    out = []
    for p in (system.dir / "records").glob(f"{job_id}-*.json"):
        out.append(json.loads(p.read_text()))
    return out


def ray_node_of() -> dict[str, str]:
    """Agora node -> the Ray node carrying its resource."""
    import ray

    from agora.agents.cluster.node_runner import NODE_RESOURCE_PREFIX
    return {r[len(NODE_RESOURCE_PREFIX):]: n["NodeID"] for n in ray.nodes() if n["Alive"]
            for r in n["Resources"] if r.startswith(NODE_RESOURCE_PREFIX)}


@pytest.mark.timeout(60)
def test_a_live_service_runs_no_replay_clock(live):
    """The replay clock is for simulated executors: a live service started one anyway, a
    Ray actor doing nothing for the service's whole life."""
    import ray

    from agora.agents.cluster.replay_clock import CLOCK_NAME

    assert live.clock is None
    with pytest.raises(ValueError):
        ray.get_actor(CLOCK_NAME, namespace="agora")


@pytest.mark.timeout(240)
def test_a_dag_runs_each_instance_once_on_its_committed_node_after_its_parents(live):
    d = live.dir
    submit(live, Job(id="dag", arrival=time.time(), origin="east", tasks=(
        task("a", 0.5, instances=2, d=d), task("b", 0.5, instances=3, after=["a"], d=d),
        task("c", 0.2, after=["b"], d=d))))
    rec = wait(live, finished("dag"), what="the DAG")
    assert rec.outcome == "completed", rec.reason
    runs = records(live, "dag")
    keys = sorted((r["task"], int(r["instance"])) for r in runs)
    assert keys == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("b", 2), ("c", 0)], keys
    sched = live.loop.run(live.operator.schedule(job_id="dag")).schedule.allocations
    placed = {(a.task_id, i): a.node for a in sched
              for i in range(a.instance_begin, a.instance_end)}
    carrier = ray_node_of()
    for r in runs:
        node = placed[(r["task"], int(r["instance"]))]
        assert r["node"] == node and r["site"] == node.split("/")[0], r
        assert r["ray_node"] == carrier[node], "it ran on the Ray node carrying its node"
    end = {t: max(r["end"] for r in runs if r["task"] == t) for t in "abc"}
    start = {t: min(r["start"] for r in runs if r["task"] == t) for t in "abc"}
    assert start["b"] >= end["a"] and start["c"] >= end["b"]


@pytest.mark.timeout(240)
def test_a_failing_command_is_retried_then_reported_failed_with_its_exit_code(live):
    from agora.deploy.job_table import job_rows

    d = live.dir
    submit(live, Job(id="bad", arrival=time.time(), origin="west",
                     tasks=(task("x", 0.1, exit_code=4, d=d),)))
    rec = wait(live, finished("bad"), what="the failing job")
    assert rec.outcome == "failed" and "exit code 4" in rec.reason, rec.reason
    runs = records(live, "bad")
    assert sorted(r["attempt"] for r in runs) == ["1", "2"]      # max_attempts: 2
    nodes = [n.name for n in _cluster(live).nodes]
    row = job_rows(live.loop.run(live.operator.ledger()), nodes, Path(live.dir / "out"),
                   only="bad")[0]["tasks"][0]["instances"][0]
    assert row["exit_code"] == 4 and row["failed_attempts"] == 2 and row["state"] == "gave up"


def _cluster(system):
    return system.group.config.load_cluster()


@pytest.mark.timeout(240)
def test_cancel_kills_a_running_instance_and_reports_it(live):
    d = live.dir
    submit(live, Job(id="long", arrival=time.time(), origin="edge",
                     tasks=(task("sleep", 120, d=d),)))
    wait(live, lambda v: job_rec(v, "long") and 2 in job_rec(v, "long").tasks[0].states,
         what="the instance to run")
    folder = _wait_pid_folder(live, "long")
    pid = int((folder / "pid").read_text())
    os.kill(pid, 0)                                     # it runs
    res = live.loop.run(live.operator.cancel_job("long", "test"))
    assert not res.rejections, list(res.rejections)
    rec = wait(live, finished("long"), what="the cancel")
    assert rec.outcome == "cancelled"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    assert not _alive(pid), "the cancelled instance's process was killed"
    # its runner writes the end once it has reaped it: a moment after (the full suite read
    # the folder in between once)
    while time.monotonic() < deadline and not (folder / "end.json").exists():
        time.sleep(0.2)
    end = json.loads((folder / "end.json").read_text())
    assert end["exit_code"] != 0
    assert records(live, "long") == []                  # it never got to write its record


def _wait_pid_folder(system, job_id: str, timeout: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p.parent for p in (system.dir / "out" / "runs").glob(f"*/{job_id}/*/*/pid")
                 if not (p.parent / "end.json").exists()]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no running process of {job_id}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


@pytest.mark.timeout(300)
def test_an_agent_killed_while_its_work_runs_loses_nothing_and_runs_nothing_twice(live):
    import ray

    d = live.dir
    submit(live, Job(id="survive", arrival=time.time(), origin="east",
                     tasks=(task("work", 8, instances=2, d=d),)))
    wait(live, lambda v: job_rec(v, "survive") and
         job_rec(v, "survive").tasks[0].states.count(2) == 2, what="both instances running")
    sched = live.loop.run(live.operator.schedule(job_id="survive")).schedule.allocations
    site = sched[0].site
    actor = live.actors[live.sites.index(site)]
    info = ray.get(actor.info.remote(), timeout=30)
    os.kill(info["pid"], signal.SIGKILL)
    rec = wait(live, finished("survive"), timeout=180, what="the job after the kill")
    assert rec.outcome == "completed", rec.reason
    runs = records(live, "survive")
    assert sorted(int(r["instance"]) for r in runs) == [0, 1], runs   # once each
    again = ray.get(actor.info.remote(), timeout=60)
    assert again["pid"] != info["pid"]


def test_stopping_waits_a_few_seconds_for_an_agent_that_cannot_answer(live):
    """``System.close`` asks every agent to stop; one that cannot answer (its node gone, Ray
    holding it pending) must not hold the stop for the whole timeout once the others have
    answered. Fakes stand in for the agents here (real Ray actors, a stop that never ends)."""
    import ray

    from agora.deploy.launch import stop_agents

    @ray.remote(num_cpus=0)
    class Agent:
        def __init__(self, hang: bool) -> None:
            self.hang = hang

        def stop(self) -> None:
            time.sleep(60 if self.hang else 0.05)

    actors = [Agent.remote(False), Agent.remote(True), Agent.remote(False)]
    ray.get([a.__ray_ready__.remote() for a in actors])
    t0 = time.monotonic()
    assert stop_agents(actors, timeout_s=30, straggler_s=1.0) == 2
    assert time.monotonic() - t0 < 10, "the silent agent held the stop for its whole timeout"
    for a in actors:
        ray.kill(a)


@pytest.mark.timeout(300)
def test_a_ray_node_removed_mid_run_has_its_instances_run_again_elsewhere(live):
    """Last in the module: the site's Ray node is gone for good."""
    d = live.dir
    submit(live, Job(id="moved", arrival=time.time(), origin="west",
                     tasks=(task("w", 15, d=d),)))
    wait(live, lambda v: job_rec(v, "moved") and 2 in job_rec(v, "moved").tasks[0].states,
         what="the instance to run")
    first = live.loop.run(live.operator.schedule(job_id="moved")).schedule.allocations[0]
    carrier = ray_node_of()[first.node]
    victim = next(n for n in live.ray_cluster.worker_nodes if n.node_id == carrier)
    live.ray_cluster.remove_node(victim)
    rec = wait(live, finished("moved"), timeout=240, what="the job after the node left")
    assert rec.outcome == "completed", rec.reason
    runs = records(live, "moved")
    assert len(runs) == 1 and runs[0]["node"] != first.node, runs
    allocs = live.loop.run(live.operator.schedule(job_id="moved")).schedule.allocations
    assert {a.node for a in allocs} >= {first.node, runs[0]["node"]}
