"""A site whose nodes sit on Ray nodes of their own (as on a real cluster: the agent on one,
a node's runner on another). When one of those Ray nodes dies, the site's executor takes its
node down once Ray's GCS holds it dead (``agents/cluster/ray_nodes.py``), long before the
runner's call timeout -- meanwhile the site offered the dead node's resources and new work was
placed there (a probe: 20-50 s). On a real local multi-node Ray, the GCS's health checks as
``agora up`` sets them."""

from __future__ import annotations

import asyncio
import time

import pytest
import ray

from agora.agents.cluster.node_runner import node_resource
from agora.agents.cluster.runner_fleet import start_runners
from agora.agents.cluster.ray_executor import RayExecutor
from agora.agents.domain import Cluster, Node, Site
from agora.agents.ledger import Ledger
from agora.deploy.ray_runtime import NODE_HEALTH_CHECKS

NS = "agora-test-node-death"


@pytest.mark.timeout(150)
def test_a_dead_ray_node_is_taken_down_before_its_runners_call_timeout(tmp_path):
    from ray.cluster_utils import Cluster as RayCluster

    rc = RayCluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {node_resource("a/n0"): 1}, "include_dashboard": False,
        "_system_config": dict(NODE_HEALTH_CHECKS)})
    worker = rc.add_node(num_cpus=1, resources={node_resource("a/n1"): 1})
    try:
        rc.wait_for_nodes()
        ray.init(address=rc.address, namespace=NS, log_to_driver=False)
        start_runners({"a/n0": 0, "a/n1": 0}, str(tmp_path), NS)
        cluster = Cluster(sites=(Site("a", (Node("a/n0", "a", cpu=1000, mem=512),
                                            Node("a/n1", "a", cpu=1000, mem=512))),))

        async def main() -> float:
            ex = RayExecutor(cluster=cluster, site=0, namespace=NS, call_timeout_s=60.0,
                             restart_grace_s=60.0)
            await ex.recover([], Ledger(max_attempts=2))
            assert sorted(ex.take_node_changes()) == [("a/n0", True), ("a/n1", True)]
            t0 = time.monotonic()
            rc.remove_node(worker, allow_graceful=False)       # SIGKILL: raylet and all
            while 1 not in ex.down and time.monotonic() - t0 < 45:
                await asyncio.sleep(0.2)
            took = time.monotonic() - t0
            for t in ex._tasks:
                t.cancel()
            assert ex.down == {1}, f"the node was not taken down within {took:.0f} s"
            assert ex.take_node_changes() == [("a/n1", False)]
            assert not ex.capacity.alive[1] and ex.capacity.alive[0]
            return took

        print(f"node down {asyncio.run(main()):.1f} s after its Ray node died")
    finally:
        ray.shutdown()
        rc.shutdown()
