"""Starting and stopping a cluster's node runners (``node_runner``): one detached Ray actor
per Agora node, each on the Ray node that carries that Agora node's resource. Used by
``deploy.launch``."""

from __future__ import annotations

import ray

from agora.agents.cluster.node_runner import KEEP_RUNS, RayNodeRunner, node_resource, runner_name


def start_runners(nodes: dict[str, int], log_root: str, namespace: str,
                  run_as: str | None = None,
                  keep_runs: int = KEEP_RUNS) -> dict[str, object]:
    """A detached runner per Agora node of ``nodes`` (name -> Ray workers to warm up for it,
    e.g. its cores; an existing runner is reused), each on the Ray node carrying its
    ``node_resource``, starting runs as ``run_as`` (None: as itself) and keeping the folders
    of ``keep_runs`` ended runs (0: all); returns their handles."""
    out = {}
    for node, warm in nodes.items():
        out[node] = RayNodeRunner.options(
            name=runner_name(node), namespace=namespace, lifetime="detached",
            get_if_exists=True, num_cpus=0, resources={node_resource(node): 0.001},
            max_restarts=-1, max_concurrency=1000).remote(node, log_root, warm, run_as,
                                                          keep_runs)
    return out


def stop_runners(nodes: list[str], namespace: str, timeout_s: float = 15.0) -> None:
    """Stop the runners of ``nodes``: each kills what it runs (``NodeRunner.shutdown``,
    ``timeout_s`` at most for all), then the runner itself is killed."""
    handles = []
    for node in nodes:
        try:
            handles.append(ray.get_actor(runner_name(node), namespace=namespace))
        except ValueError:
            pass
    if handles:
        ray.wait([h.shutdown.remote() for h in handles], num_returns=len(handles),
                 timeout=timeout_s)
    for h in handles:
        ray.kill(h, no_restart=True)
