"""An exact reference schedule for small instances, by constraint programming (CP-SAT, the
lazy-clause-generation solver of OR-Tools; Perron & Didier, "CP-SAT", 2023).

The model is the Agora scheduling problem without faults: every task instance runs once,
without preemption, on one node, after its job's arrival and after every instance of each
parent task; cpu and memory are cumulative per node; gpus are modelled per device (a
cumulative of capacity 1000 for each gpu of each node), so a share (< 1000 milli-gpus) sits
on ONE gpu and a whole-gpu demand of k takes k distinct, entirely free gpus. An instance
placed at a site other than its job's origin runs ``duration + transfer`` seconds, the
transfer being ``cluster.link(origin, site).transfer_s(data_mb)`` (latency included, even for
``data_mb == 0``, as Link.transfer_s counts it).

Time is integer in units of ``resolution_s`` (default 1 s) counted from the first arrival.
For the schedule, lengths (transfers included) and release times are rounded UP to whole
units, so every schedule of the model is feasible in real time. When that rounding changes
anything, the bound comes from a second model rounded DOWN, a relaxation of the real problem
(a real schedule with its times rounded down is a schedule of it), so ``best_bound`` is
always a lower bound on the real instance, safe for gap_to_bound against the simulator.
With arrivals, durations and transfers in whole units the two models coincide (exact).

The solver is hinted with a serial list schedule, so even a short time limit returns a
schedule. Only for small instances: more than :data:`MAX_INSTANCES` instances are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

from ortools.sat.python import cp_model

from agora.agents.bounds_cpsat_hint import serial_schedule
from agora.agents.domain import MILLI, Cluster, Job, Task, Workload, fits_node

MAX_INSTANCES = 200
"""largest number of task instances :func:`cpsat_schedule` accepts"""
WEIGHT_SCALE = 1000
"""job weights are multiplied by this and rounded to integers in the CP-SAT objective"""
_EPS = 1e-9  # float noise tolerated when rounding up (2.0000000001 s is 2 s)

Objective = Literal["makespan", "weighted_completion"]
_STATUS = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE",
           cp_model.INFEASIBLE: "INFEASIBLE", cp_model.UNKNOWN: "UNKNOWN"}


class Placement(NamedTuple):
    """Where and when one task instance runs in the schedule."""

    job_id: str
    task_id: str
    instance_index: int
    node: str
    start: float
    """seconds, on the workload's clock"""
    end: float
    """seconds, on the workload's clock; ``end - start`` includes any transfer delay"""
    gpus: tuple[int, ...] = ()
    """indices of the node's gpus it uses (one for a share, k for k whole gpus)"""


@dataclass(frozen=True, slots=True)
class CpSatResult:
    status: str
    """"OPTIMAL" (proven optimal for the rounded-up model, see ``proven_optimal`` for the
    real instance), "FEASIBLE" (a schedule, not proven optimal), "INFEASIBLE" (some task
    fits no node) or "UNKNOWN" (no schedule; not expected, the serial hint is one)"""
    objective: str
    """"makespan" or "weighted_completion" """
    value: float | None
    """objective of the schedule: makespan = last end - first arrival (seconds), or
    sum_j weight_j * (C_j - arrival_j) (weight x seconds, with the real weights); None
    without a schedule"""
    best_bound: float | None
    """proven lower bound on the real instance's optimum, same units: the solver's bound,
    raised to the analytic bound where that is higher, and at most ``value``"""
    placements: tuple[Placement, ...]
    """one per task instance, in workload order; empty without a schedule"""
    solve_time_s: float
    """solver wall time, seconds"""
    proven_optimal: bool
    """``value == best_bound``: the schedule is optimal for the real instance"""
    resolution_s: float
    """seconds per model time unit"""
    message: str = ""
    """why there is no schedule, or that the schedule is the hint (the solver found none)"""


class _Inst(NamedTuple):
    job: Job
    task: Task
    k: int
    lengths: dict[int, int]
    """node index -> length in units (transfer included) on every node it fits"""
    slots: int
    """gpus of the node it takes: 0, 1 for a share, k for k whole gpus"""


def _units(seconds: float, resolution_s: float, up: bool = True) -> int:
    """Whole model time units covering ``seconds`` (``up``), or within them (not ``up``)."""
    if up:
        return max(0, math.ceil(seconds / resolution_s - _EPS))
    return max(0, math.floor(seconds / resolution_s + _EPS))


def _instances(jobs: list[Job], cluster: Cluster, resolution_s: float,
               up: bool) -> list[_Inst] | str:
    """Every task instance with where it fits and its lengths there (rounded ``up`` or
    down), or why some task fits nowhere."""
    out = []
    for job in jobs:
        for task in job.tasks:
            g = task.demand.gpu
            if g >= MILLI and g % MILLI:
                raise ValueError(f"job {job.id} task {task.id}: gpu demand {g} milli-gpus is "
                                 f">= 1000 but not a multiple of 1000; use a share (< 1000) "
                                 f"or whole gpus")
            lengths = {}
            for n, node in enumerate(cluster.nodes):
                if fits_node(task.demand, node):
                    link = cluster.link(job.origin, node.site)
                    extra = link.transfer_s(task.data_mb) if link is not None else 0.0
                    lengths[n] = _units(task.duration + extra, resolution_s, up)
            if task.instances > 0 and not lengths:
                return f"job {job.id} task {task.id} fits no node of the cluster"
            out += [_Inst(job, task, k, lengths, 0 if g == 0 else max(1, g // MILLI))
                    for k in range(task.instances)]
    return out


def _build(insts: list[_Inst], release: dict[str, int], cluster: Cluster, objective: str,
           hint: list, horizon: int, weights: dict[str, int], floor: int):
    """The CP-SAT model: returns it and per instance (start, end, per fitting node (node
    index, presence literal, literals of the node's gpus it takes))."""
    nodes = cluster.nodes
    model = cp_model.CpModel()
    records = []
    node_iv: list[list[tuple[cp_model.IntervalVar, Task]]] = [[] for _ in nodes]
    gpu_iv: dict[tuple[int, int], list[tuple[cp_model.IntervalVar, int]]] = {}
    for (job, task, k, lengths, slots), (hn, hs, hg) in zip(insts, hint):
        tag = f"{job.id}/{task.id}/{k}"
        start = model.new_int_var(release[job.id], horizon, f"s[{tag}]")
        model.add_hint(start, hs)
        options = []
        for n, ln in lengths.items():
            at = f"{tag}@{nodes[n].name}"
            x = model.new_bool_var(f"x[{at}]")
            model.add_hint(x, n == hn)
            node_iv[n].append((model.new_optional_fixed_size_interval_var(
                start, ln, x, f"iv[{at}]"), task))
            gl = []
            for g in range(nodes[n].gpus if slots else 0):
                y = model.new_bool_var(f"y[{at}#{g}]")
                model.add_hint(y, n == hn and g in hg)
                gpu_iv.setdefault((n, g), []).append((model.new_optional_fixed_size_interval_var(
                    start, ln, y, f"gv[{at}#{g}]"), min(task.demand.gpu, MILLI)))
                gl.append(y)
            if slots:
                model.add(sum(gl) == slots * x)  # k distinct gpus, or one gpu for a share
            options.append((n, x, gl))
        model.add_exactly_one(x for _, x, _ in options)
        records.append((start, start + sum(lengths[n] * x for n, x, _ in options), options))
    # The hint's ends, with these lengths (a hint made with longer lengths stays feasible).
    hint_end = [s + i.lengths[n] for i, (n, s, _) in zip(insts, hint)]

    # Dependencies: a task-level end >= every instance end; children start after it.
    task_end: dict[tuple[str, str], cp_model.IntVar] = {}
    for i, (_, end, _), e in zip(insts, records, hint_end):
        key = (i.job.id, i.task.id)
        if key not in task_end:
            task_end[key] = model.new_int_var(0, horizon, f"E[{key[0]}/{key[1]}]")
            model.add_hint(task_end[key], max(e2 for i2, e2 in zip(insts, hint_end)
                                              if (i2.job.id, i2.task.id) == key))
        model.add(task_end[key] >= end)
    for i, (start, _, _) in zip(insts, records):
        for p in i.task.after:
            if (i.job.id, p) in task_end:  # a parent with 0 instances finishes at once
                model.add(start >= task_end[(i.job.id, p)])

    def cumulative(items: list[tuple[cp_model.IntervalVar, int]], cap: int) -> None:
        items = [(iv, d) for iv, d in items if d > 0]
        if sum(d for _, d in items) > cap:  # otherwise it can never bind
            model.add_cumulative([iv for iv, _ in items], [d for _, d in items], cap)

    for n, ivs in enumerate(node_iv):
        cumulative([(iv, t.demand.cpu) for iv, t in ivs], nodes[n].cpu)
        cumulative([(iv, t.demand.mem) for iv, t in ivs], nodes[n].mem)
        # Redundant with the per-gpu constraints below, but it propagates better.
        cumulative([(iv, t.demand.gpu) for iv, t in ivs], nodes[n].gpus * MILLI)
    for ivs in gpu_iv.values():
        cumulative(ivs, MILLI)
    # Redundant cluster-wide volume constraints: an instance occupies at least its shortest
    # length from its start, wherever it runs.
    shortest = [(model.new_fixed_size_interval_var(start, min(i.lengths.values()), f"min{n}"),
                 i.task.demand) for n, (i, (start, _, _)) in enumerate(zip(insts, records))]
    for r, cap in enumerate(cluster.capacity()):
        cumulative([(iv, (d.cpu, d.mem, d.gpu)[r]) for iv, d in shortest], cap)

    if objective == "makespan":
        obj = model.new_int_var(min(floor, horizon), horizon, "makespan")
        model.add_hint(obj, max(hint_end))
        for _, end, _ in records:
            model.add(obj >= end)
        model.minimize(obj)
    else:
        jobs = {i.job.id: i.job for i in insts}
        done = {j: model.new_int_var(release[j], horizon, f"C[{j}]") for j in jobs}
        for i, (_, end, _) in zip(insts, records):
            model.add(done[i.job.id] >= end)
        for j in jobs:
            model.add_hint(done[j], max(e for i, e in zip(insts, hint_end) if i.job.id == j))
        model.minimize(sum(weights[j] * done[j] for j in done))
    return model, records


class ModelRejected(RuntimeError):
    """CP-SAT refused the model it was given (e.g. an objective that could overflow its 64-bit
    integers: weights, durations and arrivals too large together)."""


def _solve(model: cp_model.CpModel, time_limit_s: float, workers: int,
           seed: int) -> tuple[str, cp_model.CpSolver]:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.0, float(time_limit_s))
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    code = solver.solve(model)
    if code == cp_model.MODEL_INVALID:
        # its reason opens a dump of the model's variables and coefficients
        why = (model.validate().strip().splitlines() or ["invalid"])[0]
        raise ModelRejected(why.partition(": vars")[0][:160])
    return _STATUS[code], solver


def cpsat_schedule(workload: Workload, cluster: Cluster, *,
                   objective: Objective = "makespan", time_limit_s: float = 10.0,
                   workers: int = 2, seed: int = 0, resolution_s: float = 1.0) -> CpSatResult:
    """Solve ``workload`` on ``cluster`` with CP-SAT, minimising ``objective``.

    ``objective``: "makespan" (last end - first arrival) or "weighted_completion"
    (sum_j weight_j * (C_j - arrival_j), C_j the end of the job's last instance; inside the
    solver weights are scaled by WEIGHT_SCALE and rounded to integers).
    ``time_limit_s``: solver wall-clock limit for the whole call (model building, ~0.1 s
    for 200 instances, is extra); ``workers``: CP-SAT search workers (threads); ``seed``:
    CP-SAT ``random_seed`` (a run stopped by the time limit may still differ between runs
    with several workers). ``resolution_s``: seconds per integer time unit.

    The schedule comes from the model with lengths and releases rounded up. When rounding
    (of times or weights) changed anything, a second solve, of the model rounded down (a
    relaxation: every real schedule maps onto it), gives ``best_bound``, so that bound is
    valid for the real instance either way; the two solves share the time limit.
    The horizon is the last release + the sum of every instance's longest length (a serial
    schedule), cut to the hint's makespan for the makespan objective.
    Raises ValueError when the workload has more than MAX_INSTANCES task instances.
    """
    if objective not in ("makespan", "weighted_completion"):
        raise ValueError(f"objective must be 'makespan' or 'weighted_completion', "
                         f"not {objective!r}")
    if not resolution_s > 0:
        raise ValueError(f"resolution_s must be > 0 seconds, not {resolution_s}")
    n_inst = workload.instance_count
    if n_inst > MAX_INSTANCES:
        raise ValueError(f"cpsat_schedule: the workload has {n_inst} task instances, more than "
                         f"the {MAX_INSTANCES} an exact CP-SAT solve can handle; use "
                         f"agents.bounds.analytic_lower_bounds() for large instances")

    def result(status: str, **kw) -> CpSatResult:
        base = dict(status=status, objective=objective, value=None, best_bound=None,
                    placements=(), solve_time_s=0.0, proven_optimal=status == "OPTIMAL",
                    resolution_s=resolution_s)
        return CpSatResult(**(base | kw))

    jobs = [j for j in workload.jobs if j.instance_count > 0]
    if not jobs:
        return result("OPTIMAL", value=0.0, best_bound=0.0)
    t0 = min(j.arrival for j in workload.jobs)
    nodes = cluster.nodes
    insts = _instances(jobs, cluster, resolution_s, up=True)
    if isinstance(insts, str):
        return result("INFEASIBLE", message=insts)
    release = {j.id: _units(j.arrival - t0, resolution_s) for j in jobs}
    hint = serial_schedule(insts, release, nodes)
    hint_end = [s + i.lengths[n] for i, (n, s, _) in zip(insts, hint)]
    horizon = max(release.values()) + sum(max(i.lengths.values()) for i in insts)
    if objective == "makespan":  # some optimal schedule ends no later than the hint
        horizon = min(horizon, max(hint_end))
    from agora.agents.bounds import analytic_lower_bounds  # lazy: agents.bounds imports this module
    analytic = analytic_lower_bounds(workload, cluster)
    weights = {j.id: round(j.weight * WEIGHT_SCALE) for j in jobs}

    # Relaxed (rounded-down) data, for the bound; identical when times and weights are exact.
    insts_dn = _instances(jobs, cluster, resolution_s, up=False)
    release_dn = {j.id: _units(j.arrival - t0, resolution_s, up=False) for j in jobs}
    weights_dn = {j.id: math.floor(j.weight * WEIGHT_SCALE + _EPS) for j in jobs}
    exact = (release_dn == release and weights_dn == weights
             and all(a.lengths == b.lengths for a, b in zip(insts, insts_dn)))

    # The analytic bounds hold for the real instance, hence for the rounded-up model; on the
    # rounded-down one they hold only rounded down.
    model, records = _build(insts, release, cluster, objective, hint, horizon, weights,
                            floor=_units(analytic["makespan_span"], resolution_s))
    status, solver = _solve(model, time_limit_s if exact else time_limit_s / 2, workers, seed)
    solve_time = solver.wall_time
    if status == "INFEASIBLE":  # not expected: the hint is a schedule
        return result(status, solve_time_s=solve_time, message="CP-SAT: infeasible")
    message, chosen = "", hint
    if status == "UNKNOWN":
        status, message = "FEASIBLE", "CP-SAT found no schedule in time; this is its hint"
    else:
        chosen = []
        for start, _, options in records:
            n, _, gl = next(o for o in options if solver.boolean_value(o[1]))
            chosen.append((n, solver.value(start),
                           tuple(g for g, y in enumerate(gl) if solver.boolean_value(y))))
    bound_units = solver.best_objective_bound
    if not exact:
        relaxed, _ = _build(insts_dn, release_dn, cluster, objective, hint, horizon, weights_dn,
                            floor=_units(analytic["makespan_span"], resolution_s, up=False))
        _, solver_dn = _solve(relaxed, time_limit_s - solve_time, workers, seed)
        solve_time += solver_dn.wall_time
        bound_units = solver_dn.best_objective_bound

    placements, ends = [], {}
    for i, (n, s, gpus) in zip(insts, chosen):
        e = s + i.lengths[n]
        placements.append(Placement(i.job.id, i.task.id, i.k, nodes[n].name,
                                    t0 + s * resolution_s, t0 + e * resolution_s, gpus))
        ends[i.job.id] = max(ends.get(i.job.id, 0), e)
    offset = 0.0
    if objective == "makespan":
        value = max(ends.values()) * resolution_s
        bound = max(bound_units * resolution_s, analytic["makespan_span"])
    else:
        # C_j - a_j = t0 + C_units * resolution - a_j; the model's weights are <= the real
        # ones (rounded down) when not exact, so the bound holds with the real weights.
        value = sum(j.weight * (t0 + ends[j.id] * resolution_s - j.arrival) for j in jobs)
        offset = sum(j.weight * (t0 - j.arrival) for j in jobs)
        bound = max(bound_units / WEIGHT_SCALE * resolution_s + offset,
                    analytic["sum_weighted_completion"])
    bound = min(bound, value)
    # float noise only, of the terms summed (the offset cancels in the bound): 1e-9 of the
    # value was a whole second of real gap at 1e9 s (a probe)
    proven = value <= bound + 1e-12 * (1.0 + abs(value) + abs(offset))
    if proven and message:      # a probe: "proven_optimal" beside "found no schedule"
        message += ", and it meets the lower bound: optimal"
    return result(status, value=value, best_bound=bound, message=message,
                  placements=tuple(placements), solve_time_s=solve_time,
                  proven_optimal=proven)
