"""Discrete-event simulator of a multi-site cluster on a simulated clock.

Events (job arrivals, instance ends, node outages and recoveries) are processed in time
order; after each batch of simultaneous events the policy gets one decision. An instance
allocated to a site runs on one node (the site's best-fit unless the policy chose), for
``transfer + duration`` seconds, holding its resources throughout; a transfer applies when
the site is not the job's origin. With ``SimConfig.malleable`` on, a run is also lengthened
by how many instances its job runs at once and by a warm-up on a node new to the job
(``Malleability``). Failures and overruns are keyed draws on the fault
seed (``draws.uniform``), so every policy meets the same faults; node and site outages kill what runs there and the
work goes back to the open pool. Every instance ends completed, failed (after
``max_attempts``) or unschedulable, with a reason — never silently lost.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field

import numpy as np

from agora.agents.domain import Cluster, Job, Workload, why_unschedulable
from agora.agents.ledger import JobEntry, Ledger, TaskEntry
from agora.agents.policy import Policy
from agora.agents.sim.capacity import Capacity
from agora.agents.sim.config import SimConfig
from agora.agents.sim.decision import Decision
from agora.agents.sim.draws import task_key, uniform
from agora.agents.sim.metrics import Accounting, compute_metrics
from agora.agents.sim.state import Attempt

ARRIVE, END, DOWN, UP = 0, 1, 2, 3


class SimulationError(RuntimeError):
    pass


@dataclass
class SimResult:
    metrics: dict
    jobs: list[JobEntry]
    attempts: list[Attempt]
    unschedulable: list[tuple[str, str, str]]
    """(job id, task id, reason) for every task reported unschedulable"""
    failed: list[tuple[str, str, str]]
    cluster: Cluster
    policy: str
    seeds: dict = field(default_factory=dict)
    cancelled: list[tuple[str, str, str]] = field(default_factory=list)
    """(job id, task id, reason) for every task whose instances were given up unstarted
    because their job failed, was unschedulable or was cancelled"""


class Simulator:
    def __init__(self, cluster: Cluster, workload: Workload,
                 config: SimConfig | None = None) -> None:
        self.cluster = cluster
        self.workload = workload
        self.config = config or SimConfig()
        self.site_index = {s.name: i for i, s in enumerate(cluster.sites)}
        self.n_sites = len(cluster.sites)
        self.rng = np.random.default_rng(self.config.seed)
        self.cap = Capacity(cluster)
        self.ledger = Ledger(max_attempts=cluster.faults.max_attempts)
        self.ledger.on_open = self._on_open
        self.pool = self.ledger.pool
        self.acct = Accounting(cluster, self.cap, self.config.objective)
        self.node_running: list[dict[Attempt, None]] = [{} for _ in range(self.cap.n_nodes)]
        """each node's live attempts, in the order they started (a dict, not a set: a set of
        objects iterates in memory-address order, which made EASY backfilling's reservation
        -- ties among equal end times -- differ from run to run)"""
        self.reopened: set[tuple[str, str]] | None = None
        """keys of the tasks a failed or lost run reopened since the market's last round
        (None: not kept; the simulation engine's clearinghouse keeps it, as every coordinator
        replica does: ``LedgerBook.held``)"""
        self.perm_dead = np.zeros(self.cap.n_nodes, dtype=bool)
        self.down_count = np.zeros(self.cap.n_nodes, dtype=np.int64)  # overlapping outages
        lat = [[0.0 if a == b else cluster.link(a.name, b.name).latency_ms
                for b in cluster.sites] for a in cluster.sites]
        self.nearest: list[list[int]] = [sorted(range(self.n_sites), key=lambda j: (row[j], j))
                                         for row in lat]
        """sites by link latency from each site, itself first"""
        self.jobs: list[JobEntry] = []
        """admitted jobs, in arrival order (every job once the run is over)"""
        self._heap: list[tuple] = []
        self._seq = 0
        self.now = workload.jobs[0].arrival if workload.jobs else 0.0
        self.ctx = Decision(self)
        self.attempts: list[Attempt] = []
        self.events = 0
        self.decisions = 0
        self._reasons: dict[tuple, str | None] = {}
        self.malleable = self.config.malleable if self.config.malleable.on else None
        self.job_running: dict[int, int] = {}
        """running instances per job (JobEntry.seq), kept with ``malleable`` on"""
        self.warm: set[tuple[int, int]] = set()
        """(node, JobEntry.seq) pairs that ran the job (``Malleability.warmup_s``)"""
        for job in workload.jobs:
            self._push(job.arrival, ARRIVE, job)
        for o in cluster.faults.outages:
            nodes = [self.cap.node_names.index(o.node)] if o.node else \
                list(range(*self.cap.site_slice[self.site_index[o.site]].indices(self.cap.n_nodes)))
            self._push(o.at, DOWN, (nodes, o.until is None))
            if o.until is not None:
                self._push(o.until, UP, nodes)

    # -- the loop --------------------------------------------------------------------------
    def run(self, policy: Policy, progress: bool = False) -> SimResult:
        """Replay the whole workload under ``policy``."""
        policy.reset(self)
        bar = _progress(len(self._heap), progress)
        t0 = time.perf_counter()
        self.advance(policy, on_step=None if bar is None else bar.update)
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t0
        if len(self.pool):
            stuck = self.pool.fifo()[:5]
            raise SimulationError(
                f"policy {policy.name!r} left {len(self.pool)} tasks open with nothing running "
                f"or arriving, though they fit (first: {stuck}); a policy must eventually "
                f"allocate work that fits")
        return self.result(policy.name, wall)

    def advance(self, policy: Policy, until: float = math.inf, on_step=None) -> None:
        """Decide under ``policy`` and process every event at or before ``until`` (all of
        them by default), then decide once more if anything changed; ``on_step(n)`` after
        each batch of ``n`` simultaneous events. ``run`` is this to the end; the headroom
        oracle runs epochs of it with different policies."""
        while True:
            if self.pool and self._dirty:
                self.decide(policy)
            t = self.next_event_time
            if t is None or t > until:
                return
            n = self.step_events()
            if on_step is not None:
                on_step(n)

    _dirty = True

    def decide(self, policy: Policy) -> None:
        policy.schedule(self.begin_decision())
        self.end_decision()

    def begin_decision(self) -> Decision:
        """Open a decision at the current time (for drivers other than ``run``, such as the
        PettingZoo environment); close it with ``end_decision``."""
        self.ctx._begin(self.now)
        return self.ctx

    def end_decision(self) -> None:
        self.decisions += 1
        self._dirty = False
        if self.config.check_invariants:
            self.cap.check_invariants()

    @property
    def has_events(self) -> bool:
        """Are events (arrivals, ends, outages) still to come?"""
        return bool(self._heap)

    @property
    def next_event_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def step_events(self) -> int:
        """Process every event at the next event time; returns how many."""
        t = self._heap[0][0]
        self.now = t
        n = 0
        while self._heap and self._heap[0][0] == t:
            _, _, kind, payload = heapq.heappop(self._heap)
            n += 1
            if kind == END:
                self._end(payload)
            elif kind == ARRIVE:
                self._arrive(payload)
            elif kind == DOWN:
                self._down(*payload)
            else:
                self._up(payload)
        self.events += n
        self._dirty = True
        return n

    @property
    def done(self) -> bool:
        return not self._heap and not len(self.pool)

    def result(self, policy_name: str, wall_s: float = 0.0) -> SimResult:
        metrics = compute_metrics(self, wall_s)
        gave_up = self.ledger.gave_up
        return SimResult(metrics=metrics, jobs=self.jobs, attempts=self.attempts,
                         unschedulable=[(j, t, why) for j, t, o, why in gave_up
                                        if o == "unschedulable"],
                         failed=[(j, t, why) for j, t, o, why in gave_up if o == "failed"],
                         cancelled=[(j, t, why) for j, t, o, why in gave_up
                                    if o == "cancelled"],
                         cluster=self.cluster, policy=policy_name,
                         seeds={"policy": self.config.seed, "faults": self.cluster.faults.seed,
                                "workload": self.workload.seed})

    # -- events ----------------------------------------------------------------------------
    def _push(self, t: float, kind: int, payload) -> None:
        heapq.heappush(self._heap, (t, self._seq, kind, payload))
        self._seq += 1

    def _why_unschedulable(self, ts: TaskEntry) -> str | None:
        k = ts.shape
        if k not in self._reasons:
            self._reasons[k] = why_unschedulable(ts.demand, self.cluster)
        return self._reasons[k]

    def _arrive(self, job: Job) -> None:
        js = self.ledger.admit(job, self.site_index[job.origin], self.now)
        self.jobs.append(js)
        for ts in js.tasks:
            reason = self._why_unschedulable(ts)
            if reason is not None:
                self.ledger.reject(js, ts, reason)
                return

    def _on_open(self, ts: TaskEntry) -> None:
        """After permanent outages, can some remaining node still hold ``ts``? If not, the
        task (and what depends on it) is reported unschedulable."""
        if not self.perm_dead.any() or (self.cap.static_mask(ts.demand) & ~self.perm_dead).any():
            return
        self.ledger.unschedulable(ts, "no node that fits it remains after permanent outages")

    def _start(self, ts: TaskEntry, node: int, now: float, device: int | None = None) -> None:
        inst = ts.open_indices(1)[0]
        slots = self.cap.place(node, ts.demand, device)
        self.ledger.start(ts, inst, node, slots)
        self.launch(ts, inst, node, slots)

    def launch(self, ts: TaskEntry, inst: int, node: int, slots: tuple) -> None:
        """Run instance ``inst`` of ``ts`` on ``node`` from now (the ledger and capacity
        already hold it there): its end is drawn and scheduled."""
        now = self.now
        site = int(self.cap.node_site[node])
        transfer = 0.0
        if site != ts.job.origin:
            link = self.cluster.link(ts.job.job.origin, self.cluster.sites[site].name)
            transfer = link.transfer_s(ts.task.data_mb)
        run, fails, fail_at = fault_draws(self.cluster.faults, ts, inst)
        warmup = 0.0
        if self.malleable is not None:
            run, warmup = self._malleable(ts, node, run)
        end = now + transfer + warmup + (run * fail_at if fails else run)
        a = Attempt(ts, inst, node, site, now, end, slots, transfer, fails)
        self.node_running[node][a] = None
        if self.config.record_attempts:
            self.attempts.append(a)
        self._push(end, END, a)

    def _malleable(self, ts: TaskEntry, node: int, run: float) -> tuple[float, float]:
        """(run seconds, warm-up seconds) of an instance of ``ts`` starting on ``node`` now,
        under ``SimConfig.malleable`` (see ``Malleability``)."""
        m, seq = self.malleable, ts.job.seq
        k = self.job_running.get(seq, 0) + 1
        self.job_running[seq] = k
        warmup = 0.0
        if (node, seq) not in self.warm:
            self.warm.add((node, seq))
            warmup = m.warmup_s
        return run * (1.0 + m.contention * (k - 1)), warmup

    def _stop(self, a: Attempt, end: float, outcome: str) -> None:
        if self.malleable is not None:
            self.job_running[a.task.job.seq] -= 1
        a.live = False
        a.outcome = outcome
        a.end = end
        self.node_running[a.node].pop(a, None)
        self.cap.release(a.node, a.task.demand, a.slots)
        self.acct.run(a)

    def _end(self, a: Attempt) -> None:
        if not a.live:
            return                        # killed earlier by an outage
        self._stop(a, self.now, "failed" if a.fails else "completed")
        if a.fails:
            self._fail(a, count=True)
        else:
            self.ledger.complete(a.task, a.instance, self.now)
            self.acct.completed(a.task)

    def _fail(self, a: Attempt, *, count: bool) -> None:
        """Attempt ``a`` stopped without completing (``count``: a failed attempt; else
        lost): its site marked either way, the task kept in ``reopened`` if it reopened."""
        _, reopened = self.ledger.fail(a.task, a.instance, self.now, count=count, mark=True)
        if reopened and self.reopened is not None:
            self.reopened.add(a.task.key)

    def _down(self, nodes: list[int], permanent: bool) -> None:
        for node in nodes:
            self.down_count[node] += 1
            if permanent:
                self.perm_dead[node] = True
            if self.down_count[node] > 1:
                continue                  # already down (overlapping node and site outage)
            self.acct.node_down(node, self.now)
            self.cap.set_alive(node, False)
            for a in list(self.node_running[node]):
                self._stop(a, self.now, "killed")
                # lost, no attempt spent, but the site is marked as for a failure: the
                # coordinator's rule (``Ledger.fail``'s ``mark``), so that both engines
                # place it alike
                self._fail(a, count=False)
                self.acct.preempted += 1
        if permanent:
            for ts in self.pool.fifo():
                self._on_open(ts)

    def _up(self, nodes: list[int]) -> None:
        for node in nodes:
            self.down_count[node] -= 1
            if self.down_count[node] == 0 and not self.perm_dead[node]:
                self.acct.node_up(node, self.now)
                self.cap.set_alive(node, True)


def fault_draws(f, ts: TaskEntry, inst: int) -> tuple[float, bool, float]:
    """(run seconds, fails, the fraction of the run at which it fails) of the next attempt
    of instance ``inst`` of ``ts`` under the faults ``f``: keyed draws on (fault seed, job
    id, task id, instance, attempt), so every policy and every engine (the simulator, a site's
    simulated executor in replay) meets the same faults."""
    run = ts.duration
    attempt = ts.failures.get(inst, 0)
    key = (f.seed, task_key(ts.job.job.id, ts.task.id), inst, attempt)
    if f.overrun_prob and uniform(*key, 0) < f.overrun_prob:
        run *= f.overrun_factor
    fails = bool(f.task_failure_prob) and uniform(*key, 1) < f.task_failure_prob
    return run, fails, uniform(*key, 2)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="ev", desc="simulating", leave=False, mininterval=0.5)
