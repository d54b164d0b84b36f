"""The Ray executor: a site agent's ``Executor`` for real work.

The instances the committed schedule places on this site's nodes run under the nodes'
runners (``node_runner``: one detached Ray actor per Agora node, which runs each instance as
a Ray task pinned to its node). This side, in the agent's process, asks the runners to start
and kill runs, long-polls each runner for ends, and keeps the site's free resources (what the
policy observes) as the runs start and end.

- An end is reported to the agent (completed, failed with its exit code, or lost), then
  acknowledged to the runner once the committed schedule has it (the instance's placement is
  no longer that run): a restarted agent finds ends it had not reported yet.
- A runner that does not answer (its Ray node died), or whose Ray node the GCS holds dead
  (``ray_nodes``: read every ``node_check_s``, it knows sooner), takes its node down: what
  ran there is reported lost (placed again elsewhere) and the node down; when a runner
  answers again (Ray restarted it on the node's replacement) the node is reported up. A
  runner whose process died (the call fails at once rather than timing out) is given
  ``restart_grace_s`` to come back first: Ray restarts it on a live node within seconds, and
  the restarted runner reports what its predecessor ran -- completed, failed, or lost when
  it was cut off. Taking the node down at once reported an instance that had just completed
  lost, and it ran again (a probe: 3 of 4 kills of a runner within 7 ms of an end).
- At a (re)start (``recover``) it takes over what the runners still run, starts what
  the committed schedule placed here but no runner ever started (an agent that died between
  a commit and the start), and reports up every node whose runner answers.

Times are wall-clock seconds (``time.time()``): the live system's workload clock. The calls
to the runners are followed in ``runner_calls``, the runners themselves in ``runner_watch``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from agora.agents.cluster.instance_run import RunEnd, RunRequest
from agora.agents.cluster.node_runner import node_resource
from agora.agents.cluster.ray_nodes import carried_resources, dead_ray_nodes, watch_ray_nodes
from agora.agents.cluster.runner_calls import RunnerCalls
from agora.agents.cluster.runner_watch import RunnerWatch
from agora.agents.domain import MILLI, Cluster
from agora.agents.ledger import Ledger, TaskEntry
from agora.agents.sim.capacity import Capacity
from agora.agents.step.reports import ReportQueue
from agora.agents.step.seams import Ended

log = logging.getLogger(__name__)

Key = tuple[str, str, int]


@dataclass
class _Run:
    task: TaskEntry
    instance: int
    node: int
    run_id: int
    slots: tuple | None
    """gpu slots taken in ``capacity`` (None: not counted, it did not fit this view)"""
    report_kill: bool | None = None
    """None: not being killed; else whether its killed end is reported (lost)"""
    confirmed: bool = False
    """its runner answered a start of it or holds it (a snapshot): an end will come"""


@dataclass(frozen=True)
class RayExecutorSpec:
    """The factory a site agent builds its executor from (``AgentSpec.executor``)."""

    namespace: str = "agora"
    poll_s: float = 5.0
    call_timeout_s: float = 20.0
    restart_grace_s: float = 10.0
    node_check_s: float = 1.0
    """how often the GCS's node table is read for the runners' Ray nodes (``ray_nodes``;
    0: never, a dead node is noticed by its runner's timeouts alone)"""

    def build(self, cluster: Cluster, site: int, wake) -> "RayExecutor":
        return RayExecutor(cluster=cluster, site=site, namespace=self.namespace, wake=wake,
                           poll_s=self.poll_s, call_timeout_s=self.call_timeout_s,
                           restart_grace_s=self.restart_grace_s,
                           node_check_s=self.node_check_s)


class RayExecutor(RunnerCalls, RunnerWatch, ReportQueue):
    def __init__(self, *, cluster: Cluster, site: int, namespace: str, wake=lambda: None,
                 poll_s: float = 5.0, call_timeout_s: float = 20.0,
                 restart_grace_s: float = 10.0, node_check_s: float = 1.0) -> None:
        super().__init__(wake)
        self.cluster, self.site, self.namespace = cluster, site, namespace
        self.site_name = cluster.sites[site].name
        self.capacity = Capacity(cluster)
        sl = self.capacity.site_slice[site]
        self.own = {i: self.capacity.node_names[i] for i in range(sl.start, sl.stop)}
        self.poll_s, self.call_timeout_s = poll_s, call_timeout_s
        self.restart_grace_s, self.node_check_s = restart_grace_s, node_check_s
        self.ray_node: dict[int, str] = {}
        """node -> the Ray node its runner last said it runs on"""
        self.dead_ray_nodes: set[str] = set()
        """Ray nodes the GCS said are dead (a runner's answer from one does not bring its
        node up: a runner outlives its raylet by up to a second)"""
        self.read_dead = dead_ray_nodes
        """reads the dead Ray nodes' ids (the GCS's node table; a unit test's fake)"""
        self.read_carried = carried_resources
        """reads the resources live Ray nodes carry (the GCS's node table; a unit test's
        fake)"""
        self._failing: dict[int, float] = {}
        """node -> when its runner's calls began to fail at once (it may be restarting)"""
        self.runners: dict[int, object] = {}
        self._runs: dict[Key, _Run] = {}
        self._cursor: dict[int, tuple[str, int]] = {}
        """node -> (runner incarnation, last end seq seen)"""
        self._to_ack: dict[int, dict[int, tuple[Key, int]]] = {}
        """node -> {end seq: (key, run_id)} reported, acknowledged once committed"""
        self.down: set[int] = set()
        self.ledger: Ledger | None = None
        self._tasks: list[asyncio.Task] = []
        self.counts = {"started": 0, "ended": 0, "killed": 0, "adopted": 0,
                       "restarted_unstarted": 0, "node_down": 0}

    # ---- the seam ------------------------------------------------------------------------
    def now(self) -> float:
        return time.time()

    async def ready(self) -> None:
        """The runners were found in ``recover``."""

    async def recover(self, placed: list[tuple[TaskEntry, int, int]], ledger: Ledger) -> None:
        self.ledger = ledger
        # each run as the ledger placed it when read: the committed updates applied while this
        # awaits the runners may end it or place it anew (see the last loop)
        want = {(ts.job.job.id, ts.task.id, i): (ts, i, node, ts.placed_at.get(i, 0))
                for ts, i, node in placed}
        homeless = await self._homeless()
        for node in homeless:
            log.warning("site %s: no live Ray node carries node %s (resource %r): node down "
                        "until one does", self.site_name, self.own[node],
                        node_resource(self.own[node]))
            self._node_down(node, "no live Ray node carries it")
        asked = [n for n in self.own if n not in homeless]
        snaps = await asyncio.gather(*(self._snapshot(n) for n in asked))
        for node, snap in zip(asked, snaps):
            if snap is None:
                continue
            # its runner answers: the node is up, whatever the committed schedule says -- a
            # node taken down before this agent (re)started stayed down for good, its new
            # runner idle beside open work (a probe: five restarts of agora up)
            self.report_node(self.own[node], True)
            # each against the ledger as it is now, not as it was read: an update applied
            # meanwhile may have placed it here (a read from lagging replicas did not; its
            # run was killed, then "started" while dying, and ran in the schedule for good:
            # a review)
            for req, _start in snap["running"]:
                ts = self._placed(req.key, node, req.run_id)
                if ts is not None:
                    self._adopt(ts, req.instance, node, req.run_id)
                    self._runs[req.key].confirmed = True
                else:       # not (or no longer) this run's place: stop it, unreported
                    self._call(node, "kill", *req.key, req.run_id, "not placed here")
            for end in snap["ended"]:
                ts = self._placed(end.key, node, end.run_id)
                if ts is not None:
                    self._adopt(ts, end.instance, node, end.run_id)   # its end: by ``ends``
                    self._runs[end.key].confirmed = True
        for key, (ts, i, node, run_id) in want.items():
            if (key not in self._runs and node not in self.down
                    and self._placed(key, node, run_id) is not None):
                # still this run, here (one that completed while the runners were asked,
                # or was placed anew, ran again: a review)
                self.start(ts, i, node)
                self.counts["restarted_unstarted"] += 1
        loop = asyncio.get_running_loop()
        # beside the start and kill calls made above (dropped, they could be collected
        # mid-call: the loop holds tasks weakly; a review)
        self._tasks += [loop.create_task(self._poll(n), name=f"runner-{self.own[n]}")
                        for n in self.own]
        if self.node_check_s > 0:
            self._tasks.append(loop.create_task(watch_ray_nodes(
                self.node_check_s, lambda: {n: r for n, r in self.ray_node.items()
                                            if n not in self.down}, self._ray_node_dead,
                self.read_dead),
                name=f"ray-nodes-{self.site_name}"))

    def _placed(self, key: Key, node: int, run_id: int) -> TaskEntry | None:
        """The task of ``key`` if the ledger places it on ``node`` as run ``run_id`` now."""
        ts = self.ledger.tasks.get(key[:2])
        if ts is None:
            return None
        at = ts.placements.get(key[2])
        return ts if at is not None and at[0] == node and ts.placed_at.get(key[2]) == run_id \
            else None

    def start(self, task: TaskEntry, instance: int, node: int) -> None:
        key = (task.job.job.id, task.task.id, instance)
        run_id = task.placed_at.get(instance, 0)
        old = self._runs.get(key)
        if old is not None:
            if old.run_id == run_id:
                return                                  # already running here
            # the older run is killed unreported and forgotten: the new one is the run of
            # this key (a probe: it stayed, the new run was never adopted, and the new
            # run's end was dropped as "not ours" -- the instance ran on in the ledger)
            self.kill(key, "placed again", report=False)
            del self._runs[key]
            self._release(old)
        if node in self.down or node not in self.runners:
            now = self.now()
            self.report_end(Ended(*key, kind="lost", start_s=now, end_s=now,
                                  reason=f"node {self.capacity.node_names[node]} is down",
                                  run_id=run_id))
            return
        run = task.task.run
        if run is None:
            now = self.now()
            self.report_end(Ended(*key, kind="failed", start_s=now, end_s=now, exit_code=-1,
                                  reason="the task has no run (nothing to execute)",
                                  run_id=run_id))
            return
        d = task.demand
        req = RunRequest(job=key[0], task=key[1], instance=instance, run_id=run_id,
                         attempt=task.failures.get(instance, 0) + 1, argv=run.argv,
                         env=run.env, cwd=run.cwd, timeout_s=run.timeout_s,
                         cpu=d.cpu / MILLI, mem_mib=d.mem, gpus=d.gpu / MILLI,
                         site=self.site_name, node=self.own[node])
        self._adopt(task, instance, node, run_id)
        self.counts["started"] += 1
        self._call(node, "start", req)

    def running(self) -> set[Key]:
        return set(self._runs)

    def kill(self, key: Key, reason: str, *, report: bool) -> None:
        r = self._runs.get(key)
        if r is None or r.report_kill is not None:
            return
        r.report_kill = report
        self.counts["killed"] += 1
        self._call(r.node, "kill", *key, r.run_id, reason)

    def lose(self, key: Key, reason: str, run_id: int = 0) -> None:
        now = self.now()
        self.report_end(Ended(*key, kind="lost", start_s=now, end_s=now, reason=reason,
                              run_id=run_id))

    def close(self) -> None:
        """Stop following the runners; what they run goes on (they are detached)."""
        for t in self._tasks:
            t.cancel()

    # ---- inside ---------------------------------------------------------------------------
    def _adopt(self, task: TaskEntry, instance: int, node: int, run_id: int) -> None:
        key = (task.job.job.id, task.task.id, instance)
        if key in self._runs:
            return
        cap, d = self.capacity, task.demand
        slots = cap.place(node, d) if cap.fit_mask(d, slice(node, node + 1))[0] else None
        self._runs[key] = _Run(task, instance, node, run_id, slots)
        self.counts["adopted"] += 1

    def _on_end(self, node: int, e: RunEnd) -> None:
        acks = self._to_ack.setdefault(node, {})
        r = self._runs.get(e.key)
        if r is None or r.run_id != e.run_id or r.node != node:
            # not ours (any more): forgotten once the committed schedule no longer places
            # that run -- at once for an older run; for one reported already and not yet
            # committed (a runner restarted meanwhile and sent it again), only once its
            # report commits: acknowledged before, a restart of this agent then found it
            # nowhere and the instance ran in the schedule for good (a review)
            acks[e.seq] = (e.key, e.run_id)
            return
        del self._runs[e.key]
        self._release(r)
        self.counts["ended"] += 1
        acks[e.seq] = (e.key, e.run_id)
        if e.kind == "killed" and r.report_kill is False:
            return
        # a kill this executor did not ask for (a run the runner stopped as it recovered)
        # is lost, placed again: dropped, the instance ran in the schedule for good
        kind = e.kind if e.kind in ("completed", "failed") else "lost"
        if r.report_kill:
            kind = "lost"
        self.report_end(Ended(*e.key, kind=kind, start_s=e.start, end_s=e.end,
                              exit_code=e.exit_code, reason=e.reason, run_id=e.run_id))

    def _ack_committed(self, node: int) -> None:
        """Acknowledge the ends the committed schedule has (the run is no longer placed)."""
        acks = self._to_ack.get(node)
        if not acks or self.ledger is None:
            return
        done = []
        for seq, (key, run_id) in acks.items():
            ts = self.ledger.tasks.get(key[:2])
            if run_id < 0 or ts is None or ts.placed_at.get(key[2]) != run_id:
                done.append((seq, *key, run_id))
        for item in done:
            del acks[item[0]]
        if done:    # each end by its seq and its run: a restarted runner numbers from 1 again
            self._call(node, "ack", done)

    def _release(self, r: _Run) -> None:
        if r.slots is not None:
            self.capacity.release(r.node, r.task.demand, r.slots)

    def _node_down(self, node: int, reason: str) -> None:
        if node in self.down:
            return
        self.down.add(node)
        self.counts["node_down"] += 1
        self.capacity.set_alive(node, False)
        name = self.own[node]
        for key, r in list(self._runs.items()):
            if r.node == node:
                del self._runs[key]
                self._release(r)
                now = self.now()
                self.report_end(Ended(*key, kind="lost", start_s=now, end_s=now,
                                      reason=f"node {name}: {reason}", run_id=r.run_id))
        self.report_node(name, False)
