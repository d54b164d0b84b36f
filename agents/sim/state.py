"""Mutable per-run state of jobs, tasks and running attempts, and the pool of open work.

A task's instances are interchangeable, so the open pool holds *tasks* with a count of open
instances rather than one entry per instance: a stage of 256 copies is one entry, and an
allocation covers an instance range (as ARCHITECTURE.md's allocations do).
"""

from __future__ import annotations

from typing import Callable

from sortedcontainers import SortedList

from agents.domain import Demand, Job, Task


class JobState:
    __slots__ = ("idx", "job", "origin", "tasks", "done_tasks", "completion", "outcome",
                 "reason", "work_left", "critical_path")

    def __init__(self, idx: int, job: Job, origin: int) -> None:
        self.idx = idx
        self.job = job
        self.origin = origin
        self.tasks: list[TaskState] = []
        self.done_tasks = 0
        self.completion: float | None = None
        self.outcome = "pending"          # pending | completed | unschedulable | failed
        self.reason = ""
        self.work_left = 0.0              # Σ open+running instance-seconds (for SRPT orders)
        self.critical_path = job.critical_path()


class TaskState:
    __slots__ = ("job", "task", "demand", "shape", "duration", "rank", "pending_parents", "children",
                 "next_fresh", "requeued", "running", "done", "failed", "outcome", "reason",
                 "ready_at", "failures")

    def __init__(self, job: JobState, task: Task, rank: int) -> None:
        self.job = job
        self.task = task
        self.demand: Demand = task.demand
        self.shape = task.demand.key      # cached: hashed at every fit check
        self.duration = task.duration
        self.rank = rank                  # global FIFO position: job arrival, then DAG order
        self.pending_parents = len(task.after)
        self.children: list[TaskState] = []
        self.next_fresh = 0               # instances [next_fresh, instances) never started
        self.requeued: list[int] = []     # instances to run again (failure, outage)
        self.running = 0
        self.done = 0
        self.failed = 0                   # instances given up on (reported, never lost)
        self.outcome = "waiting"          # waiting | open | completed | unschedulable | failed
        self.reason = ""
        self.ready_at: float | None = None
        self.failures: dict[int, int] = {}

    @property
    def open(self) -> int:
        """Instances ready to be allocated now."""
        return self.task.instances - self.next_fresh + len(self.requeued)

    def take_instance(self) -> int:
        if self.requeued:
            return self.requeued.pop()
        self.next_fresh += 1
        return self.next_fresh - 1

    def __repr__(self) -> str:
        return f"TaskState({self.job.job.id}/{self.task.id}, open={self.open})"


class Attempt:
    """One run of one instance on one node."""

    __slots__ = ("task", "instance", "node", "site", "start", "end", "slots", "transfer",
                 "fails", "live", "outcome")

    def __init__(self, task: TaskState, instance: int, node: int, site: int, start: float,
                 end: float, slots: tuple, transfer: float, fails: bool) -> None:
        self.task = task
        self.instance = instance
        self.node = node
        self.site = site
        self.start = start
        self.end = end
        self.slots = slots
        self.transfer = transfer
        self.fails = fails
        self.live = True
        self.outcome = "running"          # running | completed | failed | killed (outage)


class OpenPool:
    """Tasks with open instances, iterable in FIFO order or any registered order.

    Views are kept sorted incrementally (O(log n) per change), so a policy never re-sorts a
    backlog of thousands of tasks at every event."""

    def __init__(self) -> None:
        self._tasks: dict[int, TaskState] = {}
        self._fifo = SortedList()
        self._views: dict[str, tuple[Callable[[TaskState], tuple], SortedList]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, t: TaskState) -> bool:
        return t.rank in self._tasks

    def add(self, t: TaskState) -> None:
        if t.rank in self._tasks:
            return
        self._tasks[t.rank] = t
        self._fifo.add(t.rank)
        for key, sl in self._views.values():
            sl.add((key(t), t.rank))

    def discard(self, t: TaskState) -> None:
        if self._tasks.pop(t.rank, None) is None:
            return
        self._fifo.remove(t.rank)
        for key, sl in self._views.values():
            sl.remove((key(t), t.rank))

    def fifo(self) -> list[TaskState]:
        """Open tasks by job arrival, then DAG order (a snapshot: safe to assign while
        iterating)."""
        return [self._tasks[r] for r in self._fifo]

    def head(self, k: int) -> list[TaskState]:
        """The first ``k`` open tasks in FIFO order, in O(k log n)."""
        return [self._tasks[r] for r in self._fifo.islice(0, k)]

    def ordered(self, name: str, key: Callable[[TaskState], tuple]) -> list[TaskState]:
        """Open tasks sorted by ``key`` (ties by FIFO rank). ``key`` must depend only on
        fields that do not change while the task is open; the view is registered on first
        use and kept sorted from then on."""
        if name not in self._views:
            self._views[name] = (key, SortedList((key(t), r) for r, t in self._tasks.items()))
        return [self._tasks[r] for _, r in self._views[name][1]]
