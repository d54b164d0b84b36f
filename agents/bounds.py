"""Lower bounds on what any scheduler can achieve, reported as "gap to bound" beside the
heuristic schedulers.

- :func:`analytic_lower_bounds`: cheap closed-form bounds for instances of any size (a
  volume / "energy" bound and a critical-path bound, the two classical lower bounds of
  resource-constrained project scheduling; Brucker et al., EJOR 112, 1999);
- :func:`cpsat_schedule` (in :mod:`agents.bounds_cpsat`): an exact CP-SAT reference schedule
  for small instances (at most 200 task instances);
- :func:`gap_to_bound`: the relative gap of a measured value to a bound.

Every bound here ignores transfer delays (they are >= 0, so dropping them keeps the bounds
valid), and faults, overruns and outages (they only lengthen a real run). They assume job
weights >= 0.

Makespan convention: the simulator measures makespan as *last completion - first arrival*.
``analytic_lower_bounds`` gives both the absolute end time bound (``makespan``, on the
workload's clock) and the span bound (``makespan_span = makespan - first_arrival``); compare
the simulator's makespan with ``makespan_span``, as does ``CpSatResult.value``.
"""

from __future__ import annotations

from dataclasses import replace

from agora.agents.bounds_cpsat import MAX_INSTANCES, CpSatResult, Placement, cpsat_schedule
from agora.agents.domain import Cluster, Job, Workload, why_unschedulable

__all__ = ["MAX_INSTANCES", "CpSatResult", "Placement", "analytic_lower_bounds",
           "cpsat_schedule", "gap_to_bound", "runnable"]


def runnable(workload: Workload, cluster: Cluster
             ) -> tuple[Workload, list[tuple[str, str, str]]]:
    """The jobs of ``workload`` whose every task fits some node of ``cluster`` when it is
    empty -- what a scheduler can run: the simulator refuses a job with a task that fits no
    node at its arrival -- and (job id, task id, why) for each job left out."""
    keep, out, reasons = [], [], {}
    for job in workload.jobs:
        for task in job.tasks:
            if task.demand not in reasons:
                reasons[task.demand] = why_unschedulable(task.demand, cluster)
            if reasons[task.demand] is not None:
                out.append((job.id, task.id, reasons[task.demand]))
                break
        else:
            keep.append(job)
    return (workload if not out else replace(workload, jobs=tuple(keep))), out


def job_work(job: Job) -> tuple[float, float, float]:
    """Resource-seconds of one job: sum over instances of demand x duration, per resource
    (millicore-s, MiB-s, milli-gpu-s)."""
    cpu = mem = gpu = 0.0
    for t in job.tasks:
        cpu += t.instances * t.demand.cpu * t.duration
        mem += t.instances * t.demand.mem * t.duration
        gpu += t.instances * t.demand.gpu * t.duration
    return cpu, mem, gpu


def analytic_lower_bounds(workload: Workload, cluster: Cluster) -> dict[str, float]:
    """Lower bounds valid for every schedule of ``workload`` on ``cluster``.

    Keys (seconds unless said otherwise; a is an arrival, a0 the first one):

    - ``first_arrival``: a0, the first arrival of a job that can run, seconds on the workload's
      clock (0.0 for a workload with none);
    - ``makespan_work``: max over resources r with capacity > 0 of a0 + W_r / cap_r, W_r the
      total work (sum over instances of demand_r x duration) and cap_r the cluster's total
      capacity of r. An absolute end time. Resources without capacity are skipped (work on
      them can never run; the simulator reports such tasks as failed);
    - ``makespan_work_release``: the same with release times, max over distinct arrivals a of
      a + (work of jobs arriving at or after a) / cap_r; never below ``makespan_work`` (a = a0
      gives it back). An absolute end time;
    - ``makespan_critical_path``: max over jobs of arrival + critical path. Absolute;
    - ``makespan``: the max of the three above: no schedule ends before it. Absolute;
    - ``makespan_span``: ``makespan - first_arrival``, a bound on the simulator's makespan
      (last completion - first arrival). Use this one for gap_to_bound;
    - ``sum_weighted_completion``: sum_j weight_j x L_j, a bound on
      sum_j weight_j x (C_j - arrival_j) (weight x seconds), where L_j, a bound on job j's
      own completion time, is the larger of its critical path and max over resources of its
      own work over the cluster's capacity (all of it runs after its arrival);
    - ``mean_jct``: mean over jobs of L_j, a bound on the mean job completion time
      C_j - arrival_j (0.0 for an empty workload);
    - ``jobs_left_out``: how many jobs were left out of every bound because a task of theirs
      fits no node (``runnable``: the simulator refuses them). ``first_arrival`` is then the
      first arrival of a job that can run: the simulator's makespan, which starts at the
      first arrival of any job, is never shorter than ``makespan_span``.

    Transfer delays are ignored (they are >= 0), so these stay valid whatever the placement.
    The critical-path bounds also ignore contention, the work bounds ignore precedence and
    the fact that an instance occupies a single node: both are loose on different instances.
    """
    out = dict.fromkeys(("first_arrival", "makespan_work", "makespan_work_release",
                         "makespan_critical_path", "makespan", "makespan_span",
                         "sum_weighted_completion", "mean_jct", "jobs_left_out"), 0.0)
    run_wl, left_out = runnable(workload, cluster)
    jobs = run_wl.jobs
    out["jobs_left_out"] = float(len(left_out))
    if not jobs:
        return out
    a0 = float(min(j.arrival for j in jobs))
    caps = cluster.capacity()  # (millicores, MiB, milli-gpus), gpus counted as gpus * MILLI
    works = [job_work(j) for j in jobs]
    live = [(r, cap) for r, cap in enumerate(caps) if cap > 0]
    paths = [max([j.critical_path()] + [w[r] / cap for r, cap in live])
             for j, w in zip(jobs, works)]
    work_bound = max([a0] + [a0 + sum(w[r] for w in works) / cap for r, cap in live])
    # Release-aware: sweep arrivals from the last, summing the work released at or after each.
    release_bound, later = a0, [0.0, 0.0, 0.0]
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].arrival, reverse=True)
    for pos, i in enumerate(order):
        later = [x + y for x, y in zip(later, works[i])]
        a = jobs[i].arrival
        if pos + 1 == len(order) or jobs[order[pos + 1]].arrival != a:  # last job at a
            release_bound = max([release_bound] + [a + later[r] / cap for r, cap in live])
    cp_bound = max(j.arrival + j.critical_path() for j in jobs)
    end = max(work_bound, release_bound, cp_bound)
    out.update(first_arrival=a0, makespan_work=work_bound, makespan_work_release=release_bound,
               makespan_critical_path=cp_bound, makespan=end, makespan_span=end - a0,
               sum_weighted_completion=sum(j.weight * p for j, p in zip(jobs, paths)),
               mean_jct=sum(paths) / len(paths))
    return out


def gap_to_bound(value: float, bound: float) -> float:
    """Relative gap ``(value - bound) / bound`` of a measured ``value`` (a makespan, a
    weighted completion sum, ...) to a lower ``bound`` of the same quantity in the same
    convention (for makespan: the span, ``makespan_span``). 0.0 means the value meets the
    bound (so it is optimal); 0.25 means 25 % above the bound, which is an upper limit on
    how far from optimal it is. A negative gap means value and bound do not measure the same
    thing (or the bound is wrong). Raises ValueError unless ``bound > 0``."""
    if not bound > 0:
        raise ValueError(f"gap_to_bound needs a bound > 0, got {bound}; a zero bound (e.g. an "
                         f"empty workload) has no relative gap, report the absolute value")
    return (value - bound) / bound
