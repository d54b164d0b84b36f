"""The one definition of every metric Agora reports (simulation and, later, the cluster).

- **JCT** (job completion time) = completion − arrival, over completed jobs; mean, p95 and the
  weight-weighted mean. **Slowdown** is bounded (Feitelson): max(JCT, τ) / max(ideal, τ),
  where ideal is the job's critical path, τ = ``Objective.slowdown_bound_s``.
- **Makespan** = last instance end − first job arrival (seconds).
- **Utilisation** of a resource = Σ (instance demand × time it held it, transfers, failed and
  preempted runs included) / (Σ capacity × time the node was up), over the makespan window —
  an *allocation* utilisation, as cluster operators measure it.
- **Deadline-miss rate** = jobs with a deadline that did not complete by it (including jobs
  that never completed) / jobs with a deadline.
- **Energy** (kWh): every node draws its idle power while up, plus a load-proportional part
  for what runs on it (``PowerModel``), times the site's PUE.
- **Energy efficiency** ∈ [0, 1] = the least dynamic energy the completed work could have
  drawn (each instance on the node type that runs it most cheaply) / the energy drawn (0 when
  the completed work draws none: zero-duration or zero-demand jobs).
- **QoS** ∈ (0, 1] = the mean over completed jobs of 1 / (1 + ln slowdown) (a normalised log
  slowdown: 1 at no wait, 0.59 at slowdown 2, 0.30 at 10, 0.16 at 200, 0.10 at 10,000), averaged
  with (1 − deadline-miss rate) when the workload has deadlines. It stays informative at any
  load: 1 / mean slowdown, used before, collapsed to ~0 under heavy queueing, so the score
  ranked policies by utilisation alone (on a real trace at high load the policies with 200×
  lower slowdown got the lowest scores); a mean of per-job terms is not ruled by one job. **Score** = w_util·U + w_qos·QoS + w_energy·E (seed paper §3.2),
  with U the mean utilisation over cpu, mem and (if the cluster has any) gpu.
- **Tasks lost** = instances neither completed, failed, reported unschedulable nor
  cancelled (never started because their job failed, was found unschedulable or was
  cancelled): it must always be 0, and a run where it is not is a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agora.agents.domain import MILLI, Cluster
from agora.agents.sim.capacity import Capacity
from agora.agents.sim.config import Objective

if TYPE_CHECKING:
    from agora.agents.sim.engine import Simulator
    from agora.agents.ledger import TaskEntry
    from agora.agents.sim.state import Attempt

J_PER_KWH = 3.6e6


class Accounting:
    """Running sums the metrics need, updated as attempts end."""

    def __init__(self, cluster: Cluster, cap: Capacity, objective: Objective) -> None:
        self.cap = cap
        self.objective = objective
        site_power = [s.power for s in cluster.sites]
        p = [site_power[s] for s in cap.node_site]
        self.pue = np.array([x.pue for x in p])
        self.idle_w = np.array([x.node_idle_w + g * x.gpu_idle_w
                                for x, g in zip(p, cap.gpu_count)]) * self.pue
        # Load-proportional watts per millicore and per milli-gpu, per node.
        self.w_per_mcpu = np.array([(x.node_peak_w - x.node_idle_w) for x in p]) \
            * self.pue / np.maximum(cap.cap_cpu, 1)
        self.w_per_mgpu = np.array([(x.gpu_peak_w - x.gpu_idle_w) / MILLI for x in p]) * self.pue
        self.work = np.zeros(3)               # cpu-milli·s, MiB·s, gpu-milli·s held
        self.dynamic_j = 0.0
        self.ideal_j = 0.0
        self._ideal_rate: dict[tuple, float] = {}
        self.downtime = np.zeros(cap.n_nodes)
        self._down_since: dict[int, float] = {}
        self.instances_done = 0
        self.preempted = 0
        self.retries = 0
        self.transfers = 0
        self.first_start: float | None = None
        self.last_end: float | None = None

    def run(self, a: Attempt) -> None:
        held = a.end - a.start
        d = a.task.demand
        self.work += (d.cpu * held, d.mem * held, d.gpu * held)
        self.dynamic_j += held * (d.cpu * self.w_per_mcpu[a.node] + d.gpu * self.w_per_mgpu[a.node])
        if a.transfer:
            self.transfers += 1
        if a.fails:
            self.retries += 1
        self.last_end = a.end if self.last_end is None else max(self.last_end, a.end)

    def completed(self, ts: TaskEntry) -> None:
        self.instances_done += 1
        d = ts.demand
        rate = self._ideal_rate.get(d.key)
        if rate is None:
            m = self.cap.static_mask(d)
            rate = float(np.min((d.cpu * self.w_per_mcpu + d.gpu * self.w_per_mgpu)[m]))
            self._ideal_rate[d.key] = rate
        self.ideal_j += ts.duration * rate

    def node_down(self, node: int, now: float) -> None:
        self._down_since[node] = now

    def node_up(self, node: int, now: float) -> None:
        self.downtime[node] += now - self._down_since.pop(node)


def qos_of(slowdowns: list[float]) -> float:
    """Mean of 1 / (1 + ln s) over bounded slowdowns s >= 1 (0.0 for none): see the module."""
    if not slowdowns:
        return 0.0
    s = np.maximum(np.asarray(slowdowns, dtype=float), 1.0)
    return float(np.mean(1.0 / (1.0 + np.log(s))))


def _pct(x: list[float], q: float) -> float:
    return float(np.percentile(x, q)) if x else 0.0


def compute_metrics(sim: Simulator, wall_s: float) -> dict:
    """The metrics of a finished simulation."""
    return metrics_of(cluster_cap=sim.cap, objective=sim.config.objective, jobs=sim.jobs,
                      acct=sim.acct, gave_up=sim.ledger.instances_gave_up,
                      instances=sim.workload.instance_count, events=sim.events,
                      decisions=sim.decisions, wall_s=wall_s)


def metrics_of(*, cluster_cap: Capacity, objective: Objective, jobs: list, acct: Accounting,
               gave_up: dict[str, int], instances: int, events: int, decisions: int,
               wall_s: float) -> dict:
    """Every metric from what any engine records: the jobs' outcomes and completions
    (``JobEntry``), the runs accounted in ``acct``, the instances given up by outcome."""
    cap, obj = cluster_cap, objective
    t0 = jobs[0].job.arrival if jobs else 0.0
    t_end = acct.last_end if acct.last_end is not None else t0
    span = max(t_end - t0, 0.0)
    downtime = acct.downtime.copy()
    for node, since in acct._down_since.items():     # still down at the end
        downtime[node] += max(t_end - since, 0.0)
    up = np.clip(span - downtime, 0.0, None)

    done = [j for j in jobs if j.outcome == "completed"]
    jct = [j.completion - j.job.arrival for j in done]
    w = [j.job.weight for j in done]
    tau = obj.slowdown_bound_s
    slow = [max(c, tau) / max(j.critical_path, tau) for c, j in zip(jct, done)]
    with_deadline = [j for j in jobs if j.job.deadline is not None]
    missed = sum(1 for j in with_deadline
                 if j.outcome != "completed" or j.completion > j.job.deadline + 1e-9)

    util = {}
    for name, i, capv in (("cpu", 0, cap.cap_cpu), ("mem", 1, cap.cap_mem), ("gpu", 2, cap.cap_gpu)):
        denom = float((capv * up).sum())
        util[name] = float(acct.work[i] / denom) if denom > 0 else None
    present = [u for u in util.values() if u is not None]
    u_mean = float(np.mean(present)) if present else 0.0

    energy_j = float((acct.idle_w * up).sum()) + acct.dynamic_j
    efficiency = acct.ideal_j / energy_j if energy_j > 0 else 0.0
    mean_slow = float(np.mean(slow)) if slow else 0.0
    qos = qos_of(slow)
    miss_rate = missed / len(with_deadline) if with_deadline else 0.0
    if with_deadline and slow:
        qos = 0.5 * qos + 0.5 * (1.0 - miss_rate)
    score = obj.w_util * u_mean + obj.w_qos * qos + obj.w_energy * efficiency

    total = instances
    failed, unsched = gave_up.get("failed", 0), gave_up.get("unschedulable", 0)
    cancelled = gave_up.get("cancelled", 0)
    accounted = acct.instances_done + failed + unsched + cancelled
    return {
        "jobs": len(jobs),
        "jobs_completed": len(done),
        "jobs_unschedulable": sum(1 for j in jobs if j.outcome == "unschedulable"),
        "jobs_failed": sum(1 for j in jobs if j.outcome == "failed"),
        "instances": total,
        "instances_completed": acct.instances_done,
        "instances_failed": failed,
        "instances_unschedulable": unsched,
        "instances_cancelled": cancelled,
        "tasks_lost": total - accounted,
        "jct_mean_s": float(np.mean(jct)) if jct else 0.0,
        "jct_p95_s": _pct(jct, 95),
        "jct_weighted_mean_s": float(np.dot(jct, w) / np.sum(w)) if jct else 0.0,
        "slowdown_mean": mean_slow,
        "makespan_s": span,
        "util_cpu": util["cpu"],
        "util_mem": util["mem"],
        "util_gpu": util["gpu"],
        "util_mean": u_mean,
        "deadline_miss_rate": miss_rate,
        "energy_kwh": energy_j / J_PER_KWH,
        "energy_efficiency": efficiency,
        "qos": qos,
        "score": score,
        "retries": acct.retries,
        "preemptions": acct.preempted,
        "remote_runs": acct.transfers,
        "events": events,
        "decisions": decisions,
        "wall_s": wall_s,
        "events_per_s": events / wall_s if wall_s > 0 else 0.0,
    }
