"""Workload transforms: measure offered load, compress arrivals to a target load, cut windows.

Replayed on its own clock the Alibaba openb pod list offers about 0.2% of its cluster's gpus
(it is a snapshot of pods, which Weng et al. replay by filling the cluster, not in time), so a
comparison of schedulers on it needs the arrivals compressed. ``at_load`` scales the gaps
between arrivals (durations unchanged, deadlines keep their slack) so the offered load on the
dominant resource is the target; it draws nothing at random.
"""

from __future__ import annotations

import math
from dataclasses import replace

from agora.agents.domain import Cluster, Workload, fits_node
from agora.agents.limits import MAX_TIME

RESOURCES = ("cpu", "mem", "gpu")

MAX_JOBS = 10_000_000
"""jobs a transform may make (``inflate``): the synthetic generator's bound on ``jobs``"""
MAX_INFLATE = 1000.0
"""the largest inflation factor an input may ask for (``agora --inflate``, a federation
setup's ``inflate``)"""


class TransformError(ValueError):
    """A transform that cannot be applied, or whose result would leave the documented bounds
    (``agents/limits.py``: an arrival or deadline past ``MAX_TIME`` gave JCT 0 s, a billion
    clones ran out of memory). ``step`` is ``"arrivals"`` (``scale_arrivals``, ``at_load``)
    or ``"inflate"``, so a caller can name the option that asked for it."""

    def __init__(self, step: str, message: str, expected: str | None = None) -> None:
        self.step = step
        self.expected = expected
        """what would be right, when the bounds are not what is wrong"""
        super().__init__(message)


def _need_span(workload: Workload) -> None:
    """TransformError when ``workload``'s arrivals have no gaps to scale (a probe: --load
    and --arrival-window on jobs that all arrive at once did nothing, said nothing)."""
    if workload.jobs and workload.jobs[-1].arrival <= workload.jobs[0].arrival:
        n = len(workload.jobs)
        raise TransformError("arrivals", f"the workload's {n} job(s) all arrive at "
                                         f"{workload.jobs[0].arrival:g} s, so there are no "
                                         f"gaps between arrivals to scale",
                             "a workload whose jobs arrive over time, or no arrival scaling")


def _check_times(workload: Workload, step: str, what: str) -> None:
    """TransformError unless every arrival and deadline of ``workload`` is within MAX_TIME."""
    for j in workload.jobs:
        for name, t in (("arrival", j.arrival), ("deadline", j.deadline)):
            if t is not None and not (math.isfinite(t) and t <= MAX_TIME):
                raise TransformError(step, f"{what} puts job {j.id!r}'s {name} at {t:g} s, "
                                           f"past the bound of {MAX_TIME:,.0f} s")


def offered_load(workload: Workload, cluster: Cluster) -> dict[str, float]:
    """Per resource: Σ demand × duration over the instances of the jobs the cluster can run
    / (capacity × arrival span). A job with a task no node can hold never runs (it is
    reported unschedulable), so its work is left out (a probe: "load 0.9" of a rigid SWF
    trace whose jobs wider than any node held 63% of the core-seconds ran at 0.3).

    The arrival span is last − first arrival (at least the mean duration, so a workload that
    arrives all at once still has a finite load). Resources the cluster lacks are left out."""
    if not workload.jobs:
        return {}
    work = [0.0, 0.0, 0.0]
    total_duration, n = 0.0, 0
    fits: dict = {}                           # demand -> some node holds it (shapes repeat)
    for j in workload.jobs:
        for t in j.tasks:
            if fits.get(t.demand) is None:
                fits[t.demand] = any(fits_node(t.demand, node) for node in cluster.nodes)
        if not all(fits[t.demand] for t in j.tasks):
            continue
        for t in j.tasks:
            k = t.instances * t.duration
            work[0] += t.demand.cpu * k
            work[1] += t.demand.mem * k
            work[2] += t.demand.gpu * k
            total_duration += k
            n += t.instances
    span = workload.jobs[-1].arrival - workload.jobs[0].arrival
    span = max(span, total_duration / max(n, 1), 1e-9)
    cap = cluster.capacity()
    return {r: work[i] / (cap[i] * span) for i, r in enumerate(RESOURCES) if cap[i] > 0}


def scale_arrivals(workload: Workload, factor: float) -> Workload:
    """Multiply every gap between arrivals by ``factor`` (> 0); deadlines move with their
    job's arrival."""
    if not (factor > 0 and math.isfinite(factor)):
        raise TransformError("arrivals", f"arrival scale factor must be > 0 and finite, "
                                         f"got {factor}")
    if not workload.jobs:
        return workload
    t0 = workload.jobs[0].arrival
    jobs = []
    for j in workload.jobs:
        a = t0 + (j.arrival - t0) * factor
        d = None if j.deadline is None else a + (j.deadline - j.arrival)
        jobs.append(replace(j, arrival=round(a, 3), deadline=None if d is None else round(d, 3)))
    out = replace(workload, jobs=tuple(jobs),
                  source=f"{workload.source} | arrivals x{factor:.6g}")
    _check_times(out, "arrivals", f"scaling the gaps between arrivals by {factor:.6g}")
    return out


def at_load(workload: Workload, cluster: Cluster, load: float) -> Workload:
    """The workload with arrivals compressed or stretched so the offered load on its dominant
    resource is ``load`` (e.g. 0.9)."""
    if not 0 < load <= 10:
        raise ValueError(f"target load must be in (0, 10], got {load}")
    _need_span(workload)
    current = max(offered_load(workload, cluster).values(), default=0.0)
    if current <= 0:
        raise TransformError("arrivals", "the workload asks for no resources on the cluster "
                                         "(or no job of it fits a node); its load cannot "
                                         "be scaled",
                             "a workload whose tasks ask for some cpu, memory or gpu, and "
                             "jobs the cluster can hold")
    return scale_arrivals(workload, current / load)


def window(workload: Workload, start: float, end: float) -> Workload:
    """Jobs arriving in [start, end) (e.g. to keep training and evaluation windows apart)."""
    jobs = tuple(j for j in workload.jobs if start <= j.arrival < end)
    return replace(workload, jobs=jobs, source=f"{workload.source} | window [{start:g}, {end:g})")


__all__ = ["offered_load", "scale_arrivals", "at_load", "window", "inflate", "TransformError",
           "MAX_JOBS", "MAX_INFLATE", "arrival_window"]


def arrival_window(workload: Workload, seconds: float) -> Workload:
    """The workload with its arrivals spread over ``seconds`` (first to last)."""
    _need_span(workload)
    if not workload.jobs:
        return workload
    return scale_arrivals(workload, seconds / (workload.jobs[-1].arrival
                                              - workload.jobs[0].arrival))


def inflate(workload: Workload, factor: float, *, seed: int = 0) -> Workload:
    """Clone jobs until there are ``factor`` times as many (Weng et al.'s workload inflation,
    ATC 2023): each clone keeps its original's shape and duration, gets id ``<id>~<k>`` (with
    ``~<k>`` again while the workload has that id already) and an
    arrival drawn uniformly over the workload's arrival window (seeded by ``seed``, recorded
    in the source). ``factor`` 1 returns the workload unchanged."""
    import numpy as np

    if not (factor >= 1 and math.isfinite(factor)):
        raise TransformError("inflate", f"inflation factor must be >= 1 and finite, got "
                                        f"{factor}")
    if factor == 1 or not workload.jobs:
        return workload
    n = len(workload.jobs)
    extra = int(round((factor - 1) * n))
    if n + extra > MAX_JOBS:
        raise TransformError("inflate", f"inflating {n:,} jobs x{factor:g} makes "
                                        f"{n + extra:,} jobs, more than {MAX_JOBS:,}")
    rng = np.random.default_rng(seed)
    t0, t1 = workload.jobs[0].arrival, workload.jobs[-1].arrival
    picks = rng.integers(0, n, size=extra)
    arrivals = rng.uniform(t0, max(t1, t0 + 1e-3), size=extra)
    jobs = list(workload.jobs)
    used = {j.id for j in jobs}
    for k, (i, a) in enumerate(zip(picks, arrivals)):
        j = workload.jobs[int(i)]
        d = None if j.deadline is None else round(a + (j.deadline - j.arrival), 3)
        cid = f"{j.id}~{k}"
        while cid in used:              # the input had such an id already (a probe)
            cid += f"~{k}"
        used.add(cid)
        jobs.append(replace(j, id=cid, arrival=round(float(a), 3), deadline=d))
    jobs.sort(key=lambda j: (j.arrival, j.id))
    out = replace(workload, jobs=tuple(jobs),
                  source=f"{workload.source} | inflate x{factor:g} seed={seed}")
    _check_times(out, "inflate", f"inflating x{factor:g}")
    return out
