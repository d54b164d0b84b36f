"""The metrics of a schedule that really ran, from its committed log: what ``agora replay``
(and, with real work, ``agora up``) reports, by the same definitions as the simulator
(``agents.sim.metrics``).

A ``LogAccount`` follows the coordinator's updates as any watcher does, applying them to its
own ledger (``agents.ledger_codec.apply_update``): job admissions, allocations (the node of
each instance) and instance ends (with the start and end times the site's executor
reported). Every end is one run accounted like a simulator's attempt; jobs complete when the
ledger says so, at the time of their last instance's end.
"""

from __future__ import annotations

from agora.agents.domain import Cluster
from agora.agents.ledger import Ledger
from agora.agents.ledger_codec import apply_update
from agora.agents.sim.capacity import Capacity
from agora.agents.sim.config import Objective
from agora.agents.sim.metrics import Accounting, metrics_of
from agora.agents.sim.state import Attempt


class LogAccount:
    def __init__(self, cluster: Cluster, *, objective: Objective | None = None) -> None:
        self.cluster = cluster
        self.cap = Capacity(cluster)
        self.objective = objective or Objective()
        self.acct = Accounting(cluster, self.cap, self.objective)
        self.ledger = Ledger(max_attempts=cluster.faults.max_attempts)
        self.site_index = {s: i for i, s in enumerate(cluster.site_names)}
        self.node_index = {n.name: i for i, n in enumerate(cluster.nodes)}
        self.version = 0
        self._position = (0, -1)
        self.updates = 0
        self.runs: list[Attempt] = []
        self.allocations = 0

    def apply(self, u) -> None:
        """One committed ``ScheduleUpdate`` (in version order)."""
        if (u.version, u.sub) <= self._position:
            return
        self._position = (u.version, u.sub)
        for c in u.changes:
            ts = self.ledger.tasks[(c.job_id, c.task_id)]
            for inst in range(c.instance_begin, c.instance_end):
                node = ts.placements[inst][0]
                site = int(self.cap.node_site[node])
                transfer = 0.0
                if self.cluster.site_names[site] != ts.job.job.origin:
                    transfer = self.cluster.link(ts.job.job.origin, self.cluster.site_names[
                        site]).transfer_s(ts.task.data_mb)
                a = Attempt(ts, inst, node, site, c.start_s, c.end_s, (), transfer,
                            c.kind == "failed")
                a.outcome = c.kind
                self.runs.append(a)
                if c.start_s or c.end_s:          # a lapse or a node outage: no times
                    self.acct.run(a)
                if c.kind == "completed":
                    self.acct.completed(ts)
        apply_update(self.ledger, u, self.site_index, self.node_index, compact=False)
        self.allocations += len(u.allocations)
        self.version = u.version
        self.updates += 1

    @property
    def done(self) -> bool:
        """Every admitted job finished (completed or given up, nothing running)."""
        return all(js.finished for js in self.ledger.jobs.values())

    def metrics(self, *, instances: int, wall_s: float, decisions: int = 0) -> dict:
        jobs = list(self.ledger.jobs.values())
        _downtime(self.acct, self.cluster, self.cap, jobs)
        return metrics_of(cluster_cap=self.cap, objective=self.objective, jobs=jobs,
                          acct=self.acct, gave_up=self.ledger.instances_gave_up,
                          instances=instances, events=self.updates, decisions=decisions,
                          wall_s=wall_s)


def _downtime(acct: Accounting, cluster: Cluster, cap: Capacity, jobs: list) -> None:
    """The cluster file's outages as node downtime within the run (overlapping outages of
    one node counted once, as the simulator counts them)."""
    if not jobs:
        return
    t0 = jobs[0].job.arrival
    t_end = acct.last_end if acct.last_end is not None else t0
    spans: dict[int, list[tuple[float, float]]] = {}
    for o in cluster.faults.outages:
        nodes = [cap.node_names.index(o.node)] if o.node else list(range(
            *cap.site_slice[cluster.site_names.index(o.site)].indices(cap.n_nodes)))
        lo, hi = max(o.at, t0), min(o.until if o.until is not None else t_end, t_end)
        for n in nodes:
            if hi > lo:
                spans.setdefault(n, []).append((lo, hi))
    for n, xs in spans.items():
        xs.sort()
        cur_lo, cur_hi = xs[0]
        for lo, hi in xs[1:]:
            if lo > cur_hi:
                acct.downtime[n] += cur_hi - cur_lo
                cur_lo, cur_hi = lo, hi
            else:
                cur_hi = max(cur_hi, hi)
        acct.downtime[n] += cur_hi - cur_lo
