"""The world a cluster-engine run replays: nodes, running work and the clock.

In simulated-time replay the nodes of every site and the work running on them are the
simulator's (``agents.sim.engine.Simulator``): this subclass only records what crosses to
the distributed system, so the driver can forward it --

- jobs that arrived (submitted to the coordinator by the operator client),
- instances that ended, with the *coordinator's* instance index (reported to the
  coordinator by the site agent of the site they ran at),

and starts instances exactly where the coordinator's committed allocation put them
(``start_allocated``). The coordinator numbers a task's instances itself (lowest open
first); the simulator keeps its own numbering, so every start records the pair.
"""

from __future__ import annotations

from agents.domain import Cluster, Workload
from agents.sim.config import SimConfig
from agents.sim.engine import Simulator
from agents.sim.state import Attempt, JobState, TaskState


class WorldMismatch(RuntimeError):
    """The coordinator's committed schedule does not fit the world: a bug, never ignored."""


class ClusterWorld(Simulator):
    def __init__(self, cluster: Cluster, workload: Workload, config: SimConfig) -> None:
        if cluster.faults.outages:
            raise ValueError("the cluster engine does not replay node or site outages (the "
                             "coordinator has no node-down command yet); remove "
                             "faults.outages from the cluster file")
        super().__init__(cluster, workload, config)
        self.arrived: list[JobState] = []
        self.ended: list[tuple[int, str, str, int, str]] = []
        """(site index, job id, task id, coordinator instance, 'completed' | 'failed')"""
        self._coord: dict[tuple[int, int], int] = {}
        """(id(task state), simulator instance) -> coordinator instance, while it runs"""
        self.tasks = {(js.job.id, ts.task.id): ts for js in self.jobs for ts in js.tasks}
        self.node_index = {n.name: i for i, n in enumerate(cluster.nodes)}

    def _arrive(self, js: JobState) -> None:
        super()._arrive(js)
        if js.outcome != "unschedulable":
            self.arrived.append(js)

    def start_allocated(self, job: str, task: str, begin: int, end: int, node: str,
                        site: int) -> None:
        """Start instances [begin, end) of a task on ``node`` as the coordinator allocated."""
        ts = self.tasks.get((job, task))
        n = self.node_index.get(node)
        if ts is None or n is None:
            raise WorldMismatch(f"allocation of unknown {job}/{task} on {node!r}")
        for coord in range(begin, end):
            sim_inst = ts.requeued[-1] if ts.requeued else ts.next_fresh
            if self.ctx.assign(ts, site, 1, node=n) != 1:
                raise WorldMismatch(f"the coordinator allocated {job}/{task}[{coord}] on "
                                    f"{node}, where the world has no room or no open "
                                    f"instance (open {ts.open})")
            self._coord[(id(ts), sim_inst)] = coord

    def _stop(self, a: Attempt, end: float, outcome: str) -> None:
        super()._stop(a, end, outcome)
        coord = self._coord.pop((id(a.task), a.instance))
        ts: TaskState = a.task
        self.ended.append((a.site, ts.job.job.id, ts.task.id, coord,
                           "completed" if outcome == "completed" else "failed"))

    def take_arrived(self) -> list[JobState]:
        out, self.arrived = self.arrived, []
        return out

    def take_ended(self) -> list[tuple[int, str, str, int, str]]:
        out, self.ended = self.ended, []
        return out
