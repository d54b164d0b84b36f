"""The replicated schedule's data: a task's instances, a job, and the market's view of them.

Split out of ``schedule_state.py`` (the commands) so each reads in one sitting. Everything
here is deterministic: instances are picked lowest index first, nodes by
``Capacity.best_fit`` (ties to the lowest node index), and tasks are ordered by the
``priority`` below, never by dict or set order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.domain import Job, Task, topological_order
from agents.sim.capacity import Capacity, GpuSlots
from protos.convert import job_to_proto

if TYPE_CHECKING:
    import numpy as np

WAITING, OPEN, RUNNING, DONE = 0, 1, 2, 3
"""An instance's state, one byte each in ``TaskState.states``."""

TaskKey = tuple[str, str]
"""(job id, task id): how the market names a task."""


class TaskState:
    """One task of a job: the state of each instance and where the running ones are."""

    __slots__ = ("job", "task", "topo", "states", "failures", "running", "n_open", "n_done",
                 "children", "parents", "rec")

    def __init__(self, job: JobState, task: Task, topo: int) -> None:
        self.job = job
        self.task = task
        self.topo = topo
        """position of the task in its job's topological order (DAG order)"""
        first = WAITING if task.after else OPEN
        self.states = bytearray([first]) * task.instances
        self.failures = 0
        self.running: dict[int, tuple[int, GpuSlots]] = {}
        """instance -> (node index, gpu slots it holds)"""
        self.n_open = task.instances if first == OPEN else 0
        self.n_done = 0
        self.children: list[TaskState] = []
        self.parents: list[TaskState] = []
        self.rec: bytes | None = None
        """cached snapshot encoding (schedule_codec); ``touch()`` after every change"""

    def touch(self) -> None:
        """Forget the cached snapshot encodings of this task and its job: call after any
        change of ``states``, ``running`` or ``failures``."""
        self.rec = None
        self.job.rec = None

    @property
    def key(self) -> TaskKey:
        return (self.job.job.id, self.task.id)

    def count(self, state: int) -> int:
        return self.states.count(state)

    def open_indices(self, n: int) -> list[int]:
        """The ``n`` lowest open instances (fewer when fewer are open)."""
        out, i = [], -1
        while len(out) < n:
            i = self.states.find(OPEN, i + 1)
            if i < 0:
                break
            out.append(i)
        return out


class JobState:
    __slots__ = ("job", "seq", "origin", "tasks", "job_bytes", "rec")

    def __init__(self, job: Job, seq: int, origin: int) -> None:
        self.job = job
        self.job_bytes = job_to_proto(job).SerializeToString(deterministic=True)
        """the job's encoding in snapshots (encoded once: a job never changes)"""
        self.seq = seq
        """arrival order: the number of jobs admitted before this one"""
        self.origin = origin
        """site index of the job's origin"""
        self.tasks: dict[str, TaskState] = {}
        self.rec: bytes | None = None
        """cached snapshot encoding of the whole JobRecord (reset by ``TaskState.touch``)"""
        by_id = {t.id: t for t in job.tasks}
        for k, t in enumerate(topological_order(job)):
            self.tasks[t.id] = TaskState(self, by_id[t.id], k)
        for ts in self.tasks.values():
            for p in ts.task.after:
                ts.parents.append(self.tasks[p])
                self.tasks[p].children.append(ts)

    @property
    def complete(self) -> bool:
        return all(t.n_done == t.task.instances for t in self.tasks.values())


class ScheduleBook:
    """The ``agents.market.Book`` over the replicated schedule for one clearing.

    priority = (-job weight, arrival order, DAG order); rank = the origin's site preference
    (``agents.market.site_preference``); place = best-fit node reservations at the site,
    recorded in ``placed`` as (task, instance, node) in placement order."""

    def __init__(self, tasks: dict[TaskKey, TaskState], capacity: Capacity,
                 pref: np.ndarray) -> None:
        self.tasks = tasks
        self.capacity = capacity
        self.pref = pref
        self.n_sites = capacity.n_sites
        self.placed: list[tuple[TaskState, int, int]] = []

    def open_instances(self, task: TaskKey) -> int:
        ts = self.tasks.get(task)
        return ts.n_open if ts is not None else 0

    def priority(self, task: TaskKey) -> tuple:
        ts = self.tasks[task]
        return (-ts.job.job.weight, ts.job.seq, ts.topo)

    def rank(self, task: TaskKey, site: int) -> int:
        return int(self.pref[self.tasks[task].job.origin, site])

    def place(self, task: TaskKey, site: int, n: int) -> int:
        ts = self.tasks[task]
        demand = ts.task.demand
        got = 0
        ts.touch()
        for i in ts.open_indices(n):
            node = self.capacity.best_fit(demand, site)
            if node is None:
                break
            slots = self.capacity.place(node, demand)
            ts.states[i] = RUNNING
            ts.n_open -= 1
            ts.running[i] = (node, slots)
            self.placed.append((ts, i, node))
            got += 1
        return got


def apply_slots(capacity: Capacity, node: int, demand, slots: GpuSlots) -> None:
    """Take exactly ``slots`` (as recorded) for ``demand`` on ``node``: restoring a snapshot
    must hold the very gpus the instance held, not whatever ``take_gpus`` would pick now."""
    capacity.free_cpu[node] -= demand.cpu
    capacity.free_mem[node] -= demand.mem
    if slots:
        gf = capacity.gpu_free[node]
        for i, g in slots:
            gf[i] -= g
        capacity._refresh_gpu(node)


def runs(placed: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(instance, node) pairs -> maximal runs (begin, end, node) of consecutive instances on
    one node, in instance order."""
    out: list[tuple[int, int, int]] = []
    for i, node in sorted(placed):
        if out and out[-1][1] == i and out[-1][2] == node:
            out[-1] = (out[-1][0], i + 1, node)
        else:
            out.append((i, i + 1, node))
    return out
