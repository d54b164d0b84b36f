"""How a site's Ray executor follows its nodes' runners (``RunnerWatch``, a part of
``RayExecutor``): each runner is long-polled for ends; a runner that does not answer, or
whose Ray node the GCS holds dead, takes its node down (what ran there is reported lost),
and one that answers again brings it up. See ``ray_executor`` for the whole story."""

from __future__ import annotations

import asyncio
import logging
import time

import ray
from ray.exceptions import ActorUnschedulableError, GetTimeoutError, RayActorError

from agora.agents.cluster.node_runner import node_resource, runner_name

log = logging.getLogger("agora.agents.cluster.ray_executor")


class RunnerWatch:
    """The runner-following half of ``RayExecutor`` (it holds the state: ``own``,
    ``runners``, ``down``, ``_cursor`` ...; this class adds no state of its own)."""

    async def _homeless(self) -> set[int]:
        """This site's nodes whose resource no live Ray node carries (their runners wait for
        one): taken down at once -- asking their runners waited the call timeout, and a
        start with such a node took 23-28 s instead of 9 (a probe). Their polls bring them
        up once a runner answers. Empty when the GCS cannot be read (the runners'
        timeouts decide then)."""
        try:
            carried = await asyncio.to_thread(self.read_carried)
        except Exception as e:  # noqa: BLE001 - the GCS away: ask every runner, as before
            log.warning("site %s: reading Ray's node table failed: %s", self.site_name, e)
            return set()
        return {n for n, name in self.own.items() if node_resource(name) not in carried}

    async def _runner(self, node: int):
        """``node``'s runner actor, looked up in Ray's GCS off the event loop and within the
        call timeout: a GCS that does not answer stalled the whole agent (a review)."""
        runner = self.runners.get(node)
        if runner is None:
            runner = await asyncio.wait_for(asyncio.to_thread(
                ray.get_actor, runner_name(self.own[node]), namespace=self.namespace),
                self.call_timeout_s)
            self.runners[node] = runner
        return runner

    async def _snapshot(self, node: int) -> dict | None:
        try:
            runner = await self._runner(node)
            snap = await asyncio.wait_for(runner.snapshot.remote(), self.call_timeout_s)
            self._cursor[node] = (snap["incarnation"], 0)
            self.ray_node[node] = snap["ray_node"]
            return snap
        except (ValueError, RayActorError, ActorUnschedulableError, GetTimeoutError,
                asyncio.TimeoutError) as e:
            log.warning("site %s: no runner for node %s (%s): node down", self.site_name,
                        self.own[node], e)
            self._node_down(node, "its runner does not answer")
            return None

    async def _poll(self, node: int) -> None:
        name = self.own[node]
        while True:
            try:
                runner = await self._runner(node)
                inc, after = self._cursor.get(node, ("", 0))
                got_inc, ends = await asyncio.wait_for(
                    runner.ends.remote(after, self.poll_s), self.poll_s + self.call_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a dead node, a restarting runner
                since = self._failing.setdefault(node, time.monotonic())
                if (node not in self.down and not isinstance(e, asyncio.TimeoutError)
                        and time.monotonic() - since < self.restart_grace_s):
                    await asyncio.sleep(1.0)      # its process died: Ray may restart it
                    continue
                if node not in self.down:
                    log.warning("site %s: runner of %s does not answer (%s): node down",
                                self.site_name, name, type(e).__name__)
                self._node_down(node, f"node {name}'s runner does not answer")
                await asyncio.sleep(1.0)
                continue
            self._failing.pop(node, None)
            if got_inc != inc:                  # a new runner: its ends start again at 1
                self._cursor[node] = (got_inc, 0)
                self._to_ack[node] = {}
                if inc:
                    continue
            if node in self.down and not await self._back_up(node):
                await asyncio.sleep(1.0)
                continue
            for e in ends:
                self._cursor[node] = (got_inc, max(self._cursor[node][1], e.seq))
                self._on_end(node, e)
            self._ack_committed(node)

    async def _back_up(self, node: int) -> bool:
        """A runner answers again after its node was taken down (its work was reported lost
        and placed again): unless it answers from a Ray node the GCS holds dead, the node is
        up again, and what the runner still runs is no longer this site's to run -- killed,
        unreported (a probe: a frozen runner's run went on beside its replacement)."""
        try:
            snap = await asyncio.wait_for(self.runners[node].snapshot.remote(),
                                          self.call_timeout_s)
        except Exception as e:  # noqa: BLE001 - the poll goes on; the next restart recovers
            log.warning("site %s: runner of %s: snapshot failed: %s", self.site_name,
                        self.own[node], e)
            return False
        if snap["ray_node"] in self.dead_ray_nodes:
            return False
        self.ray_node[node] = snap["ray_node"]
        self.down.discard(node)
        self.capacity.set_alive(node, True)
        self.report_node(self.own[node], True)
        for req, _start in snap["running"]:
            r = self._runs.get(req.key)
            if r is None or r.run_id != req.run_id or r.node != node:
                self._call(node, "kill", *req.key, req.run_id, "not placed here")
        return True

    def _ray_node_dead(self, node: int, ray_node: str) -> None:
        """The GCS holds the Ray node of ``node``'s runner dead (``ray_nodes``)."""
        self.dead_ray_nodes.add(ray_node)
        if node not in self.down:
            log.warning("site %s: Ray node %s of %s died: node down", self.site_name,
                        ray_node[:12], self.own[node])
            self._node_down(node, "its Ray node died")
