"""Seeded synthetic workloads shaped to a cluster.

``generate`` draws job bodies (single tasks and DAGs of stages), durations from a short/long
exponential mix, cpu/mem/gpu demands that always fit some node of the cluster, and data sizes;
then it draws Poisson arrivals at the rate that offers ``load`` on the cluster's dominant
resource, origins (uniform or Zipf-like over sites) and deadlines. Every draw comes from one
``numpy.random.default_rng(seed)``, so a seed and the parameters (recorded in
``Workload.source``, readable back with ``params_from_source``) reproduce a workload exactly.

The offered load of a resource r is ``lambda * E[work_r per job] / capacity_r``, where the
work of a job is the sum over its instances of demand_r x duration (the utilisation an ideal
scheduler would see, as in queueing theory's rho = lambda / mu). The arrival rate is calibrated
on the jobs actually drawn, so only the Poisson gaps make the measured load differ from
``load`` (relative error about 1 / sqrt(jobs)).
"""

from __future__ import annotations

import bisect
import math
import numbers

import numpy as np

from agora.agents.domain import MILLI, Cluster, Demand, Job, Task, Workload, fits_node
from agora.agents.limits import MAX_TIME

# Demand mix. Smaller requests are the common case in production traces (Alibaba, Borg).
_CPU_CORES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
_CPU_CUM = tuple(np.cumsum((0.30, 0.25, 0.20, 0.12, 0.08, 0.05)).tolist())
_GIB_PER_CORE = (1, 2, 4, 8)
_GPU_SHARES = (250, 500, 750)
"""milli-gpus of one shared gpu"""
_WHOLE_GPUS = (1, 2, 4)
_SHARE_P = 0.5
"""of the gpu tasks, the fraction that take a share of one gpu (the rest take whole gpus)"""
_MODEL_P = 0.3
"""of the gpu tasks, the fraction restricted to one gpu model"""
_FAN_IN_P = 0.3
"""probability that a non-final DAG stage has two parallel tasks both feeding the next"""
_MAX_REDRAWS = 64
"""redraws of a demand that fits no node before it is clamped to the largest fitting node"""

# name -> (kind, low, high, low_open, doc); kind "int" or "float". Checked by _validate.
_PARAMS: dict[str, tuple[str, float, float, bool, str]] = {
    "seed": ("int", 0, 2**63 - 1, False, "seed of the one numpy generator"),
    "jobs": ("int", 1, 10_000_000, False, "number of jobs"),
    "load": ("float", 0.0, 10.0, True, "offered load on the dominant resource"),
    "dag": ("float", 0.0, 1.0, False, "fraction of DAG jobs"),
    "long_frac": ("float", 0.0, 1.0, False, "fraction of long tasks"),
    "short_mean": ("float", 0.0, 1e6, True, "mean short duration, s"),
    "long_mean": ("float", 0.0, 1e7, True, "mean long duration, s"),
    "gpu_frac": ("float", 0.0, 1.0, False, "fraction of gpu tasks"),
    "deadline_frac": ("float", 0.0, 1.0, False, "fraction of jobs with a deadline"),
    "deadline_slack": ("float", 1.0, 1000.0, False, "deadline / critical path"),
    "origin_skew": ("float", 0.0, 10.0, False, "Zipf exponent over sites"),
    "data_mb_mean": ("float", 0.0, 1e7, False, "mean input size, MB"),
    "max_stages": ("int", 2, 64, False, "most stages of a DAG job"),
    "max_instances": ("int", 1, 4096, False, "most instances of a task"),
}


def generate(cluster: Cluster, *, seed: int = 0, jobs: int = 400, load: float = 0.85,
             dag: float = 0.5, long_frac: float = 0.2, short_mean: float = 60.0,
             long_mean: float = 1800.0, gpu_frac: float = 0.2, deadline_frac: float = 0.3,
             deadline_slack: float = 3.0, origin_skew: float = 0.0,
             data_mb_mean: float = 200.0, max_stages: int = 4,
             max_instances: int = 8) -> Workload:
    """A seeded synthetic workload for ``cluster``; same arguments, same Workload.

    Args:
        cluster: the cluster the jobs are shaped to: every demand fits some node of it when
            empty, gpu models come from its nodes, origins from its sites, and the arrival
            rate from its capacity.
        seed: seed of the one ``numpy.random.default_rng`` every draw comes from; int >= 0.
        jobs: number of jobs; int, 1..10,000,000 (typically 100..10,000).
        load: offered load on the dominant resource, lambda x mean work / capacity; in
            (0, 10] (typically 0.5..1.2; above 1 the queue grows without bound).
        dag: fraction of jobs that are DAGs of 2..max_stages stages; [0, 1] (typ. 0.3..0.7).
        long_frac: probability that a task is long rather than short; [0, 1] (typ. 0.1..0.3).
        short_mean: mean duration of a short task, seconds; (0, 1e6] (typically 10..300).
        long_mean: mean duration of a long task, seconds; (0, 1e7] (typically 600..7200).
        gpu_frac: probability that a task needs gpu; [0, 1] (typically 0..0.4); ignored
            when the cluster has no gpus.
        deadline_frac: fraction of jobs given a deadline; [0, 1] (typically 0.2..0.5).
        deadline_slack: deadline = arrival + slack x critical path; [1, 1000]
            (typically 1.5..5; 1 leaves no room for any wait).
        origin_skew: Zipf exponent of the origin sites (site i weighs 1/(i+1)^skew in the
            cluster's site order); [0, 10] (0 uniform, typically 0..2).
        data_mb_mean: mean input size of a task, MB; [0, 1e7] (typically 10..2000).
        max_stages: most stages of a DAG job, int; 2..64 (typically 3..6).
        max_instances: most instances of one task, int; 1..4096 (typically 1..32).

    Raises:
        ValueError: a parameter out of its range (the message names it, its value and the
            range), or a cluster without nodes or without capacity.
    """
    params = dict(seed=seed, jobs=jobs, load=load, dag=dag, long_frac=long_frac,
                  short_mean=short_mean, long_mean=long_mean, gpu_frac=gpu_frac,
                  deadline_frac=deadline_frac, deadline_slack=deadline_slack,
                  origin_skew=origin_skew, data_mb_mean=data_mb_mean, max_stages=max_stages,
                  max_instances=max_instances)
    _validate(params)
    nodes = cluster.nodes
    if not nodes:
        raise ValueError("cluster has no nodes; a synthetic workload needs at least one")
    capacity = cluster.capacity()
    if capacity[0] <= 0 and capacity[1] <= 0:
        raise ValueError("cluster has no cpu and no memory on any node")
    if capacity[2] == 0:
        gpu_frac = 0.0
    rng = np.random.default_rng(int(seed))
    demands = _DemandDrawer(rng, nodes, sorted(cluster.gpu_models))

    # 1. Job bodies: tasks, their critical path and their work per resource.
    is_dag = np.zeros(jobs, dtype=bool)
    is_dag[rng.permutation(jobs)[: round(dag * jobs)]] = True
    bodies: list[tuple[tuple[Task, ...], float]] = []
    work = [0.0, 0.0, 0.0]  # cpu millicore-s, MiB-s, milli-gpu-s
    for i in range(jobs):
        n_stages = int(rng.integers(2, max_stages + 1)) if is_dag[i] else 1
        tasks: list[Task] = []
        prev: tuple[str, ...] = ()
        critical = 0.0
        for s in range(n_stages):
            width = 2 if (s < n_stages - 1 and rng.random() < _FAN_IN_P) else 1
            stage: list[Task] = []
            for _ in range(width):
                long = rng.random() < long_frac
                dur = round(max(1.0, float(rng.exponential(long_mean if long else short_mean))), 1)
                inst = int(rng.integers(1, max_instances + 1))
                dem = demands.draw(rng.random() < gpu_frac)
                data = float(round(float(rng.exponential(data_mb_mean)))) if data_mb_mean else 0.0
                stage.append(Task(id=f"t{len(tasks) + len(stage)}", duration=dur, demand=dem,
                                  instances=inst, after=prev, data_mb=data))
                w = inst * dur
                work[0] += dem.cpu * w
                work[1] += dem.mem * w
                work[2] += dem.gpu * w
            critical += max(t.duration for t in stage)
            tasks.extend(stage)
            prev = tuple(t.id for t in stage)
        bodies.append((tuple(tasks), critical))

    # 2. Poisson arrivals at the rate that offers `load` on the dominant resource.
    per_job = max(work[r] / jobs / capacity[r] for r in range(3) if capacity[r] > 0)
    if per_job <= 0:
        raise ValueError("the drawn jobs need no resource the cluster has; cannot set a rate")
    rate = load / per_job  # jobs per second
    # a load so small that the rate underflows to 0 (3e-324) spaces arrivals infinitely far
    # apart: refused below by the span check, as any load too small for MAX_TIME is
    gaps = rng.exponential(1.0 / rate if rate > 0 else math.inf, size=jobs - 1)
    arrivals = np.concatenate(([0.0], np.cumsum(gaps)))
    if arrivals[-1] > MAX_TIME:
        least = 2 * (jobs - 1) * per_job / MAX_TIME
        raise ValueError(f"load must offer the {jobs} jobs within {MAX_TIME:g} s (the longest a "
                         f"workload may span), got {load!r}: its arrivals would reach "
                         f"{arrivals[-1]:.3g} s; use load >= {least:.2g} (or fewer jobs)")

    # 3. Origins and deadlines.
    sites = cluster.site_names
    weights = 1.0 / np.arange(1, len(sites) + 1, dtype=float) ** origin_skew
    origins = rng.choice(len(sites), size=jobs, p=weights / weights.sum())
    has_deadline = np.zeros(jobs, dtype=bool)
    has_deadline[rng.permutation(jobs)[: round(deadline_frac * jobs)]] = True

    out = []
    for i, (tasks, critical) in enumerate(bodies):
        arrival = round(float(arrivals[i]), 3)
        deadline = None
        if has_deadline[i]:
            # Rounded up so that slack 1 still leaves exactly the critical path.
            deadline = math.ceil((arrival + deadline_slack * critical) * 10 - 1e-6) / 10
        out.append(Job(id=f"j{i:05d}", arrival=arrival, origin=sites[int(origins[i])],
                       tasks=tasks, deadline=deadline))
    # Plain Python numbers, so that numpy scalars print as numbers too.
    shown = {k: (int(v) if _PARAMS[k][0] == "int" else float(v)) for k, v in params.items()}
    source = "synthetic:" + ",".join(f"{k}={v!r}" for k, v in shown.items())
    return Workload(jobs=tuple(out), source=f"{source},cluster={cluster.source}", seed=int(seed))


def params_from_source(source: str) -> dict:
    """The keyword arguments of ``generate`` recorded in a ``Workload.source`` it wrote, plus
    ``cluster``: the source string of the cluster it was drawn for (to be loaded by the
    caller). Raises ValueError on a string ``generate`` did not write."""
    prefix = "synthetic:"
    if not source.startswith(prefix):
        raise ValueError(f"not a synthetic workload source: {source!r}")
    body, sep, cluster = source[len(prefix):].partition(",cluster=")
    if not sep:
        raise ValueError(f"synthetic source lacks 'cluster=': {source!r}")
    out: dict = {}
    for item in body.split(","):
        key, eq, val = item.partition("=")
        if not eq or key not in _PARAMS:
            raise ValueError(f"unknown item {item!r} in synthetic source {source!r}")
        out[key] = int(val) if _PARAMS[key][0] == "int" else float(val)
    missing = sorted(set(_PARAMS) - set(out))
    if missing:
        raise ValueError(f"synthetic source lacks {missing}: {source!r}")
    out["cluster"] = cluster
    return out


class _DemandDrawer:
    """Draws demands that fit some node of the cluster when empty (redraws, all from the
    caller's generator; clamps in the rare case that many redraws fail)."""

    def __init__(self, rng: np.random.Generator, nodes, gpu_models: list[str]) -> None:
        self.rng = rng
        self.nodes = nodes
        self.gpu_models = gpu_models
        self._fits: dict[tuple, bool] = {}

    def draw(self, needs_gpu: bool) -> Demand:
        d = self._draw_once(needs_gpu)
        for _ in range(_MAX_REDRAWS):
            if self._fits_some(d):
                return d
            d = self._draw_once(needs_gpu)
        return d if self._fits_some(d) else self._clamp(d)

    def _draw_once(self, needs_gpu: bool) -> Demand:
        rng = self.rng
        cores = _CPU_CORES[bisect.bisect(_CPU_CUM, rng.random() * _CPU_CUM[-1])]
        ratio = _GIB_PER_CORE[int(rng.integers(len(_GIB_PER_CORE)))]
        cpu, mem = round(cores * MILLI), round(cores * ratio * 1024)
        if not needs_gpu:
            return Demand(cpu=cpu, mem=mem)
        if rng.random() < _SHARE_P:
            gpu = _GPU_SHARES[int(rng.integers(len(_GPU_SHARES)))]
        else:
            gpu = _WHOLE_GPUS[int(rng.integers(len(_WHOLE_GPUS)))] * MILLI
        models = None
        if self.gpu_models and rng.random() < _MODEL_P:
            models = frozenset((self.gpu_models[int(rng.integers(len(self.gpu_models)))],))
        return Demand(cpu=cpu, mem=mem, gpu=gpu, gpu_models=models)

    def _fits_some(self, d: Demand) -> bool:
        key = d.key
        ok = self._fits.get(key)
        if ok is None:
            ok = self._fits[key] = any(fits_node(d, n) for n in self.nodes)
        return ok

    def _clamp(self, d: Demand) -> Demand:
        """Shrink ``d`` onto the biggest node that offers what it asks for (its gpu model if
        any, else any gpu, else none), so that the result fits that node."""
        gpu, models = d.gpu, d.gpu_models
        cands = [n for n in self.nodes if gpu and n.gpus
                 and (models is None or n.gpu_model in models)]
        if gpu and not cands:
            models = None
            cands = [n for n in self.nodes if n.gpus]
        if not cands:
            gpu, models, cands = 0, None, list(self.nodes)
        node = max(cands, key=lambda n: (n.gpus, n.cpu, n.mem))
        if gpu >= MILLI:
            gpu = min(d.whole_gpus, node.gpus) * MILLI
        return Demand(cpu=min(d.cpu, node.cpu), mem=min(d.mem, node.mem), gpu=gpu,
                      gpu_models=models if gpu else None)


def _validate(params: dict) -> None:
    for name, value in params.items():
        kind, lo, hi, lo_open, doc = _PARAMS[name]
        left = "(" if lo_open else "["
        if kind == "int":
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            rng_text = f"an integer in {left}{lo}, {hi}]"
        else:
            ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                  and math.isfinite(value))
            rng_text = f"in {left}{lo:g}, {hi:g}]"
        if ok:
            ok = (value > lo if lo_open else value >= lo) and value <= hi
        if not ok:
            raise ValueError(f"{name} must be {rng_text}, got {value!r} ({doc})")
