"""The node runner's tests' common parts: a runner on a local Ray (the ``runner`` fixture in
``conftest.py``), a run request and the wait for a run's end."""

from __future__ import annotations

import sys
import time

import ray

from agora.agents.cluster.node_runner import RayNodeRunner, RunRequest, node_resource, runner_name

NODE = "site-a/n0"
PY = sys.executable


def runner_on_local_ray(tmp_path_factory):
    """(runner handle, runs root) of one runner for ``NODE`` on a local Ray; Ray shut down
    after."""
    root = tmp_path_factory.mktemp("runs")
    ray.init(address="local", num_cpus=2, resources={node_resource(NODE): 1},
             include_dashboard=False, log_to_driver=False, namespace="agora-test-runner")
    h = RayNodeRunner.options(name=runner_name(NODE), num_cpus=0,
                              resources={node_resource(NODE): 0.001}, max_restarts=-1,
                              max_concurrency=100).remote(NODE, str(root))
    yield h, root
    ray.shutdown()


def req(job, argv, *, instance=0, run_id=1, timeout_s=None, attempt=1, env=()):
    return RunRequest(job=job, task="t", instance=instance, run_id=run_id, attempt=attempt,
                      argv=tuple(argv), env=tuple(env), cwd=None, timeout_s=timeout_s,
                      cpu=0.5, mem_mib=16, gpus=0.0, site="site-a", node=NODE)


def wait_end(h, job, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _inc, ends = ray.get(h.ends.remote(0, 1.0))
        for e in ends:
            if e.job == job:
                return e
    raise AssertionError(f"no end of {job}")
