"""Starting and stopping a cluster's node runners (``node_runner``): one detached Ray actor
per Agora node, each on the Ray node that carries that Agora node's resource. Used by
``deploy.launch``."""

from __future__ import annotations

import ray

from agora.agents.cluster.node_runner import KEEP_RUNS, RayNodeRunner, node_resource, runner_name
from agora.agents.cluster.ray_nodes import carried_resources


def start_runners(nodes: dict[str, int], log_root: str, namespace: str,
                  run_as: str | None = None,
                  keep_runs: int = KEEP_RUNS, niceness: int = 0) -> dict[str, object]:
    """A detached runner per Agora node of ``nodes`` (name -> Ray workers to warm up for it,
    e.g. its cores; an existing runner is reused), each on the Ray node carrying its
    ``node_resource``, starting runs as ``run_as`` (None: as itself) and keeping the folders
    of ``keep_runs`` ended runs (0: all), each run's command at ``niceness`` at least;
    returns their handles."""
    out = {}
    for node, warm in nodes.items():
        out[node] = RayNodeRunner.options(
            name=runner_name(node), namespace=namespace, lifetime="detached",
            get_if_exists=True, num_cpus=0, resources={node_resource(node): 0.001},
            max_restarts=-1, max_concurrency=1000).remote(node, log_root, warm, run_as,
                                                          keep_runs, niceness)
    return out


def stop_runners(nodes: list[str], namespace: str, timeout_s: float = 15.0,
                 carried=carried_resources) -> None:
    """Stop the runners of ``nodes``: each kills what it runs (``NodeRunner.shutdown``,
    ``timeout_s`` at most for all), then the runner itself is killed. A runner whose node's
    resource no live Ray node carries (``carried()``: its Ray node died, or never joined)
    has no process to answer: it is killed without waiting for it -- stopping with one
    such node took 16.5-20 s instead of 1.6 (a probe)."""
    handles = {}
    for node in nodes:
        try:
            handles[node] = ray.get_actor(runner_name(node), namespace=namespace)
        except ValueError:
            pass
    try:
        live = carried()
    except Exception:  # noqa: BLE001 - the GCS away: wait for every runner, as before
        live = None
    asked = [h for node, h in handles.items() if live is None or node_resource(node) in live]
    if asked:
        ray.wait([h.shutdown.remote() for h in asked], num_returns=len(asked),
                 timeout=timeout_s)
    for h in handles.values():
        ray.kill(h, no_restart=True)
