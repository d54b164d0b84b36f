"""A ledger's entries: a job (``JobEntry``) and one of its tasks (``TaskEntry``), with the
state of each instance of the task (one byte each: ``WAITING`` .. ``GAVE_UP``). Only
``agents.ledger.Ledger`` changes them; everyone else reads them (policies, the market, the
coordinator's codec). ``agents.ledger`` re-exports every name here."""

from __future__ import annotations

from agora.agents.domain import Demand, Job, Task

WAITING, OPEN, RUNNING, DONE, GAVE_UP = 0, 1, 2, 3, 4
"""An instance's state, one byte each in ``TaskEntry.states``."""

TaskKey = tuple[str, str]
"""(job id, task id)"""

Placement = tuple[int, tuple[tuple[int, int], ...]]
"""(node index, gpu slots) of a running instance (``agents.sim.capacity.GpuSlots``)"""


class JobEntry:
    __slots__ = ("job", "seq", "origin", "tasks", "by_id", "done_tasks", "completion",
                 "outcome", "reason", "work_left", "critical_path", "rec", "spec", "running",
                 "held")

    def __init__(self, job: Job, seq: int, origin: int) -> None:
        self.job = job
        self.seq = seq
        """admission order: the number of jobs admitted before this one"""
        self.origin = origin
        """site index of the job's origin"""
        self.tasks: list[TaskEntry] = []
        """in topological order"""
        self.by_id: dict[str, TaskEntry] = {}
        self.done_tasks = 0
        self.completion: float | None = None
        self.outcome = "pending"          # pending | completed | failed | unschedulable | cancelled
        self.reason = ""
        self.work_left = 0.0
        """Σ instance-seconds not yet completed (the job-level SRPT key)"""
        self.running = 0
        """instances running now (kept by the ledger: O(1) for a policy that caps widths)"""
        self.held = [0, 0, 0]
        """cpu, mem and gpu the running instances hold (kept likewise: DRF's shares)"""
        self.critical_path = job.critical_path()
        self.rec: bytes | None = None
        """cached encoding (the coordinator's snapshot); reset by every change"""
        self.spec: bytes | None = None
        """cached encoding of the job itself (never changes once admitted)"""

    @property
    def idx(self) -> int:
        return self.seq

    @property
    def complete(self) -> bool:
        return self.outcome == "completed"

    @property
    def finished(self) -> bool:
        """Nothing of the job will run again (completed, or given up)."""
        return self.outcome != "pending" and not self.running

    def __repr__(self) -> str:
        return f"JobEntry({self.job.id}, {self.outcome})"


class TaskEntry:
    __slots__ = ("job", "task", "topo", "rank", "demand", "shape", "duration", "states",
                 "failures", "failed_nodes", "turns", "placements", "open", "running", "done",
                 "failed", "pending_parents", "children", "parents", "outcome", "reason",
                 "ready_at", "rec", "placed_at", "run_recs")

    def __init__(self, job: JobEntry, task: Task, topo: int, rank: int) -> None:
        self.job = job
        self.task = task
        self.topo = topo
        """position in the job's topological order"""
        self.rank = rank
        """global FIFO position: job admission, then DAG order"""
        self.demand: Demand = task.demand
        self.shape = task.demand.key      # cached: hashed at every fit check
        self.duration = task.duration
        self.states = bytearray([WAITING]) * task.instances
        self.failures: dict[int, int] = {}
        """instance -> failed attempts so far"""
        self.failed_nodes: tuple[int, ...] = ()
        """the nodes where an instance of the task failed (a counted attempt), ascending,
        each once (``ledger_book.failed_here``)"""
        self.turns = 0
        """clearings in which a marked site's bid for the task was served: whose turn it is
        among the marked sites' bids for it (``LedgerBook.turn``)"""
        self.placements: dict[int, Placement] = {}
        """running instance -> (node, gpu slots)"""
        self.placed_at: dict[int, int] = {}
        """running instance -> the ledger's ``version`` when it was placed: the run's
        identity (an instance placed again, even on the same node, is another run)"""
        self.open = 0
        self.running = 0
        self.done = 0
        self.failed = 0
        """instances given up on (reported with a reason, never lost)"""
        self.pending_parents = len(task.after)
        self.children: list[TaskEntry] = []
        self.parents: list[TaskEntry] = []
        self.outcome = "waiting"          # waiting | open | completed | failed | unschedulable | cancelled
        self.reason = ""
        self.ready_at: float | None = None
        self.rec: bytes | None = None
        self.run_recs: dict | None = None
        """running instance -> (its run, its encoded Placement): ``ledger_codec``'s cache"""

    @property
    def key(self) -> TaskKey:
        return (self.job.job.id, self.task.id)

    @property
    def total_failures(self) -> int:
        return sum(self.failures.values())

    def count(self, state: int) -> int:
        return self.states.count(state)

    def open_indices(self, n: int) -> list[int]:
        """The ``n`` lowest open instances (fewer when fewer are open)."""
        out, i, states = [], -1, self.states
        while len(out) < n:
            i = states.find(OPEN, i + 1)
            if i < 0:
                break
            out.append(i)
        return out

    def touch(self) -> None:
        self.rec = None
        self.job.rec = None

    def __repr__(self) -> str:
        return f"TaskEntry({self.job.job.id}/{self.task.id}, open={self.open})"
