"""A site agent on its own: the cluster engine's loop around the one agent step.

Nothing drives it. It follows the committed schedule (its ``Clearinghouse``: a ledger rebuilt
from the coordinator and kept current by its update stream), its own site (its
``Executor``) and its peers (its ``Exchange``), and it wakes when

- the committed schedule changes (new open work, a round armed or closed, an allocation of
  its own to start),
- its executor reports an instance that stopped or a node that went down or came back,
- a peer's code arrives that would change the codes it decided with,
- a timer fires (every ``tick_s``, a safety net).

Awake, it acts when it owes a message: a decision for the current round, armed, that it has
not made yet (only if it can take some open work), or ends and node changes to report; and it
re-decides when peers' codes moved, sending the new decision only if its bids changed. Such
a re-decision, when the committed schedule has not moved and nothing was reported since the
last step, re-ranks that step's observation with the new codes instead of observing again
(in a profiled 16-site replay 2,475 of 4,613 steps were such re-decisions, 62% of them
changing no bid; observing was 65% of a step's time). An agent that wakes to a disarmed
round without having decided (or seen armed) the round before -- the update that armed it and
the one that closed it came in one watch batch, or its loop stalled past the round's timeout
-- owes a late decision for that round, once, when it can bid for something: the coordinator
refuses it as a stale round but arms the next for it (a review: it sent nothing, and work
only its site could hold waited for an unrelated event). Each
message goes out through the clearinghouse, signed with the site's own key.
Committed allocations of its site go to its executor; whatever its executor runs that the
committed schedule no longer places here (a lapse, a restart) is stopped, and whatever the
schedule says runs here but the executor does not hold (a run lost with a restarted agent)
is reported lost, so it is placed again: nothing lost, nothing running twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from dataclasses import replace

import numpy as np

from agora.agents.aio import cancel_and_wait
from agora.agents.ledger import TaskEntry
from agora.agents.step.observe import Observer
from agora.agents.step.policy import NumpyPolicy
from agora.agents.step.step import SiteAgent, act, speak, submit_decision

log = logging.getLogger(__name__)

LATENCIES_KEPT = 10_000
"""decisions whose think time an agent keeps (``info``'s p50)"""


class AgentRuntime:
    """One site's autonomous loop (module docstring). ``exchange`` must offer ``publish`` /
    ``codes`` (the seam) and ``changed_since(round)`` (for the peer-code trigger)."""

    def __init__(self, *, site: int, name: str, cluster, policy: NumpyPolicy, exchange,
                 clearinghouse, executor, tick_s: float = 1.0, metrics=None,
                 observer: Observer | None = None) -> None:
        self.cluster = cluster
        self.agent = SiteAgent(site=site, name=name, policy=policy,
                               observer=observer or Observer(cluster, policy.k, policy.peers,
                                                             graph=policy.graph),
                               exchange=exchange,
                               clearinghouse=clearinghouse, executor=executor)
        self.site, self.name = site, name
        self.tick_s = tick_s
        self.metrics = metrics
        sl = executor.capacity.site_slice[site]
        self.own_nodes = range(sl.start, sl.stop)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._decided: int | None = None
        self._decided_active = False
        self._decided_version = 0
        self._decided_codes: bytes = b""
        self._decided_offers: list = []
        self._looked: int | None = None
        """the closed round, never decided, this agent last looked at from the disarmed one
        after it (at most one late decision of its own per closed round)"""
        self._seen: tuple[int, object] | None = None
        """(ledger version, observation) of the last step: what a re-decision on new peer
        codes alone re-ranks while the committed schedule and the site are unchanged"""
        self.last_failure = ""
        """the last failed step's error (``counts["step_failures"]`` counts them)"""
        self.counts = {"decisions": 0, "messages": 0, "ends": 0, "started": 0,
                       "step_failures": 0,
                       "reconciled_lost": 0, "reconciled_killed": 0, "redecided": 0,
                       "reranked": 0, "late": 0}
        self.trace: list[tuple[str, float, int]] | None = [] if os.environ.get(
            "AGORA_TRACE") else None
        """(event, wall time, round) when AGORA_TRACE is set: where a round's time goes"""
        self.latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        """seconds from waking to a decision sent, per decision (the latest
        ``LATENCIES_KEPT``: an agent runs for months)"""
        self._woke_at: float | None = None
        self._recovering = False

    _moved_by: frozenset[int] = frozenset()
    """the senders whose codes moved a re-decision of the round decided (each moves one a
    round: an honest peer speaks once a round; a hostile one sent a code a millisecond, each
    a re-decision and a new part to the coordinator -- a review); immutable, so a class
    default serves every agent until its first re-decision"""

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Rebuild the ledger, let the executor take over what runs, report what it lost,
        then start what the committed updates that came meanwhile placed here: until the
        executor has recovered, an update only moves the ledger (a start sent then went to a
        runner not yet found, a spurious "node down"; a review)."""
        ch, ex = self.agent.clearinghouse, self.agent.executor
        self._recovering = True
        try:
            running = await ch.start(self._on_update)
            here = {(ts.job.job.id, ts.task.id, i): (ts, i, node, ts.placed_at.get(i, 0))
                    for ts, i, node in running if node in self.own_nodes}
            await ex.recover([(ts, i, node) for ts, i, node, _ in here.values()], ch.ledger)
        finally:
            self._recovering = False
        lost = [k for k in here if k not in ex.running()]
        for k in lost:       # named by its run: one that ended meanwhile is refused, not lost
            ex.lose(k, "the site agent restarted; the run was lost", here[k][3])
        self.counts["reconciled_lost"] += len(lost)
        for ts in ch.ledger.tasks.values():        # placed here while the executor recovered
            for i, (node, _) in list(ts.placements.items()):
                key = (ts.job.job.id, ts.task.id, i)
                if (node in self.own_nodes and key not in ex.running()
                        and (key not in here or here[key][3] != ts.placed_at.get(i, 0))):
                    ex.start(ts, i, node)
                    self.counts["started"] += 1
        self._reconcile()
        self._task = asyncio.create_task(self._loop(), name=f"agent-{self.name}")
        self.wake()

    async def close(self) -> None:
        await cancel_and_wait([self._task])
        await self.agent.clearinghouse.close()

    def wake(self) -> None:
        if self.trace is not None:
            self.trace.append(("wake", time.time(), self.agent.clearinghouse.round.round))
        if self._woke_at is None:
            self._woke_at = time.perf_counter()
        self._wake.set()

    # ---- reacting ----------------------------------------------------------------------------
    def _on_update(self, started: list[tuple[TaskEntry, int, int]]) -> None:
        if self._recovering:
            return                  # ``start`` starts what is placed here once recovered
        ex = self.agent.executor
        for ts, inst, node in started:
            if node in self.own_nodes:
                ex.start(ts, inst, node)
                self.counts["started"] += 1
        self._reconcile()
        self.wake()

    def _reconcile(self) -> None:
        """Stop what the executor runs that the committed schedule does not place here --
        everything, once the site was removed (its work is placed elsewhere)."""
        ex, ledger = self.agent.executor, self.agent.clearinghouse.ledger
        removed = getattr(self.agent.clearinghouse, "removed", None)
        why = (f"the site was removed: {removed}" if removed
               else "the committed schedule no longer places it here")
        for key in ex.running():
            ts = ledger.tasks.get(key[:2])
            placed = ts.placements.get(key[2]) if ts is not None else None
            if removed or placed is None or placed[0] not in self.own_nodes:
                ex.kill(key, why if removed else _why_not_placed(ts), report=False)
                self.counts["reconciled_killed"] += 1

    async def _loop(self) -> None:
        await self.agent.executor.ready()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                self.act_if_owed()
                if self.metrics is not None:
                    self.metrics.counted(self.name, self.agent, self.agent.exchange)
            except Exception as e:  # noqa: BLE001 - a bad step must not kill the agent
                log.exception("site %s: step failed", self.name)
                self.counts["step_failures"] += 1
                self.last_failure = f"{type(e).__name__}: {e}"[:400]
            self._woke_at = None

    def act_if_owed(self) -> None:
        a = self.agent
        ch, ex = a.clearinghouse, a.executor
        if getattr(ch, "removed", None):
            return                              # removed: it neither bids nor reports

        info = ch.round_info()
        key = info.round
        reports = ex.has_reports()
        again = ch.redecide_at is not None and ch.version >= ch.redecide_at
        # owed: not yet decided this round -- or decided that nothing fits, and the open work
        # has changed since
        idle_again = key == self._decided and not self._decided_active and \
            ch.version > self._decided_version
        owed = info.armed and (key != self._decided or again or idle_again)
        moved: set[int] = set()
        if key == self._decided and self._decided_active:
            now = a.exchange.codes(info.round)[0]
            if len(self._decided_codes) != now.nbytes:
                moved = set(range(len(now)))
            elif now.tobytes() != self._decided_codes:
                before = np.frombuffer(self._decided_codes, now.dtype).reshape(now.shape)
                moved = {int(s) for s in np.flatnonzero((now != before).any(axis=1))}
        codes_moved = bool(moved - self._moved_by)
        # behind: disarmed, and the round before was neither decided nor seen armed here (a
        # (re)started agent knows of none). Its decision for that round, late, arms this one
        # at the coordinator when the site is expected (a review: it owed nothing, sent
        # nothing, and nothing armed the round). It looks once a round, on its own: an idle
        # agent observes nothing per tick, and a round armed and closed without it again
        # is another round
        behind = not info.armed and key > 0 and self._decided not in (key, key - 1)
        look = behind and self._looked != key - 1
        if not (owed or reports or codes_moved or look):
            return
        if self.trace is not None:
            self.trace.append(("act", time.time(), info.round))
            cpu0 = time.thread_time()
        redecision = codes_moved and not (owed or reports)
        # new peer codes alone: nothing this site sees has changed since its last step (the
        # same committed version, no report: its executor's state moves only with those), so
        # the step re-ranks that observation with the new codes instead of observing again
        seen = self._seen if redecision and self._seen is not None \
            and self._seen[0] == ch.version else None
        d = act([a], info, submit=False, obs=None if seen is None else [seen[1]])[0]
        if seen is not None:
            self.counts["reranked"] += 1
        self._seen = (ch.version, d.obs)
        if redecision:
            self._decided_codes = d.codes.tobytes()
            self._moved_by = self._moved_by | moved
            if d.offers == self._decided_offers:
                return                          # the new code changes nothing
            self.counts["redecided"] += 1
            d.code = None                       # it spoke this round already
        if again:
            ch.redecide_at = None
        if owed:
            if key != self._decided:
                self._moved_by = frozenset()
            self._decided, self._decided_active = key, d.obs.active
            self._decided_version = ch.version
        late = behind and d.obs.active
        if behind:
            self._looked = key - 1
        if late:
            # for the round before, and so are its reports while this round stays disarmed:
            # the clearinghouse keeps a queued part's newer decision, and one of this round
            # would replace the late one (an idle node's report arms nothing). Not spoken:
            # its code goes with its decision in the round this arms
            info = replace(info, round=key - 1)
        part = submit_decision(a, d, info)
        if not (redecision or late):
            speak(a, d, info)
        if part is None:
            return
        self.counts["messages"] += 1
        self.counts["ends"] += len(part.ends)
        if self.trace is not None:
            # the step's own CPU time beside its wall time: what of "think" is waiting for a core
            self.trace.append(("submit", time.time(), info.round, time.thread_time() - cpu0))
        if late:
            self.counts["late"] += 1
            return                              # a decision of no round: it arms the next
        if d.obs.active:
            self._decided_codes = d.codes.tobytes()
            self._decided_offers = d.offers
            self.counts["decisions"] += 1
            lat = []      # a decision on the tick, woken by nothing, has no latency
            if self._woke_at is not None:
                lat = [time.perf_counter() - self._woke_at]
                self.latencies.extend(lat)
            if self.metrics is not None:
                self.metrics.decided(self.name, len(d.offers), lat)


def _why_not_placed(ts) -> str:
    """Why a run this site's executor holds is no longer placed here, as its end says: a
    cancel by its name and reason (a probe read "the committed schedule no longer places it
    here" for an instance ``agora cancel`` killed), else the placement's end."""
    job = ts.job if ts is not None else None
    if job is not None and job.outcome == "cancelled":
        # another site's job: its reason is not this site's to read (a probe: "...: ")
        return f"the job was cancelled: {job.reason}" if job.reason else "the job was cancelled"
    if ts is not None and ts.outcome == "cancelled" and ts.reason:
        return f"its task was cancelled: {ts.reason}"
    return "the committed schedule no longer places it here"
