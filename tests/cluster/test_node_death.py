"""A site whose nodes sit on Ray nodes of their own (as on a real cluster: the agent on one,
a node's runner on another), and the raylet of one of them SIGKILLed:

- the site's executor takes its node down once Ray's GCS holds it dead
  (``agents/cluster/ray_nodes.py``), long before the runner's call timeout -- meanwhile the
  site offered the dead node's resources and new work was placed there (a probe: 20-50 s);
- every Ray worker of that raylet ends (``process.end_with_raylet``, the setup hook the Ray of
  ``agora up`` gives its workers): Ray's idle workers outlived it for good.

On a real local multi-node Ray, with the GCS's health checks and runtime environment as
``deploy/ray_runtime.py`` sets them."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import ray

from agora.agents.cluster.node_runner import node_resource
from agora.agents.cluster.ray_executor import RayExecutor
from agora.agents.cluster.registry import get_or_create
from agora.agents.cluster.replay_clock import clock_keeper
from agora.agents.cluster.runner_fleet import start_runners
from agora.agents.domain import Cluster, Node, Site
from agora.agents.ledger import Ledger
from agora.agents.process import process_table
from agora.deploy.ray_runtime import NODE_HEALTH_CHECKS, runtime_env
from tests.processes import alive

NS = "agora-test-node-death"


def children(pid: int) -> list[int]:
    return [p for p, (ppid, _state, _start) in process_table().items() if ppid == pid]


def title(pid: int) -> bytes:
    """A process's title (a Ray worker's: ``ray::<actor class>``, ``ray::IDLE``)."""
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].strip()
    except OSError:
        return b""


@ray.remote(num_cpus=0.1, resources={node_resource("a/n1"): 0.001})
def where() -> int:
    return os.getpid()


@pytest.mark.timeout(150)
def test_a_dead_raylet_takes_its_node_down_soon_and_its_workers_with_it(tmp_path):
    from ray.cluster_utils import Cluster as RayCluster

    rc = RayCluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {node_resource("a/n0"): 1}, "include_dashboard": False,
        "_system_config": dict(NODE_HEALTH_CHECKS)})
    worker = rc.add_node(num_cpus=2, resources={node_resource("a/n1"): 1})
    raylet = worker.all_processes["raylet"][0].process.pid
    try:
        rc.wait_for_nodes()
        ray.init(address=rc.address, namespace=NS, log_to_driver=False,
                 runtime_env=runtime_env())
        start_runners({"a/n0": 0, "a/n1": 0}, str(tmp_path), NS)
        # the shared small actors go beside agora up (the head), not on a site's node that
        # may die under them (a probe: the replay clock's did)
        reg, clock = get_or_create(NS), clock_keeper(NS)
        ray.get([reg.all.remote(), clock.get.remote()])
        here = ray.get_runtime_context().get_node_id()
        for a in (reg, clock):
            info = ray._private.state.state.actor_table(a._actor_id.hex())
            assert info["Address"]["NodeID"] == here, info["Address"]
        used = set(ray.get([where.remote() for _ in range(4)]))   # workers there, idle after
        cluster = Cluster(sites=(Site("a", (Node("a/n0", "a", cpu=1000, mem=512),
                                            Node("a/n1", "a", cpu=1000, mem=512))),))

        async def main() -> float:
            ex = RayExecutor(cluster=cluster, site=0, namespace=NS, call_timeout_s=60.0,
                             restart_grace_s=60.0)
            await ex.recover([], Ledger(max_attempts=2))
            assert sorted(ex.take_node_changes()) == [("a/n0", True), ("a/n1", True)]
            # the runner's worker and those that ran tasks of this job (an idle worker Ray
            # started ahead, before any job's code ran in it, does not run the hook)
            workers = [p for p in children(raylet) if p in used or title(p) == b"ray::NodeRunner"]
            assert len(workers) >= 2, workers
            t0 = time.monotonic()
            os.kill(raylet, signal.SIGKILL)
            while 1 not in ex.down and time.monotonic() - t0 < 45:
                await asyncio.sleep(0.2)
            took = time.monotonic() - t0
            for t in ex._tasks:
                t.cancel()
            assert ex.down == {1}, f"the node was not taken down within {took:.0f} s"
            assert ex.take_node_changes() == [("a/n1", False)]
            assert not ex.capacity.alive[1] and ex.capacity.alive[0]
            deadline = time.monotonic() + 10
            while any(alive(p) for p in workers) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            left = [p for p in workers if alive(p)]
            assert left == [], f"{len(left)} of {len(workers)} workers outlived their raylet"
            return took

        print(f"node down {asyncio.run(main()):.1f} s after its raylet died")
    finally:
        ray.shutdown()
        rc.shutdown()
