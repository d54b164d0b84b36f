"""The open pool: the tasks with open instances, in FIFO order and any registered order, with
what a policy asks of it every decision kept as it changes (the open shapes, the open jobs)
so that it never pays for a whole backlog at each event. Part of the ledger
(``agents/ledger.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator

from sortedcontainers import SortedList

if TYPE_CHECKING:
    from agora.agents.ledger import JobEntry, TaskEntry

_SCAN_CHUNK = 256
"""ranks ``OpenPool.scan`` copies at a time"""
_SMALL_JOB = 64
"""tasks of a job up to which ``OpenPool.of_job`` reads its task list instead of the index"""


def job_ranks(js: JobEntry) -> tuple[int, int]:
    """The first and last FIFO rank of a job's tasks (contiguous: given at admission)."""
    return js.tasks[0].rank, js.tasks[-1].rank


class OpenPool:
    """Tasks with open instances, iterable in FIFO order or any registered order.

    Views are kept sorted incrementally (O(log n) per change), so a policy never re-sorts a
    backlog of thousands of tasks at every event."""

    def __init__(self) -> None:
        self._tasks: dict[int, TaskEntry] = {}
        self._fifo = SortedList()
        self._views: dict[str, tuple[Callable[[TaskEntry], tuple], SortedList]] = {}
        self._shapes: dict[tuple, list] = {}
        """demand shape -> [open tasks of that shape, their Demand] (``shapes()``)"""
        self._jobs: dict[int, list] = {}
        """job admission number -> [its open tasks, its JobEntry] (``jobs()``)"""
        self.shape_version = 0
        """counts the changes of the set of open demand shapes (a shape first open, or no
        longer): what is computed from ``shapes()`` can be kept until it moves"""

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, t: TaskEntry) -> bool:
        return t.rank in self._tasks

    def add(self, t: TaskEntry) -> None:
        if t.rank in self._tasks:
            return
        self._tasks[t.rank] = t
        self._fifo.add(t.rank)
        for key, sl in self._views.values():
            sl.add((key(t), t.rank))
        for index, key, value in ((self._shapes, t.shape, t.demand),
                                  (self._jobs, t.job.seq, t.job)):
            entry = index.get(key)
            if entry is None:
                index[key] = [1, value]
                self.shape_version += index is self._shapes
            else:
                entry[0] += 1

    def discard(self, t: TaskEntry) -> None:
        if self._tasks.pop(t.rank, None) is None:
            return
        self._fifo.remove(t.rank)
        for key, sl in self._views.values():
            sl.remove((key(t), t.rank))
        for index, key in ((self._shapes, t.shape), (self._jobs, t.job.seq)):
            entry = index[key]
            entry[0] -= 1
            if entry[0] == 0:
                del index[key]
                self.shape_version += index is self._shapes

    def tasks(self) -> list[TaskEntry]:
        """Every open task, in no particular order."""
        return list(self._tasks.values())

    def shapes(self) -> list:
        """One Demand per distinct demand shape among the open tasks (kept by ``add`` and
        ``discard``: O(shapes), not O(open tasks)), in the order the shapes first opened."""
        return [d for _, d in self._shapes.values()]

    def shape_counts(self) -> list[tuple[int, object]]:
        """(open tasks of the shape, its Demand) per open demand shape: O(shapes)."""
        return [(n, d) for n, d in self._shapes.values()]

    def jobs(self) -> list[JobEntry]:
        """The jobs with open tasks (O(jobs), kept like ``shapes()``), in no particular order."""
        return [js for _, js in self._jobs.values()]

    def scan(self, lo: int = 0, hi: int | None = None) -> Iterator[TaskEntry]:
        """Open tasks of FIFO rank ``lo``..``hi`` (a job's: ``job_ranks``) in FIFO order,
        lazily: a policy that stops once nothing fits pays for what it looked at, not for the
        whole backlog. Safe to allocate while iterating (a task closed meanwhile is skipped)."""
        return _walk(self._fifo, self._tasks, lo, hi, lambda r: r)

    def of_job(self, js: JobEntry) -> Iterator[TaskEntry]:
        """A job's open tasks in FIFO order, lazily: a small job's straight from its task list
        (no index lookups: thousands of one-task jobs are walked as fast as a list), a large
        one's through the pool's index (``scan``: its closed tasks are not walked again)."""
        if len(js.tasks) <= _SMALL_JOB:
            return (t for t in js.tasks if t.open)
        return self.scan(*job_ranks(js))

    def ordered_scan(self, name: str, key: Callable[[TaskEntry], tuple]) -> Iterator[TaskEntry]:
        """``ordered(name, key)``, lazily, as ``scan``."""
        return _walk(self._view(name, key), self._tasks, (), None, lambda item: item[1])

    def fifo(self) -> list[TaskEntry]:
        """Open tasks by job admission, then DAG order (a snapshot: safe to allocate while
        iterating)."""
        return [self._tasks[r] for r in self._fifo]

    def head(self, k: int) -> list[TaskEntry]:
        """The first ``k`` open tasks in FIFO order, in O(k log n)."""
        return [self._tasks[r] for r in self._fifo.islice(0, k)]

    def ordered(self, name: str, key: Callable[[TaskEntry], tuple]) -> list[TaskEntry]:
        """Open tasks sorted by ``key`` (ties by FIFO rank). ``key`` must depend only on
        fields that do not change while the task is open; the view is registered on first
        use and kept sorted from then on."""
        return [self._tasks[r] for _, r in self._view(name, key)]

    def ordered_head(self, name: str, key: Callable[[TaskEntry], tuple],
                     n: int) -> list[TaskEntry]:
        """The first ``n`` tasks of ``ordered(name, key)`` without materialising the rest."""
        return [self._tasks[r] for _, r in self._view(name, key).islice(0, n)]

    def _view(self, name: str, key: Callable[[TaskEntry], tuple]) -> SortedList:
        if name not in self._views:
            self._views[name] = (key, SortedList((key(t), r) for r, t in self._tasks.items()))
        return self._views[name][1]


def _walk(sl: SortedList, tasks: dict, lo, hi, rank_of) -> Iterator[TaskEntry]:
    """The open tasks of ``sl``'s items from ``lo`` to ``hi`` (None: the end), copying
    ``_SCAN_CHUNK`` items at a time; a task closed since its chunk was copied is skipped."""
    i = sl.bisect_left(lo)
    while True:
        chunk = list(sl.islice(i, i + _SCAN_CHUNK))
        if not chunk:
            return
        for item in chunk:
            if hi is not None and item > hi:
                return
            t = tasks.get(rank_of(item))
            if t is not None:
                yield t
        i = sl.bisect_right(chunk[-1])
