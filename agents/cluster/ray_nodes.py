"""Which Ray nodes Ray's GCS holds dead: the Ray executor's quick path to a node's death.

A runner whose Ray node died answers no call, and a call to it neither fails nor returns
until its timeout (the executor's ``call_timeout_s`` after a long poll of ``poll_s``): for
20-50 s the site offered the dead node's resources and the coordinator placed new work there
(a probe of ``agora up``, a raylet killed). The GCS knows sooner -- after its health checks of
the raylet fail ``health_check_failure_threshold`` times (``deploy/ray_runtime.py`` sets them
for the Ray it starts: ~8 s; Ray's defaults: ~16 s) -- so the executor reads the GCS's node
table every ``period_s`` and takes down each of its nodes whose runner's Ray node is dead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import ray

log = logging.getLogger(__name__)


def dead_ray_nodes() -> set[str]:
    """The ids of the Ray nodes the GCS holds dead (a blocking GCS call: run it off the loop)."""
    return {n["NodeID"] for n in ray.nodes() if not n.get("Alive", True)}


def carried_resources() -> set[str]:
    """The names of the resources some live Ray node carries (a blocking GCS call): an
    Agora node whose ``node_resource`` is not among them has nowhere for its runner."""
    return {r for n in ray.nodes() if n.get("Alive", False) for r in n.get("Resources", {})}


async def watch_ray_nodes(period_s: float, pinned: Callable[[], dict[int, str]],
                          on_dead: Callable[[int, str], None],
                          query: Callable[[], set[str]] = dead_ray_nodes) -> None:
    """Every ``period_s``: ``on_dead(node, ray_node)`` for each (node -> Ray node) of
    ``pinned()`` whose Ray node ``query()`` says is dead. A failed query is logged and tried
    again at the next period (the GCS may be restarting); runs until cancelled."""
    while True:
        await asyncio.sleep(period_s)
        where = pinned()
        if not where:
            continue
        try:
            dead = await asyncio.to_thread(query)
        except Exception as e:  # noqa: BLE001 - the GCS away: the runners' timeouts still hold
            log.warning("reading Ray's node table failed: %s", e)
            continue
        for node, ray_node in where.items():
            if ray_node in dead:
                on_dead(node, ray_node)
