"""The one ledger of task instances: jobs, their tasks, the state of every instance, and the
pool of open work.

Three places keep task-instance state, and all three use this class: the simulator (its
world), every coordinator replica (the replicated schedule), and every site agent (its view of
the committed schedule, rebuilt from the coordinator's update stream). Each applies the same
transitions in the same order, so all three agree by construction rather than by a test
that keeps two copies equal.

**An instance** is ``WAITING`` (a parent task is not done), ``OPEN`` (may be allocated),
``RUNNING`` (allocated to a node), ``DONE``, or ``GAVE_UP`` (failed ``max_attempts`` times,
unschedulable, cancelled, or depending on a task that gave up: reported, never lost). A task's
instances are interchangeable: allocations take the lowest open indices first, and the pool
holds *tasks* with a count of open instances, so a stage of 256 copies is one entry.

**Transitions** (each takes ``now``, seconds on the workload clock, given by the caller: the
simulator's clock, or a time carried by the ordered command, never a local clock — the
coordinator's ledger must be a pure function of its log):

- ``admit(job)``: tasks without parents open;
- ``start(task, instance, node, slots)``: open → running on a node;
- ``complete(task, instance)``: running → done; a task whose instances are all done opens the
  children whose every parent is done; a job whose tasks are all done completes;
- ``fail(task, instance, count=...)``: running → open again (``count``: one more failed
  attempt of that instance; at ``max_attempts`` the task gives up, and so does everything
  downstream of it) — a node outage or a lost agent requeues without counting;
- ``give_up(task, outcome, reason)`` / ``cancel(job)``: what has not started never will.

Ranks: every task gets a global FIFO rank at admission (jobs in admission order, tasks in
topological order), the total order heuristics and the market break ties with.
"""

from __future__ import annotations

from typing import Callable

from agora.agents.domain import Job, topological_order
from agora.agents.ledger_entries import (DONE, GAVE_UP, OPEN, RUNNING, WAITING, JobEntry,
                                         Placement, TaskEntry, TaskKey)
from agora.agents.open_pool import OpenPool

__all__ = ["DONE", "GAVE_UP", "OPEN", "RUNNING", "WAITING", "JobEntry", "Ledger", "Placement",
           "TaskEntry", "TaskKey"]


def _state_map(changes: dict[int, int]) -> bytes:
    """A ``bytes.translate`` table of instance states: ``changes`` moved, the rest kept."""
    return bytes(changes.get(s, s) for s in range(256))


_OPEN_WAITING = _state_map({WAITING: OPEN})
_GIVE_UP_NOT_STARTED = _state_map({WAITING: GAVE_UP, OPEN: GAVE_UP})


class Ledger:
    """Jobs and the state of every task instance (module docstring). ``max_attempts``: failed
    attempts of one instance before its task gives up."""

    def __init__(self, *, max_attempts: int = 5) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.jobs: dict[str, JobEntry] = {}
        self.tasks: dict[TaskKey, TaskEntry] = {}
        self.pool = OpenPool()
        self._next_rank = 0
        self._next_seq = 0
        """admission numbers (``JobEntry.seq``): only their order means anything, and it
        outlives jobs dropped from the ledger (``forget_jobs``)"""
        self.gave_up: list[tuple[str, str, str, str]] = []
        """(job id, task id, outcome, reason) for every task that gave up instances"""
        self.instances_done = 0
        self.instances_gave_up: dict[str, int] = {}
        """outcome -> instances given up with it"""
        self.version = 0
        """the committed version being applied (the coordinator's sequence number; 0 in the
        simulator): ``start`` records it as the run's identity (``TaskEntry.placed_at``)"""
        self.unencoded: dict[str, JobEntry] = {}
        """jobs whose cached encoding (``JobEntry.rec``) was cleared (or never made), by id:
        what the coordinator may encode ahead while idle (``ScheduleState.warm``)"""
        self.on_open: Callable[[TaskEntry], None] | None = None
        """called when a task gets open instances (the simulator vetoes tasks no surviving
        node can hold)"""

    # ---- reading -------------------------------------------------------------------------
    def task(self, job_id: str, task_id: str) -> TaskEntry | None:
        return self.tasks.get((job_id, task_id))

    def __len__(self) -> int:
        return len(self.jobs)

    # ---- transitions ---------------------------------------------------------------------
    def _touch(self, ts: TaskEntry) -> None:
        ts.touch()
        self.unencoded[ts.job.job.id] = ts.job

    def pass_turn(self, ts: TaskEntry) -> None:
        """A bid of a site where ``ts`` failed was served: the turn among those sites passes
        on (``ledger_book.LedgerBook.turn``)."""
        ts.turns += 1
        self._touch(ts)

    def admit(self, job: Job, origin: int, now: float) -> JobEntry:
        """Add ``job`` (its id must be new); tasks without parents open at ``now``."""
        js = self.admit_record(job, origin)
        for ts in js.tasks:
            if ts.pending_parents == 0 and ts.task.instances:
                self._open_task(ts, now)
        if not any(ts.task.instances for ts in js.tasks):
            js.outcome, js.completion = "completed", now
        return js

    def _open_task(self, ts: TaskEntry, now: float) -> None:
        self._touch(ts)
        ts.ready_at = now
        ts.outcome = "open"
        n = ts.states.count(WAITING)          # in C: a task may hold a million instances
        if n:
            ts.states[:] = ts.states.translate(_OPEN_WAITING)
        ts.open += n
        if ts.open:
            self.pool.add(ts)
        if self.on_open is not None:
            self.on_open(ts)

    def start(self, ts: TaskEntry, inst: int, node: int,
              slots: tuple[tuple[int, int], ...] = ()) -> None:
        if ts.states[inst] != OPEN:
            raise ValueError(f"{ts.job.job.id}/{ts.task.id}[{inst}] is not open")
        self._touch(ts)
        ts.states[inst] = RUNNING
        ts.open -= 1
        ts.running += 1
        _hold(ts, 1)
        ts.placements[inst] = (node, slots)
        ts.placed_at[inst] = self.version
        if ts.open == 0:
            self.pool.discard(ts)

    def _stop(self, ts: TaskEntry, inst: int) -> Placement:
        if ts.states[inst] != RUNNING:
            raise ValueError(f"{ts.job.job.id}/{ts.task.id}[{inst}] is not running")
        self._touch(ts)
        ts.running -= 1
        _hold(ts, -1)
        ts.placed_at.pop(inst, None)
        return ts.placements.pop(inst)

    def complete(self, ts: TaskEntry, inst: int, now: float) -> Placement:
        """Instance ``inst`` finished; returns where it ran (to release its resources)."""
        placement = self._stop(ts, inst)
        ts.states[inst] = DONE
        ts.done += 1
        self.instances_done += 1
        js = ts.job
        js.work_left -= ts.duration
        if ts.done == ts.task.instances and ts.outcome == "cancelled":
            # every instance ran and completed after its job failed or was cancelled (they
            # were running then): the task completed, the job keeps its end (a probe read
            # "cancelled" for a task whose every instance exited 0). Counted as a completed
            # task, as a ledger restored from a record counts it (``restore_job``): a
            # replica or agent that restarted held other counts than one that never did (a
            # review); its children were given up with the job and stay so
            ts.outcome, ts.reason = "completed", ""
            js.done_tasks += 1
            for c in ts.children:
                c.pending_parents -= 1
        if ts.done + ts.failed == ts.task.instances and ts.outcome == "open":
            ts.outcome = "completed"
            js.done_tasks += 1
            for c in ts.children:
                c.pending_parents -= 1
                if c.pending_parents == 0 and c.outcome == "waiting":
                    self._open_task(c, now)
            if js.done_tasks == len(js.tasks) and js.outcome == "pending":
                js.outcome, js.completion = "completed", now
        return placement

    def fail(self, ts: TaskEntry, inst: int, now: float, *, count: bool = True,
             reason: str = "", mark: bool | None = None) -> tuple[Placement, bool]:
        """Instance ``inst`` stopped without completing: it opens again, unless its task
        gave up (then it is reported with the task) or this was its last attempt
        (``count``: a failed attempt; False for a node outage or a lost agent, which are no
        fault of the task). ``mark`` (default: ``count``): its node joins the task's
        ``failed_nodes`` -- the coordinator marks a lost run too, which spends no attempt
        but must not let a site win, lose and win the same work again ahead of the others
        (a review). Returns (where it ran, whether it reopened)."""
        placement = self._stop(ts, inst)
        if count if mark is None else mark:
            if placement[0] >= 0 and placement[0] not in ts.failed_nodes:  # a site's view:
                # where another site's instance ran is not known (ledger_codec.FOREIGN_NODE)
                ts.failed_nodes = tuple(sorted((*ts.failed_nodes, placement[0])))
        if count:
            n = ts.failures[inst] = ts.failures.get(inst, 0) + 1
            if n >= self.max_attempts and ts.outcome == "open":
                why = f"instance {inst} failed {n} times" + (f": {reason}" if reason else "")
                ts.states[inst] = GAVE_UP
                self._count_gave_up(ts, "failed", why, 1)
                self._fail_task(ts, "failed", why)
                return placement, False
        if ts.outcome != "open":
            # the task gave up while this instance ran: report it with the task
            ts.states[inst] = GAVE_UP
            self._count_gave_up(ts, ts.outcome,
                                f"instance {inst} stopped after: {ts.reason}", 1)
            return placement, False
        ts.states[inst] = OPEN
        ts.open += 1
        self.pool.add(ts)
        return placement, True

    def give_up(self, ts: TaskEntry, outcome: str, reason: str) -> int:
        """Instances of ``ts`` that have not started never will (``outcome``: failed,
        unschedulable or cancelled); running ones are reported when they stop. Returns how
        many were given up now."""
        self._touch(ts)
        n = ts.states.count(WAITING) + ts.states.count(OPEN)
        if n:
            ts.states[:] = ts.states.translate(_GIVE_UP_NOT_STARTED)
        ts.open = 0
        ts.outcome, ts.reason = outcome, reason
        self.pool.discard(ts)
        # an instance that ran and failed is reported by itself (``fail``); these never
        # started, and a task's report says so when some of its instances did run
        ran = ts.done or ts.running or any(ts.failures.values())
        self._count_gave_up(ts, outcome, reason if not ran else
                            f"{n} instance{'s' if n != 1 else ''} not started: {reason}", n)
        return n

    def _count_gave_up(self, ts: TaskEntry, outcome: str, reason: str, n: int) -> None:
        ts.failed += n
        if n:
            self.instances_gave_up[outcome] = self.instances_gave_up.get(outcome, 0) + n
            self.gave_up.append((ts.job.job.id, ts.task.id, outcome, reason))

    def _fail_task(self, cause: TaskEntry, outcome: str, reason: str) -> None:
        """``cause`` can never complete: give it up, and everything downstream of it; the
        job ends with ``outcome``, and nothing more of it starts (its other tasks' instances
        not started are given up as cancelled; those running finish and are reported): a
        job reported failed does not go on starting work (Argo's "fail fast")."""
        self.give_up(cause, outcome, reason)
        js = cause.job
        if js.outcome == "pending":
            js.outcome, js.reason = outcome, f"task {cause.task.id}: {reason}"
        stack = list(cause.children)
        seen: set[int] = set()
        while stack:
            c = stack.pop()
            if c.rank in seen or c.outcome in ("failed", "unschedulable", "cancelled"):
                continue
            seen.add(c.rank)
            self.give_up(c, outcome, f"depends on task {cause.task.id} ({outcome})")
            stack.extend(c.children)
        why = f"the job {outcome}: task {cause.task.id}: {reason}"
        for ts in js.tasks:
            if ts.outcome in ("waiting", "open"):
                self.give_up(ts, "cancelled", why)

    def unschedulable(self, ts: TaskEntry, reason: str) -> None:
        """Nothing can ever hold ``ts`` (at admission, or after permanent outages)."""
        self._fail_task(ts, "unschedulable", reason)

    def reject(self, js: JobEntry, bad: TaskEntry, reason: str) -> None:
        """Refuse the whole of ``js`` at admission: ``bad`` fits no node."""
        js.outcome, js.reason = "unschedulable", f"task {bad.task.id}: {reason}"
        for ts in js.tasks:
            why = reason if ts is bad else f"job rejected: task {bad.task.id} is unschedulable"
            self.give_up(ts, "unschedulable", why)

    @staticmethod
    def compactable(js: JobEntry) -> bool:
        """Nothing of ``js`` runs, waits or is open, nor will again: dropping it
        (``forget_jobs``) changes nothing any other job may do."""
        return js.finished and not any(ts.open or ts.outcome == "waiting" for ts in js.tasks)

    def forget_jobs(self, ids: set[str]) -> list[JobEntry]:
        """Drop the jobs ``ids`` (each ``compactable``; unknown ids are skipped) and what
        the ledger keeps of them; returns the entries dropped, in admission order. The
        instance counters (``instances_done``, ``instances_gave_up``) keep counting them."""
        gone = []
        for job_id in ids:
            js = self.jobs.get(job_id)
            if js is None:
                continue
            if not self.compactable(js):
                raise ValueError(f"job {job_id!r} is not finished; only finished jobs are "
                                 f"dropped")
            gone.append(js)
        for js in gone:
            del self.jobs[js.job.id]
            self.unencoded.pop(js.job.id, None)
            for ts in js.tasks:
                del self.tasks[ts.key]
        if gone and self.gave_up:
            dropped = {js.job.id for js in gone}
            self.gave_up = [g for g in self.gave_up if g[0] not in dropped]
        gone.sort(key=lambda js: js.seq)
        return gone

    @staticmethod
    def cancellable(js: JobEntry) -> bool:
        """Pending, or failed with instances still running (a failed job starts nothing
        more, see ``_fail_task``; a record from before that rule may hold open work too)."""
        return js.outcome == "pending" or js.outcome == "failed" and any(
            ts.outcome in ("waiting", "open") or ts.placements for ts in js.tasks)

    def cancel(self, js: JobEntry, reason: str) -> list[tuple[TaskEntry, int]]:
        """Cancel ``js``: nothing more of it starts; returns its running instances (to be
        killed and reported, which gives them up). A job that failed already keeps that
        outcome (its other tasks are cancelled)."""
        if not self.cancellable(js):
            return []
        if js.outcome == "pending":
            js.outcome, js.reason = "cancelled", reason
        running = []
        for ts in js.tasks:
            if ts.outcome in ("waiting", "open"):
                self.give_up(ts, "cancelled", reason)
            running.extend((ts, i) for i in sorted(ts.placements))
        return running

    # ---- restoring (a snapshot, or an agent's view from the coordinator) -------------------
    def restore_job(self, job: Job, origin: int, *, outcome: str, reason: str,
                    completion: float | None, tasks: list[dict]) -> JobEntry:
        """Add ``job`` with its recorded state (``tasks``: per task in ``job.tasks`` order, a
        dict of ``states`` (bytes), ``failures`` {instance: n}, ``failed_nodes`` (optional,
        ascending), ``turns`` (optional), ``placements`` {instance:
        (node, slots)}, ``placed_at`` {instance: version}, ``outcome``, ``reason``,
        ``ready_at``). Counters, ``work_left`` and
        pool membership are recomputed; raises ValueError on an inconsistent record."""
        js = self.admit_record(job, origin)
        js.outcome, js.reason, js.completion = outcome, reason, completion
        for t, rec in zip(job.tasks, tasks):
            ts = js.by_id[t.id]
            states = bytearray(rec["states"])
            if len(states) != t.instances or any(s > GAVE_UP for s in states):
                raise ValueError(f"task {t.id}: bad instance states")
            running = {i for i, s in enumerate(states) if s == RUNNING}
            if set(rec["placements"]) != running:
                raise ValueError(f"task {t.id}: running instances without a placement")
            ts.states = states
            ts.failures = dict(rec["failures"])
            ts.failed_nodes = tuple(rec.get("failed_nodes", ()))
            ts.turns = rec.get("turns", 0)
            ts.placements = dict(rec["placements"])
            ts.placed_at = {i: v for i, v in rec.get("placed_at", {}).items() if i in running}
            ts.open, ts.running = states.count(OPEN), len(running)
            ts.done, ts.failed = states.count(DONE), states.count(GAVE_UP)
            ts.outcome, ts.reason, ts.ready_at = rec["outcome"], rec["reason"], rec["ready_at"]
            js.work_left -= ts.duration * ts.done
            if ts.open:
                self.pool.add(ts)
        for ts in js.tasks:
            _hold(ts, ts.running)
            ts.pending_parents = sum(1 for p in ts.parents if p.outcome != "completed")
        js.done_tasks = sum(1 for ts in js.tasks if ts.outcome == "completed")
        self.instances_done += sum(ts.done for ts in js.tasks)
        for ts in js.tasks:
            if ts.failed:
                self.instances_gave_up[ts.outcome] = \
                    self.instances_gave_up.get(ts.outcome, 0) + ts.failed
        return js

    def admit_record(self, job: Job, origin: int) -> JobEntry:
        """``job``'s entries with every instance waiting (``restore_job`` fills them in)."""
        if job.id in self.jobs:
            raise ValueError(f"job {job.id!r} is already in the ledger")
        js = JobEntry(job, self._next_seq, origin)
        self._next_seq += 1
        for topo, task in enumerate(topological_order(job)):
            ts = TaskEntry(js, task, topo, self._next_rank)
            self._next_rank += 1
            js.tasks.append(ts)
            js.by_id[task.id] = ts
            js.work_left += task.duration * task.instances
        for ts in js.tasks:
            for p in ts.task.after:
                ts.parents.append(js.by_id[p])
                js.by_id[p].children.append(ts)
        self.jobs[job.id] = js
        self.unencoded[job.id] = js
        for ts in js.tasks:
            self.tasks[ts.key] = ts
        return js


def _hold(ts: TaskEntry, n: int) -> None:
    """``n`` more (or fewer) instances of ``ts`` running: its job's ``running`` and ``held``."""
    js, d = ts.job, ts.demand
    js.running += n
    h = js.held
    h[0] += n * d.cpu
    h[1] += n * d.mem
    h[2] += n * d.gpu
