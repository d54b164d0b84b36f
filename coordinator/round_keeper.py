"""What one replica watches with its own clock, outside the ordered log: site heartbeats,
rounds that wait too long, and how long decisions take. It acts only by *voting* -- an
ordered request of its own client ``replica:<i>`` -- so the state machine stays a pure
function of the log, and no single replica (nor any site) can close a round or lapse a
site: the state machine acts on f+1 distinct votes.

- **Round timeout.** Round r is armed and at least one site has decided for it, but it has
  not closed within ``round_timeout_s`` of the first decision this replica executed: vote
  ``CloseRound(r)``. A primary that withholds the votes (or any request) is replaced by a
  view change: the votes go to every replica, whose request timers then run.
- **Round grace** (``round_grace_s``, off by default). A round waits for every expected
  site, so it lasts as long as its slowest agent (a stall, a busy node, a far link). Once
  more than half of the expected sites have decided, the rest get ``round_grace_s`` more;
  then this replica votes ``CloseRound(r)`` too. A late site loses
  nothing: its decision is refused as stale and it decides again for the next round, where
  the work that was not allocated is still open. A site that is steadily slower than the
  others by less than the grace is never left out.
- **Silent sites** (this and the next: ``site_lapses.SiteLapses``, the keeper's mixin). A
  site that owes the system something (it runs instances, or it is expected to decide in
  an armed round) and whose heartbeats (``Heartbeat``, unordered,
  signed by the site) have not reached this replica for ``site_timeout_s`` (one never heard
  since this replica started: for the longer of that and ``site_start_grace_s``): vote
  ``SiteLapsed(site, last_heard)``; heard again, take the vote back (``withdraw``).
- **Overdue instances.** A site holding an instance longer than its task's ``timeout_s``
  allows (``overdue_s``, from when this replica executed its allocation) is voted lapsed
  too, heartbeats or not: its node's runner kills a run at ``timeout_s`` and the site
  reports the end, so one that holds it longer is stuck or faulty. An allocation executed
  before this replica's restart or state transfer counts from when the replica first saw
  it running.
- **Decision latency**: for each allocation this replica executes, the wall time from the
  later of (its task opening, its round arming) to the execution of the command that
  allocated it -- "work open -> allocation committed and queryable", as this replica saw it.
  Beside it, the latency *from ready*: from the later of the task opening and the first
  command after which its round was armed with some site able to hold open work
  (``expected_sites``), as the replicated schedule showed it. At high load work opens while
  every site is full, and the first measure then counts the wait for capacity -- queueing,
  which no scheduler's speed shortens -- where this one counts the wait while there was
  room. Room that came with the very command that closed the round (a site's end report
  carrying its bid for the room it freed, the usual case when every site is full) counts 0:
  the site's own reaction and the ordering of that part (~20 ms here) are not seen by a
  replica. It still counts a large task's wait for a hole while smaller work could go.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque

from agora.agents.aio import cancel_and_wait
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.site_lapses import SiteLapses
from agora.protos.agora.v1 import coordinator_pb2 as pb

log = logging.getLogger(__name__)

LATENCY_SAMPLES = 20_000
"""decision latencies kept (the most recent) for the status percentiles"""


class RoundKeeper(SiteLapses):
    """Replica ``index``'s clock-driven duties over ``app`` (see the module docstring).
    ``vote(kind, message)`` sends one vote as this replica's client (async)."""

    def __init__(self, *, app: ScheduleState, index: int, client_verify,
                 round_timeout_s: float, site_timeout_s: float, vote,
                 round_grace_s: float = 0.0, site_start_grace_s: float = 0.0) -> None:
        self.app = app
        self.index = index
        self.round_timeout_s = round_timeout_s
        self.round_grace_s = round_grace_s
        self.site_timeout_s = site_timeout_s
        self.site_start_grace_s = site_start_grace_s
        self.vote = vote
        self._verify = client_verify
        """the replica's ``pbft.auth.ClientKeys``: a site's key as the executed log gives it"""
        self._last_ts: dict[str, int] = {}
        self.started = time.monotonic()
        self.heard: dict[str, float] = {}
        self._last_check: float | None = None
        """when ``_vote_lapses`` last ran (``SiteLapses._discount_stall``)"""
        """site -> monotonic time of its last heartbeat here"""
        self._first_part: tuple[int, float] | None = None
        self._quorum: tuple[int, float] | None = None
        """(round, when more than half of its expected sites had decided, here)"""
        self._decided_seen = (-1, -1)
        self._due = asyncio.Event()
        app.after_command.append(self.command_executed)
        self._next_overdue = 0.0
        self._voted_round: tuple[int, float] = (-1, 0.0)
        """(the round this replica last voted to close, when)"""
        self._voted_lapse: dict[str, tuple[int, float]] = {}
        """site -> (its ``last_heard`` this replica voted it lapsed at, when)"""
        self._withdrawn: dict[str, float] = {}
        """site -> when this replica last sent the withdrawal of its lapse vote"""
        self._overdue_now: dict[str, str] = {}
        """``_overdue``'s last answer (it looks every ``OVERDUE_EVERY_S``)"""
        self.exec_time: dict[int, float] = {}
        self._first_seen: dict[tuple, float] = {}
        """(task, instance, version) -> when ``_overdue`` first saw it running without its
        version's execution time (pruned, or executed before a restart or state transfer)"""
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.ready_latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._ready: tuple[int, float] = (-1, 0.0)
        """(round, when it was first armed with an expected site, here)"""
        self.votes_sent = 0
        self.grace_votes = 0
        """close votes sent because a round's grace ran out (before its timeout)"""
        self._task: asyncio.Task | None = None
        self._in_flight: set[asyncio.Task] = set()
        self.trace: list[tuple[int, float, int, int]] | None = [] if os.environ.get(
            "AGORA_TRACE") else None
        """(version, wall time, round, allocations) of each executed update when AGORA_TRACE
        is set (written beside the replica's log on a clean stop)"""

    # ---- executed commands -------------------------------------------------------------
    def executed(self, update: pb.ScheduleUpdate) -> None:
        """Called with every update the state machine publishes (on the replica's loop)."""
        now = time.monotonic()
        seq = update.version
        self.exec_time[seq] = now
        if self.trace is not None:
            self.trace.append((seq, time.time(), update.round.round, len(update.allocations)))
        if len(self.exec_time) > 4 * LATENCY_SAMPLES:
            for v in sorted(self.exec_time)[:LATENCY_SAMPLES]:
                del self.exec_time[v]
        app = self.app
        for a in update.allocations:
            opened = app.opened_seq.get((a.job_id, a.task_id), 0)
            since = max(opened, app.closed_round_armed_seq)
            t0 = self.exec_time.get(since)
            if t0 is not None:
                self.latencies.append(now - t0)
                # no mark: room came with the command that closed the round (a site's end
                # report carrying its bid), so nothing waited here while it was there
                ready = self._ready[1] if self._ready[0] == a.round else now
                self.ready_latencies.append(now - max(t0, ready))

    def command_executed(self) -> None:
        """After every executed command: when the current round was first armed with an
        expected site (the latency from ready), when it got its first decision, and when more
        than half of its expected sites had decided (``round_grace_s``)."""
        app = self.app
        if not app.armed:
            return
        now = time.monotonic()
        if self._ready[0] != app.round and app.expected_sites():   # cached by its inputs
            self._ready = (app.round, now)
        if not app.parts:
            return
        if self._first_part is None or self._first_part[0] != app.round:
            self._first_part = (app.round, now)
        if self.round_grace_s > 0:
            self._note_quorum(now)

    def _note_quorum(self, now: float) -> None:
        """Record when more than half of the current round's expected sites had decided
        (counted again only when the number of decided sites changed); wake the check."""
        app = self.app
        if self._quorum is not None and self._quorum[0] == app.round:
            return
        decided = len(app.decided())
        if (app.round, decided) == self._decided_seen:
            return
        self._decided_seen = (app.round, decided)
        if decided * 2 > len(app.expected_sites()):
            self._quorum = (app.round, now)
            self._due.set()

    def next_due(self, now: float) -> float | None:
        """Seconds until this replica's next round vote falls due (None: none pending)."""
        app = self.app
        if not (app.armed and app.parts):
            return None
        if self._voted_round[0] == app.round:
            if self.index in app.close_votes:
                return None
            # voted, and the vote is not in the executed state (refused, dropped, or lost
            # to this replica's next request): again, after as long (a review: it was never
            # sent again, and a round that waits on a silent site stayed open)
            return max(0.0, self._voted_round[1] + self.round_timeout_s - now)
        due = []
        if self._first_part is not None and self._first_part[0] == app.round:
            due.append(self._first_part[1] + self.round_timeout_s)
        if self.round_grace_s > 0 and self._quorum is not None and \
                self._quorum[0] == app.round:
            due.append(self._quorum[1] + self.round_grace_s)
        return max(0.0, min(due) - now) if due else None

    def latency_ms(self, ready: bool = False) -> tuple[float, float, int]:
        """(p50, p99, samples) of the decision latencies kept (``ready``: from ready), in
        milliseconds."""
        kept = self.ready_latencies if ready else self.latencies
        if not kept:
            return 0.0, 0.0, 0
        xs = sorted(kept)
        pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0  # noqa: E731
        return pick(0.5), pick(0.99), len(xs)

    # ---- the periodic check ------------------------------------------------------------
    def start(self, period_s: float = 0.25) -> None:
        self._task = asyncio.create_task(self._run(period_s), name=f"keeper-{self.index}")

    async def close(self) -> None:
        await cancel_and_wait([self._task, *self._in_flight])

    async def _run(self, period_s: float) -> None:
        """Check every ``period_s``, and at once when a round vote falls due sooner."""
        while True:
            self._due.clear()
            due = self.next_due(time.monotonic())
            wait = period_s if due is None else min(period_s, due)
            try:
                await asyncio.wait_for(self._due.wait(), wait)
            except asyncio.TimeoutError:
                pass
            try:
                await self.check(time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed vote is retried at the next check
                log.exception("replica %d: round keeper check failed", self.index)

    async def check(self, now: float) -> None:
        app = self.app
        if app.armed and app.parts:
            if self._first_part is None or self._first_part[0] != app.round:
                self._first_part = (app.round, now)   # a state transfer ran no command
            due = self.next_due(now)
            if due is not None and due <= 0:
                self._voted_round = (app.round, now)
                log.info("replica %d: round %d waited %.2f s since its first decision; "
                         "voting to close it", self.index, app.round,
                         now - self._first_part[1])
                self.grace_votes += (now - self._first_part[1] < self.round_timeout_s)
                await self._send("close_round", pb.CloseRound(round=app.round))
        await self._vote_lapses(now)

    async def _send(self, kind: str, msg) -> None:
        """Send a vote without holding up the checks (it is ordered like any request)."""
        self.votes_sent += 1
        task = asyncio.create_task(self._deliver(kind, msg))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _deliver(self, kind: str, msg) -> None:
        try:
            await self.vote(kind, msg)
        except Exception as e:  # noqa: BLE001 - a vote that did not get through is retried
            log.info("replica %d: %s vote not confirmed: %s", self.index, kind, e)
