"""Reader for the Standard Workload Format (SWF) of the Parallel Workloads Archive.

Lines starting with ``;`` are header comments (blank lines are skipped too); every other line
has exactly 18 whitespace-separated numbers, named here as in the archive: job_number,
submit_time, wait_time, run_time, allocated_processors, average_cpu_time, used_memory,
requested_processors, requested_time, requested_memory, status, user_id, group_id,
executable, queue, partition, preceding_job, think_time. -1 means "unknown".

Mapping (times in seconds, memory from KB to MiB rounded up):

- one SWF job -> one :class:`Job` ``id = str(job_number)``, arrival = submit_time, origin =
  ``site_names[job_number % N]``, weight 1;
- processors P = allocated_processors, or requested_processors when that is -1;
- memory per processor = ceil(used_memory / 1024) MiB, or ``mem_per_proc_mib`` when
  used_memory is -1;
- default: one task ``main`` with ``instances = P``, each instance 1 cpu core and one
  processor's memory, running run_time seconds. **Instances are independent copies, not
  gang-scheduled**: they may start at different times and on different nodes and sites, so
  a parallel job is treated as a bag of P sequential tasks;
- ``rigid=True``: one instance demanding P cores and P processors' memory on one node.

Jobs the archive marks as not run (run_time -1, or P <= 0 after the fallback) are skipped
and counted: :func:`read_swf_report` returns them in :class:`SwfReport` (``skipped`` and the
job numbers); :func:`read_swf` returns only the workload and logs the count.
``Workload.source`` is the path.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from agora.agents.domain import MILLI, Cluster, Demand, Job, Task, Workload
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.yamlmarks import read_text, split_lines

FIELDS = ("job_number", "submit_time", "wait_time", "run_time", "allocated_processors",
          "average_cpu_time", "used_memory", "requested_processors", "requested_time",
          "requested_memory", "status", "user_id", "group_id", "executable", "queue",
          "partition", "preceding_job", "think_time")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SwfReport:
    """What :func:`read_swf_report` read: the workload and the jobs it skipped."""

    workload: Workload
    skipped_jobs: tuple[int, ...]
    """job numbers of jobs not run (run_time -1 or no processors), in file order"""

    @property
    def skipped(self) -> int:
        return len(self.skipped_jobs)


def read_swf(path: str | Path, cluster: Cluster, *, rigid: bool = False,
             mem_per_proc_mib: int = 1024) -> Workload:
    """Read an SWF file (see module doc); the count of skipped jobs is logged at INFO."""
    report = read_swf_report(path, cluster, rigid=rigid, mem_per_proc_mib=mem_per_proc_mib)
    if report.skipped:
        log.info("%s: skipped %d jobs that did not run", report.workload.source, report.skipped)
    return report.workload


def _number(path: str, line: int, k: int, tok: str) -> float:
    try:
        if not tok.isascii() or "_" in tok:
            raise ValueError
        v = float(tok)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise InputError(path=path, line=line, field=FIELDS[k], problem=f"found {tok!r}",
                         expected="a finite number (-1 when unknown)")
    return v


def _whole(path: str, line: int, k: int, v: float, lo: int | None) -> int:
    if v != int(v) or (lo is not None and v < lo):
        raise InputError(path=path, line=line, field=FIELDS[k],
                         problem=f"found {v:g}" + (" (negative)" if v < 0 else ""),
                         expected="a whole number" + (f" >= {lo}" if lo is not None else ""))
    return int(v)


def read_swf_report(path: str | Path, cluster: Cluster, *, rigid: bool = False,
                    mem_per_proc_mib: int = 1024) -> SwfReport:
    """Read an SWF file into a workload plus the list of skipped jobs."""
    path = str(path)
    sites = cluster.site_names
    if not sites:
        raise InputError(path=path, line=None, field=None, problem="the cluster has no sites",
                         expected="a cluster with at least one site")
    if isinstance(mem_per_proc_mib, bool) or not isinstance(mem_per_proc_mib, int) \
            or mem_per_proc_mib < 0:
        raise InputError(path=path, line=None, field="mem_per_proc_mib",
                         problem=f"found {mem_per_proc_mib!r}", expected="a whole MiB >= 0")
    jobs: list[Job] = []
    skipped: list[int] = []
    seen: dict[int, int] = {}
    demands: dict[tuple[int, int], Demand] = {}
    n = len(FIELDS)
    for line, text in enumerate(split_lines(read_text(path, "an SWF file")), 1):
        s = text.strip()
        if not s or s.startswith(";"):
            continue
        toks = s.split()
        if len(toks) != n:
            field = FIELDS[len(toks)] if len(toks) < n else None
            raise InputError(path=path, line=line, field=field,
                             problem=f"found {len(toks)} fields" +
                                     (f", {field} and later missing" if field else ""),
                             expected=f"{n} whitespace-separated numbers "
                                      f"({' '.join(FIELDS)})")
        v = [_number(path, line, k, t) for k, t in enumerate(toks)]
        num = _whole(path, line, 0, v[0], 0)
        if num in seen:
            raise InputError(path=path, line=line, field="job_number",
                             problem=f"job {num} already listed on line {seen[num]}",
                             expected="unique job numbers")
        seen[num] = line
        if v[1] < 0:
            raise InputError(path=path, line=line, field="submit_time",
                             problem=f"found {v[1]:g} (negative)", expected="seconds >= 0")
        if v[3] != -1 and v[3] < 0:
            raise InputError(path=path, line=line, field="run_time",
                             problem=f"found {v[3]:g} (negative)",
                             expected="seconds >= 0, or -1 for a job that did not run")
        pk = 4 if v[4] != -1 else 7
        procs = _whole(path, line, pk, v[pk], None)
        if v[3] == -1 or procs <= 0:
            skipped.append(num)
            continue
        if v[6] == -1:
            mem = mem_per_proc_mib
        elif v[6] < 0:
            raise InputError(path=path, line=line, field="used_memory",
                             problem=f"found {v[6]:g} (negative)",
                             expected="KB per processor >= 0, or -1 when unknown")
        else:
            mem = math.ceil(v[6] / 1024)
        per, inst = (procs, 1) if rigid else (1, procs)
        key = (per, mem)
        demand = demands.get(key)
        if demand is None:
            demand = demands[key] = Demand(cpu=per * MILLI, mem=per * mem)
        jobs.append(Job(id=str(num), arrival=v[1], origin=sites[num % len(sites)],
                        tasks=(Task(id="main", duration=v[3], demand=demand, instances=inst),)))
    jobs.sort(key=lambda j: (j.arrival, j.id))
    return SwfReport(workload=Workload(jobs=tuple(jobs), source=path),
                     skipped_jobs=tuple(skipped))
