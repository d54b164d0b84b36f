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

Jobs the archive marks as not run (run_time -1, or P = 0 after the fallback, or both
processor counts -1) are skipped and counted: :func:`read_swf_report` returns them in
:class:`SwfReport` (``skipped``, the job numbers and :meth:`SwfReport.note`);
:func:`read_swf` returns only the workload and logs the note at WARNING, so the ``agora``
command shows it on stderr. ``Workload.source`` is the path.

Bounds (``agents/limits.py``), each refused naming file, line and field: job_number a whole
number <= 2^53 (the job id); submit_time <= ``MAX_TIME``; run_time <= ``MAX_SECONDS`` (or
-1); processors whole, -1 or 0..``MAX_INSTANCES`` (rigid: 0..``MAX_CORES``, one instance of
P cores); used_memory -1 or KB per processor with the task's memory <= ``MAX_MEM_MIB``.
Any other negative value in these fields is an error, not "unknown". Fields the mapping
does not use only have to be finite numbers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from agora.agents.domain import MILLI, Cluster, Demand, Job, Task, Workload
from agora.agents.limits import MAX_CORES, MAX_INSTANCES, MAX_MEM_MIB, MAX_SECONDS, MAX_TIME
from agora.agents.workloads.errors import InputError, origin_sites
from agora.agents.workloads.textfile import read_text, split_lines
from agora.agents.workloads.yamlmarks import shorten

FIELDS = ("job_number", "submit_time", "wait_time", "run_time", "allocated_processors",
          "average_cpu_time", "used_memory", "requested_processors", "requested_time",
          "requested_memory", "status", "user_id", "group_id", "executable", "queue",
          "partition", "preceding_job", "think_time")

log = logging.getLogger(__name__)

MAX_JOB_NUMBER = 2 ** 53
"""largest job_number: every whole number up to it is exact in the float it is read as"""


@dataclass(frozen=True, slots=True)
class SwfReport:
    """What :func:`read_swf_report` read: the workload and the jobs it skipped."""

    workload: Workload
    skipped_jobs: tuple[int, ...]
    """job numbers of jobs not run (run_time -1 or no processors), in file order"""

    @property
    def skipped(self) -> int:
        return len(self.skipped_jobs)

    def note(self, shown: int = 10) -> str | None:
        """One line for the user naming the skipped jobs (the first ``shown`` of them), or
        None when none was skipped, e.g. ``x.swf: skipped 1 job the archive marks as not run
        (job 2: run_time -1 or no processors)``."""
        n = self.skipped
        if not n:
            return None
        nums = ", ".join(str(k) for k in self.skipped_jobs[:shown])
        more = f" and {n - shown} more" if n > shown else ""
        return (f"{self.workload.source}: skipped {n} job{'s' if n > 1 else ''} the archive "
                f"marks as not run (job{'s' if n > 1 else ''} {nums}{more}: run_time -1 or "
                f"no processors)")


def read_swf(path: str | Path, cluster: Cluster, *, rigid: bool = False,
             mem_per_proc_mib: int = 1024) -> Workload:
    """Read an SWF file (see module doc); the skipped jobs are logged at WARNING
    (:meth:`SwfReport.note`), which reaches stderr even when logging is not configured."""
    report = read_swf_report(path, cluster, rigid=rigid, mem_per_proc_mib=mem_per_proc_mib)
    note = report.note()
    if note:
        log.warning("%s", note)
    return report.workload


def _bound_text(lo: float, hi: float) -> str:
    return f">= {lo:,.0f} and <= {hi:,.0f}"


def _number(path: str, line: int, k: int, tok: str) -> float:
    try:
        if not tok.isascii() or "_" in tok:
            raise ValueError
        v = float(tok)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        # the field's own check says whether -1 (unknown) is taken: submit_time's is not,
        # and "-1 when unknown" here contradicted it (a probe); a 5,000-digit number was
        # echoed whole
        raise InputError(path=path, line=line, field=FIELDS[k],
                         problem=f"found {shorten(tok)!r}", expected="a finite number")
    return v


def _whole(path: str, line: int, k: int, v: float, tok: str, lo: int, hi: float,
           expected: str | None = None, unknown: bool = False) -> int:
    """``v`` (read from ``tok``) as a whole number in lo..hi, or -1 when ``unknown`` allows it.
    A token written as an integer is compared as one (a float loses digits past 2^53:
    9007199254740993 read as ...992)."""
    if tok.lstrip("+-").isdigit() and len(tok) <= 30:
        v = int(tok)
    if v != int(v) or not (lo <= v <= hi or unknown and v == -1):
        raise InputError(path=path, line=line, field=FIELDS[k],
                         problem=f"found {shorten(tok)}" + (" (negative)" if v < 0 else ""),
                         expected=expected or "a whole number " + _bound_text(lo, hi) +
                         (", or -1 when unknown" if unknown else ""))
    return int(v)


def _seconds(path: str, line: int, k: int, v: float, tok: str, hi: float, what: str,
             unknown: str | None = None) -> float:
    """``v`` as seconds in 0..hi, or -1 when ``unknown`` (what -1 means) is given."""
    if not (0 <= v <= hi or unknown and v == -1):
        raise InputError(path=path, line=line, field=FIELDS[k],
                         problem=f"found {shorten(tok)}" + (" (negative)" if v < 0 else ""),
                         expected=f"a finite number >= 0 and <= {hi:,.0f} ({what})" +
                         (f", or -1 {unknown}" if unknown else ""))
    return v


def read_swf_report(path: str | Path, cluster: Cluster, *, rigid: bool = False,
                    mem_per_proc_mib: int = 1024) -> SwfReport:
    """Read an SWF file into a workload plus the list of skipped jobs."""
    path = str(path)
    sites = origin_sites(cluster, path)
    if not isinstance(rigid, bool):          # 'no', 2, 0.5 once all read as rigid
        raise InputError(path=path, line=None, field="rigid", problem=f"found {rigid!r}",
                         expected="true or false")
    if isinstance(mem_per_proc_mib, bool) or not isinstance(mem_per_proc_mib, int) \
            or not 0 <= mem_per_proc_mib <= MAX_MEM_MIB:
        raise InputError(path=path, line=None, field="mem_per_proc_mib",
                         problem=f"found {mem_per_proc_mib!r}",
                         expected=f"a whole MiB >= 0 and <= {MAX_MEM_MIB:,}")
    jobs: list[Job] = []
    skipped: list[int] = []
    seen: dict[int, int] = {}
    demands: dict[tuple[int, int], Demand] = {}
    n = len(FIELDS)
    for line, text in enumerate(split_lines(read_text(path, "an SWF file"), path), 1):
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
        num = _whole(path, line, 0, v[0], toks[0], 0, MAX_JOB_NUMBER)
        if num in seen:
            raise InputError(path=path, line=line, field="job_number",
                             problem=f"job {num} already listed on line {seen[num]}",
                             expected="unique job numbers")
        seen[num] = line
        arrival = _seconds(path, line, 1, v[1], toks[1], MAX_TIME, "seconds")
        run_time = _seconds(path, line, 3, v[3], toks[3], MAX_SECONDS, "seconds",
                            "for a job that did not run")
        pk = 4 if v[4] != -1 else 7
        hi = MAX_CORES if rigid else MAX_INSTANCES
        unit = ("cores of one rigid instance" if rigid else "instances of one job")
        procs = _whole(path, line, pk, v[pk], toks[pk], 0, hi, unknown=True,
                       expected=f"a whole number of processors {_bound_text(0, hi)} ({unit}), "
                                f"or -1 when unknown")
        if v[6] == -1:
            mem = mem_per_proc_mib
        elif not 0 <= v[6] <= MAX_MEM_MIB * 1024:
            raise InputError(path=path, line=line, field="used_memory",
                             problem=f"found {shorten(toks[6])}" +
                                     (" (negative)" if v[6] < 0 else ""),
                             expected=f"KB per processor >= 0 and <= {MAX_MEM_MIB * 1024:,} "
                                      f"({MAX_MEM_MIB:,} MiB), or -1 when unknown")
        else:
            mem = math.ceil(v[6] / 1024)
        if run_time == -1 or procs <= 0:
            skipped.append(num)
            continue
        if rigid and procs * mem > MAX_MEM_MIB:
            field = "used_memory" if v[6] != -1 else FIELDS[pk]
            source = "used_memory" if v[6] != -1 else "mem_per_proc_mib"
            raise InputError(path=path, line=line, field=field,
                             problem=f"{procs} processors x {mem} MiB ({source}) = "
                                     f"{procs * mem:,} MiB for one rigid instance",
                             expected=f"at most {MAX_MEM_MIB:,} MiB in all (fewer "
                                      f"processors or less memory each)")
        per, inst = (procs, 1) if rigid else (1, procs)
        key = (per, mem)
        demand = demands.get(key)
        if demand is None:
            demand = demands[key] = Demand(cpu=per * MILLI, mem=per * mem)
        jobs.append(Job(id=str(num), arrival=arrival, origin=sites[num % len(sites)],
                        tasks=(Task(id="main", duration=run_time, demand=demand,
                                    instances=inst),)))
    jobs.sort(key=lambda j: (j.arrival, j.id))
    return SwfReport(workload=Workload(jobs=tuple(jobs), source=path),
                     skipped_jobs=tuple(skipped))
