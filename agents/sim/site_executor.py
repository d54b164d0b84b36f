"""A simulated site: the ``Executor`` of one site agent in replay mode.

The site's nodes are modelled as the simulator models them (``Capacity``: cpu, memory and
per-device gpus), its instances run for their stated duration on the *workload clock* --
wall time since the replay began, times ``speed`` -- with the simulator's keyed fault draws
(``engine.fault_draws``: the same failures and overruns as ``agora simulate``), and the
cluster file's outages of its own nodes happen on that clock: a node that goes down loses
what runs on it (reported ``lost``, requeued without counting an attempt) and comes back at
``until``. Everything runs on the agent's event loop.

This is what lets the cluster engine run thousands of sites on one machine; the Ray executor
(real commands on the node the coordinator chose) is the same seam.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

from agora.agents.domain import Cluster
from agora.agents.ledger import TaskEntry
from agora.agents.sim.capacity import Capacity
from agora.agents.sim.engine import fault_draws
from agora.agents.step.reports import ReportQueue
from agora.agents.step.seams import Ended


@dataclass(frozen=True)
class ReplayClock:
    """Workload time = ``t0_sim + (wall - t0_wall) * speed`` (``time.time()``, shared by every
    process of a replay on one machine or NTP-synced machines)."""

    t0_wall: float
    t0_sim: float
    speed: float

    def now(self) -> float:
        return self.t0_sim + (time.time() - self.t0_wall) * self.speed

    def wall_delay(self, until_sim: float) -> float:
        return max(0.0, (until_sim - self.now()) / self.speed)


@dataclass
class _Run:
    task: TaskEntry
    instance: int
    node: int
    slots: tuple
    start: float
    handle: asyncio.TimerHandle | None
    run_id: int = 0
    """the version that placed it (``TaskEntry.placed_at``): the run its end names"""


class ReplayExecutor(ReportQueue):
    """Site ``site`` of ``cluster`` simulated on ``clock``; ``wake()`` is called whenever an
    instance ends or a node changes (the agent then reports it). ``clock`` may come later
    (``set_clock``): nothing runs before the replay's clock starts."""

    def __init__(self, *, cluster: Cluster, site: int, clock: ReplayClock | None = None,
                 wake: Callable[[], None] = lambda: None) -> None:
        super().__init__(wake)
        self.cluster = cluster
        self.site = site
        self.clock = clock
        self.capacity = Capacity(cluster)
        self.site_name = cluster.sites[site].name
        self._runs: dict[tuple[str, str, int], _Run] = {}
        self.record: list[tuple[str, str, int, str, float, float, str]] = []
        """every run: (job, task, instance, node, start, end, outcome)"""
        self._down_count: dict[int, int] = {}
        self._timers: list[asyncio.TimerHandle] = []

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else 0.0

    async def ready(self) -> None:
        """Returns once the clock runs (a subclass may wait for it); outages are scheduled
        then."""
        self.start_outages()

    def set_clock(self, clock: ReplayClock) -> None:
        self.clock = clock

    def start_outages(self) -> None:
        """Schedule the cluster file's outages of this site's nodes."""
        cap, sl = self.capacity, self.capacity.site_slice[self.site]
        loop = asyncio.get_running_loop()
        for o in self.cluster.faults.outages:
            if o.node is not None:
                nodes = [cap.node_names.index(o.node)]
                if not sl.start <= nodes[0] < sl.stop:
                    continue
            elif o.site == self.site_name:
                nodes = list(range(sl.start, sl.stop))
            else:
                continue
            self._timers.append(loop.call_later(self.clock.wall_delay(o.at), self._down, nodes))
            if o.until is not None:
                self._timers.append(loop.call_later(self.clock.wall_delay(o.until), self._up,
                                                    nodes))

    # ---- the seam ----------------------------------------------------------------------
    def start(self, task: TaskEntry, instance: int, node: int) -> None:
        key = (task.job.job.id, task.task.id, instance)
        if key in self._runs:
            return                                  # already running here
        cap = self.capacity
        now = self.now()
        if not cap.alive[node] or not cap.fit_mask(task.demand, slice(node, node + 1))[0]:
            # the coordinator placed it where this site has no room (a node that just went
            # down): it ends at once as lost and is placed again
            self.report_end(Ended(*key, kind="lost", start_s=now, end_s=now,
                                  reason=f"node {cap.node_names[node]} cannot hold it now",
                                  run_id=task.placed_at.get(instance, 0)))
            return
        slots = cap.place(node, task.demand)
        transfer = 0.0
        origin = task.job.job.origin
        if origin != self.site_name:
            transfer = self.cluster.link(origin, self.site_name).transfer_s(task.task.data_mb)
        run, fails, fail_at = fault_draws(self.cluster.faults, task, instance)
        end = now + transfer + (run * fail_at if fails else run)
        handle = asyncio.get_running_loop().call_later(
            self.clock.wall_delay(end), self._finish, key, "failed" if fails else "completed")
        self._runs[key] = _Run(task, instance, node, slots, now, handle,
                               task.placed_at.get(instance, 0))

    async def recover(self, placed, ledger) -> None:
        """Nothing to recover: simulated runs live in the agent's process and died with a
        restarted agent (the agent reports them lost)."""

    def running(self) -> set[tuple[str, str, int]]:
        return set(self._runs)

    def lose(self, key: tuple[str, str, int], reason: str, run_id: int = 0) -> None:
        """Report an instance the schedule says runs here that this executor does not hold
        (it was lost with a restarted agent): lost, to be placed again."""
        now = self.now()
        self._ended.append(Ended(*key, kind="lost", start_s=now, end_s=now, reason=reason,
                                 run_id=run_id))

    def kill(self, key: tuple[str, str, int], reason: str, *, report: bool) -> None:
        """Stop a run (a cancel, or the coordinator no longer places it here)."""
        r = self._runs.pop(key, None)
        if r is None:
            return
        if r.handle is not None:
            r.handle.cancel()
        self._release(r, "killed", reason, report=report)

    def close(self) -> None:
        for r in self._runs.values():
            if r.handle is not None:
                r.handle.cancel()
        for t in self._timers:
            t.cancel()

    # ---- events ------------------------------------------------------------------------
    def _finish(self, key: tuple[str, str, int], outcome: str) -> None:
        r = self._runs.pop(key, None)
        if r is not None:
            self._release(r, outcome, "instance failed" if outcome == "failed" else "",
                          report=True)

    def _release(self, r: _Run, outcome: str, reason: str, *, report: bool) -> None:
        now = max(self.now(), r.start)
        self.capacity.release(r.node, r.task.demand, r.slots)
        node = self.capacity.node_names[r.node]
        self.record.append((r.task.job.job.id, r.task.task.id, r.instance, node, r.start,
                            now, outcome))
        if report:
            kind = outcome if outcome in ("completed", "failed") else "lost"
            self.report_end(Ended(r.task.job.job.id, r.task.task.id, r.instance, kind,
                                  start_s=r.start, end_s=now, reason=reason,
                                  run_id=r.run_id))

    def _down(self, nodes: list[int]) -> None:
        for node in nodes:
            self._down_count[node] = self._down_count.get(node, 0) + 1
            if self._down_count[node] > 1:
                continue
            self.capacity.set_alive(node, False)
            name = self.capacity.node_names[node]
            for key, r in list(self._runs.items()):
                if r.node == node:
                    self.kill(key, f"node {name} went down", report=True)
            self.report_node(name, False)
        self.wake()

    def _up(self, nodes: list[int]) -> None:
        for node in nodes:
            self._down_count[node] -= 1
            if self._down_count[node] == 0:
                self.capacity.set_alive(node, True)
                self.report_node(self.capacity.node_names[node], True)
        self.wake()
