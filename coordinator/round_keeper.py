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
- **Silent sites.** A site that owes the system something (it runs instances, or it is
  expected to decide in an armed round) and whose heartbeats (``Heartbeat``, unordered,
  signed by the site) have not reached this replica for ``site_timeout_s`` (one never heard
  since this replica started: for the longer of that and ``site_start_grace_s``): vote
  ``SiteLapsed(site, last_heard)``.
- **Overdue instances.** A site holding an instance longer than its task's ``timeout_s``
  allows (``overdue_s``, from when this replica executed its allocation) is voted lapsed
  too, heartbeats or not: its node's runner kills a run at ``timeout_s`` and the site
  reports the end, so one that holds it longer is stuck or faulty.
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
import struct
import time
from collections import deque

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from agora.agents.aio import cancel_and_wait
from agora.coordinator.read_auth import WINDOW_MS
from agora.coordinator.schedule_rules import client_id_problem
from agora.coordinator.schedule_state import ScheduleState, site_of_client
from agora.protos.agora.v1 import coordinator_pb2 as pb

log = logging.getLogger(__name__)

HEARTBEAT_DOMAIN = b"agora.v1.Heartbeat"
OVERDUE_EVERY_S = 5.0
"""How often a replica looks for instances running past their timeout (a walk over the
running instances of tasks with a ``timeout_s``)."""


def overdue_s(timeout_s: float) -> float:
    """How long an instance of a task with ``timeout_s`` may run, as a replica sees it (from
    the execution of its allocation), before its site is voted lapsed: the timeout, a tenth
    more, and a minute for the site to start it and to report its end."""
    return timeout_s * 1.1 + 60.0


LATENCY_SAMPLES = 20_000
"""decision latencies kept (the most recent) for the status percentiles"""


def heartbeat_bytes(client_id: str, timestamp_us: int) -> bytes:
    return (HEARTBEAT_DOMAIN + b"\x00" + client_id.encode("utf-8", "surrogatepass") + b"\x00"
            + struct.pack("<q", timestamp_us))


def sign_heartbeat(signer: SigningKey, client_id: str,
                   timestamp_us: int) -> pb.HeartbeatRequest:
    sig = signer.sign(heartbeat_bytes(client_id, timestamp_us)).signature
    return pb.HeartbeatRequest(client_id=client_id, timestamp_us=timestamp_us, signature=sig)


class RoundKeeper:
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
        """site -> monotonic time of its last heartbeat here"""
        self._first_part: tuple[int, float] | None = None
        self._quorum: tuple[int, float] | None = None
        """(round, when more than half of its expected sites had decided, here)"""
        self._decided_seen = (-1, -1)
        self._due = asyncio.Event()
        app.after_command.append(self.command_executed)
        self._next_overdue = 0.0
        self._voted_round = -1
        self._voted_lapse: dict[str, tuple[int, float]] = {}
        self.exec_time: dict[int, float] = {}
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

    # ---- heartbeats (not ordered) ----------------------------------------------------
    def heartbeat(self, hb: pb.HeartbeatRequest) -> str | None:
        """Record a site's heartbeat; returns why it was refused, or None."""
        bad = client_id_problem(hb.client_id)
        if bad is not None:
            return f"client_id: {bad}"
        vk = (self._verify.get(hb.client_id) if site_of_client(hb.client_id) is not None
              else None)
        if vk is None:
            return (f"client_id: {hb.client_id!r} is not a site client of the key file nor an "
                    f"admitted site")
        if len(hb.signature) != 64:
            return "signature: expected 64 bytes (Ed25519)"
        now_us = time.time_ns() // 1000
        if abs(hb.timestamp_us - now_us) > WINDOW_MS * 1000:
            return (f"timestamp_us: {hb.timestamp_us} is {abs(hb.timestamp_us - now_us) // 1000} "
                    f"ms from this replica's clock; expected the sender's current time in "
                    f"microseconds, within {WINDOW_MS} ms (check the clock)")
        try:
            vk.verify(heartbeat_bytes(hb.client_id, hb.timestamp_us), hb.signature)
        except (BadSignatureError, ValueError):
            return f"signature: does not verify with the key of {hb.client_id!r}"
        if hb.timestamp_us <= self._last_ts.get(hb.client_id, 0):
            return "timestamp_us: not newer than the last heartbeat (a replay)"
        self._last_ts[hb.client_id] = hb.timestamp_us
        self.heard[site_of_client(hb.client_id)] = time.monotonic()
        return None

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
        if not (app.armed and app.parts) or self._voted_round == app.round:
            return None
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
                self._voted_round = app.round
                log.info("replica %d: round %d waited %.2f s since its first decision; "
                         "voting to close it", self.index, app.round,
                         now - self._first_part[1])
                self.grace_votes += (now - self._first_part[1] < self.round_timeout_s)
                await self._send("close_round", pb.CloseRound(round=app.round))
        overdue = self._overdue(now)
        for site in self._owing():
            info = app.sites[site]
            last = self.heard.get(site)
            if last is None:          # not heard since this replica started
                last = self.started + max(0.0, self.site_start_grace_s - self.site_timeout_s)
            if now - last < self.site_timeout_s and site not in overdue:
                continue
            prev = self._voted_lapse.get(site)
            if prev is not None and prev[0] == info.last_heard and \
                    now - prev[1] < self.site_timeout_s:
                continue
            self._voted_lapse[site] = (info.last_heard, now)
            if site in overdue:
                log.warning("replica %d: site %s holds %s past its timeout_s; voting it "
                            "lapsed", self.index, site, overdue[site])
            else:
                log.warning("replica %d: no heartbeat from site %s for %.1f s; voting it "
                            "lapsed", self.index, site, now - last)
            await self._send("site_lapsed", pb.SiteLapsed(site=site,
                                                          last_heard=info.last_heard))

    def _overdue(self, now: float) -> dict[str, str]:
        """Sites holding an instance that has run here longer than its task's ``timeout_s``
        allows (``overdue_s``): site -> the first such instance. Its node's runner kills it
        at ``timeout_s`` and the site reports the end, so a site that holds it longer is
        stuck or faulty (a review: a site that won instances and never reported their ends
        held them, and their job, for good). Checked every ``OVERDUE_EVERY_S``."""
        if now < self._next_overdue:
            return {}
        self._next_overdue = now + OVERDUE_EVERY_S
        app = self.app
        nodes = app.cluster.nodes
        out: dict[str, str] = {}
        for ts in app.ledger.tasks.values():
            run = ts.task.run
            if not ts.running or run is None or run.timeout_s is None:
                continue
            limit = overdue_s(run.timeout_s)
            for inst, version in ts.placed_at.items():
                began = self.exec_time.get(version, self.started)
                site = nodes[ts.placements[inst][0]].site
                if now - began > limit and site not in out:
                    out[site] = f"{ts.job.job.id}/{ts.task.id}[{inst}] ({now - began:.0f} s)"
        return out

    def silent(self, now: float) -> list[str]:
        """Live sites whose heartbeats have not reached this replica for ``site_timeout_s``
        (one never heard since this replica started: for the longer of that and
        ``site_start_grace_s``), whether or not they owe anything -- a site that owes
        nothing is not voted lapsed, so without this its agent could be gone for good (a
        site ``agora up`` started without one: its Ray node was dead) while ``agora site
        list`` called it live (a probe). For the replica's status; never ordered."""
        out = []
        for site in self.app.site_names:
            if self.app.sites[site].lapsed:
                continue
            last = self.heard.get(site)
            if last is None:
                last = self.started + max(0.0, self.site_start_grace_s - self.site_timeout_s)
            if now - last >= self.site_timeout_s:
                out.append(site)
        return out

    def _owing(self) -> list[str]:
        """Live sites that hold running work or are expected to decide now."""
        app, cap = self.app, self.app.capacity
        expected = set(app.expected_sites()) if app.armed else set()
        out = []
        for i, site in enumerate(app.site_names):
            if app.sites[site].lapsed:
                continue
            sl = cap.site_slice[i]
            busy = bool((cap.free_cpu[sl] < cap.cap_cpu[sl]).any()
                        or (cap.free_mem[sl] < cap.cap_mem[sl]).any()
                        or (cap.free_gpu[sl] < cap.cap_gpu[sl]).any())
            if busy or site in expected:
                out.append(site)
        return out

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
