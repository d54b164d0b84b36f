"""Reader for the batch jobs of the Alibaba cluster trace v2018 (``cluster-trace-v2018``,
``batch_task.csv``): real production DAG jobs.

The file has no header as shipped (a first line naming the columns is accepted too); each
line has 9 comma-separated columns, in the order of the trace's ``schema.md``:
``task_name,instance_num,job_name,task_type,status,start_time,end_time,plan_cpu,plan_mem``.
The DAG is in the task names (the trace's ``trace_2018.md``, section 2.3): ``M1`` is task 1
with no parent, ``R2_1`` task 2 after task 1, ``M5_3_4`` task 5 after tasks 3 and 4; the
letters do not matter. Names without that form (``task_Nzg3...``, ``MergeTask``) are
independent tasks.

Mapping: one ``job_name`` -> one :class:`Job` (id = job_name, arrival = the earliest
start_time of its tasks -- the trace records no submission time -- origin =
``site_names[zlib.crc32(job_name) % N]``, weight 1); one row -> one :class:`Task` (id =
task_name, ``instances`` = instance_num identical copies, duration = end_time - start_time:
the task's span, the trace's best per-task estimate without ``batch_instance.csv``; after =
its parents' names); cpu = plan_cpu / 100 cores; mem = plan_mem percent of the largest
machine's memory (the trace normalises it so), that machine being the largest node of the
cluster the jobs run on unless ``machine_mem_mib`` says otherwise.

A production trace holds jobs it cannot replay faithfully; they are skipped whole (never
half a DAG) and counted by reason -- a task not ``Terminated``; a time of 0 (outside the
trace's 8 days) or an end before the start; no plan_cpu or plan_mem, or the trace's
invalid markers (-1, 101), or ``nan``; a parent not in the trace; two tasks with one number; a
dependency cycle -- :func:`read_batch_tasks_report` returns them (:class:`BatchReport`) and
:func:`read_batch_tasks` logs one line naming them at WARNING (the ``agora`` command shows it
on stderr). What is not the trace's doing is an error naming file, line and column: a wrong
number of columns, a number that is not one, a value past the bounds of ``agents/limits.py``,
a job or task name that cannot be an id, a task listed twice in its job.

``max_jobs``: keep only the first N jobs by arrival (the whole trace holds about 4 million).

The older cluster-trace-v2017 ``batch_task.csv`` (8 columns, ``FIELDS_2017``) is read by the
same rules: no DAG, plan_mem a fraction (not a percentage) of the largest machine, a header
line of any spelling skipped, and a job with a task dated before the trace's window (a
negative time) skipped for its times.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from agora.agents.domain import MILLI, Cluster, Demand, Job, Task, Workload, topological_order
from agora.agents.limits import (ID_TEXT, MAX_CORES, MAX_INSTANCES, MAX_MEM_MIB, MAX_SECONDS,
                                 MAX_TIME, id_problem)
from agora.agents.workloads.alibaba import csv_rows, plain_float
from agora.agents.workloads.errors import InputError, origin_sites, skipped_line
from agora.agents.workloads.yamlmarks import shorten

FIELDS = ("task_name", "instance_num", "job_name", "task_type", "status", "start_time",
          "end_time", "plan_cpu", "plan_mem")
FIELDS_2017 = ("task_create_time", "task_end_time", "job_id", "task_id", "number_of_instances",
               "status", "plan_cpu", "plan_mem")
"""The older cluster-trace-v2017 ``batch_task.csv``: 8 columns, no DAG (its task ids are
numbers), plan_cpu as in v2018 (100 is one core), plan_mem normalised to 1 (the largest
machine's memory), times from its own start. Read with the same rules; a first line that is
not data (its own header, under these or the schema's longer names) is skipped."""
DAG_NAME = re.compile(r"[A-Za-z]+([0-9]+)((?:_[0-9]+)*)")
INVALID = (-1.0, 101.0)
"""the trace's markers of an invalid value (101 only where values are normalised to 100)"""
REASONS = {
    "status": "a task not Terminated",
    "times": "a time outside the trace's span or an end before the start",
    "plan": "no plan_cpu / plan_mem, or an invalid one (-1, 101)",
    "instances": "a task of no instances",
    "parent": "a parent task not in the trace",
    "number": "two tasks with one number",
    "cycle": "a dependency cycle",
}

log = logging.getLogger(__name__)


def looks_like_batch_tasks(first_line: str) -> bool:
    """Whether a CSV's first line is this format's header or could be one of its rows (9
    columns: the reader then names any bad field)."""
    try:
        cells = [c.strip() for c in next(csv.reader([first_line]), [])]
    except csv.Error:        # e.g. a NUL: the reader then names the line and its problem
        cells = first_line.split(",")
    if tuple(cells) in (FIELDS, FIELDS_2017):
        return True
    return len(cells) in (len(FIELDS), len(FIELDS_2017)) and any(cells)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What :func:`read_batch_tasks_report` read: the workload and the jobs it skipped,
    reason (a key of ``REASONS``) -> job names in file order."""

    workload: Workload
    skipped: dict[str, tuple[str, ...]]

    def note(self, shown: int = 3) -> str | None:
        """One line naming the skipped jobs by reason, or None when none was skipped."""
        return skipped_line(self.workload.source, self.skipped, REASONS, "job",
                            "the trace cannot replay whole", shown)


def read_batch_tasks(path: str | Path, cluster: Cluster, *, machine_mem_mib: int | None = None,
                     max_jobs: int | None = None) -> Workload:
    """Read a ``batch_task.csv`` (see module doc); the skipped jobs are logged at WARNING."""
    report = read_batch_tasks_report(path, cluster, machine_mem_mib=machine_mem_mib,
                                     max_jobs=max_jobs)
    note = report.note()
    if note:
        log.warning("%s", note)
    return report.workload


@dataclass(slots=True)
class _Row:
    name: str
    instances: int
    status: str
    start: float
    end: float
    cpu: float | None
    mem: float | None


def _number(path: str, line: int, col: str, s: str, lo: float, hi: float, unit: str,
            whole: bool = False, empty_ok: bool = False,
            expected: str | None = None) -> float | None:
    s = s.strip()
    if not s and empty_ok:
        return None
    v = plain_float(s)
    kind = "a whole number" if whole else "a finite number"
    if not math.isfinite(v) or (whole and v != int(v)) or not lo <= v <= hi:
        raise InputError(path=path, line=line, field=col,
                         problem=f"found {shorten(s)!r}" + (" (negative)" if v < 0 else ""),
                         expected=expected or f"{kind} >= {lo:,.0f} and <= {hi:,.0f} "
                                              f"({unit})" + (", or empty" if empty_ok else ""))
    return v


def _marked(path: str, line: int, col: str, s: str, hi: float, unit: str,
            markers: tuple[float, ...]) -> float | None:
    """A plan value: 0..hi, or empty, ``nan`` (a missing value as numpy and some tools
    write it: a probe found it refused where empty was skipped) or one of the trace's
    invalid ``markers`` (None: its job is skipped, not refused)."""
    if s.strip().lower() == "nan":
        return None
    expected = (f"a finite number >= 0 and <= {hi:,.0f} ({unit}), empty, or the trace's "
                f"invalid marker{'s' if len(markers) > 1 else ''} "
                f"{' and '.join(f'{m:g}' for m in markers)}")
    v = _number(path, line, col, s, -1, max(hi, *markers), unit, empty_ok=True,
                expected=expected)
    if v is None or v in markers:
        return None
    if 0 <= v <= hi:
        return v
    raise InputError(path=path, line=line, field=col, problem=f"found {shorten(s.strip())!r}",
                     expected=expected)


def _layout(path: str) -> tuple[tuple[str, ...], bool]:
    """The header line to skip (the v2018 or v2017 columns, or the first line when it is a
    v2017 header by other names: the schema's) and whether the file is v2017 (8 columns)."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            first = f.readline()
    except OSError:
        return FIELDS, False                # csv_rows names the problem
    try:
        cells = tuple(c.strip() for c in next(csv.reader([first]), []))
    except csv.Error:
        return FIELDS, False
    if len(cells) != len(FIELDS_2017):
        return FIELDS, False
    # a header names every column: a first line with any number where v2017 has numbers is
    # a row (a bad one is reported, with its line, not skipped as a header; a probe)
    named = all(math.isnan(plain_float(cells[i])) for i in (0, 1, 4, 6, 7))
    return (cells if named else FIELDS_2017), True


V2018 = dict(name=0, instances=1, job=2, status=4, start=5, end=6, cpu=7, mem=8)
V2017 = dict(name=3, instances=4, job=2, status=5, start=0, end=1, cpu=6, mem=7)
"""Where each value is in a row of either version"""


def _read(path: str) -> dict[str, list[_Row]]:
    jobs: dict[str, list[_Row]] = {}
    seen: dict[tuple[str, str], int] = {}
    header, v2017 = _layout(path)
    at, names = (V2017, FIELDS_2017) if v2017 else (V2018, FIELDS)
    col = {k: names[i] for k, i in at.items()}
    # plan_mem: percent of the largest machine (v2018), a fraction of it (v2017)
    mem_hi, mem_unit = ((1, "a fraction of the largest machine's memory") if v2017 else
                        (100, "percent of the largest machine's memory"))
    for line, c in csv_rows(path, header, "an Alibaba batch_task.csv", header_optional=True):
        job, name = c[at["job"]].strip(), c[at["name"]].strip()
        for field, v in ((col["job"], job), (col["name"], name)):
            if id_problem(v):
                raise InputError(path=path, line=line, field=field,
                                 problem=f"{shorten(v)!r}: {id_problem(v)}", expected=ID_TEXT)
        if (job, name) in seen:
            raise InputError(path=path, line=line, field=col["name"],
                             problem=f"task {name!r} of job {job!r} is already on line "
                                     f"{seen[job, name]}",
                             expected="each task of a job once")
        seen[job, name] = line
        inst = _number(path, line, col["instances"], c[at["instances"]], 0, MAX_INSTANCES,
                       "instances", True)
        # v2017 dates tasks made before its window negative: their jobs are skipped (times)
        lo = -MAX_TIME if v2017 else 0
        start = _number(path, line, col["start"], c[at["start"]], lo, MAX_TIME, "seconds", True)
        end = _number(path, line, col["end"], c[at["end"]], lo, MAX_TIME, "seconds", True)
        cpu = _marked(path, line, col["cpu"], c[at["cpu"]], MAX_CORES * 100,
                      "100 is one core", INVALID[:1])
        mem = _marked(path, line, col["mem"], c[at["mem"]], mem_hi, mem_unit,
                      INVALID if not v2017 else INVALID[:1])
        if mem is not None:
            mem = mem * 100 / mem_hi      # percent from here on
        jobs.setdefault(job, []).append(_Row(name, int(inst), c[at["status"]].strip(), start,
                                             end, cpu, mem))
    return jobs


def _parents(rows: list[_Row]) -> tuple[dict[str, tuple[str, ...]], str | None]:
    """Each task's parents by name, or the reason the job cannot be replayed whole (a cycle
    is found once the job is built, by ``topological_order``)."""
    by_number: dict[str, str] = {}
    wanted: dict[str, list[str]] = {}
    for r in rows:
        m = DAG_NAME.fullmatch(r.name)
        if m is None:
            continue
        number = str(int(m.group(1)))
        if number in by_number:
            return {}, "number"
        by_number[number] = r.name
        wanted[r.name] = [str(int(x)) for x in m.group(2).split("_") if x]
    parents = {}
    for name, numbers in wanted.items():
        if any(x not in by_number for x in numbers):
            return {}, "parent"
        parents[name] = tuple(dict.fromkeys(by_number[x] for x in numbers))
    return parents, None


def read_batch_tasks_report(path: str | Path, cluster: Cluster, *,
                            machine_mem_mib: int | None = None,
                            max_jobs: int | None = None) -> BatchReport:
    """Read a ``batch_task.csv`` into a workload plus the jobs it skipped (module doc)."""
    path = str(path)
    sites = origin_sites(cluster, path)
    for name, v, lo, hi in (("machine_mem_mib", machine_mem_mib, 1, MAX_MEM_MIB),
                            ("max_jobs", max_jobs, 1, 10 ** 9)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)
                              or not lo <= v <= hi):
            raise InputError(path=path, line=None, field=name, problem=f"found {v!r}",
                             expected=f"a whole number >= {lo} and <= {hi:,}")
    unit = machine_mem_mib or max((n.mem for n in cluster.nodes), default=1)
    skipped: dict[str, list[str]] = {}
    jobs: list[Job] = []
    demands: dict[tuple[int, int], Demand] = {}
    for job, rows in _read(path).items():
        why = _unusable(rows)
        parents: dict[str, tuple[str, ...]] = {}
        if why is None:
            parents, why = _parents(rows)
        if why is not None:
            skipped.setdefault(why, []).append(job)
            continue
        tasks = []
        for r in rows:
            key = (round(r.cpu * MILLI / 100), math.ceil(r.mem / 100 * unit))
            demand = demands.get(key)
            if demand is None:
                demand = demands[key] = Demand(cpu=key[0], mem=min(key[1], MAX_MEM_MIB))
            tasks.append(Task(id=r.name, duration=r.end - r.start, demand=demand,
                              instances=r.instances, after=parents.get(r.name, ())))
        built = Job(id=job, arrival=min(r.start for r in rows),
                    origin=sites[zlib.crc32(job.encode("utf-8")) % len(sites)],
                    tasks=tuple(tasks))
        try:
            topological_order(built)     # every parent is in the job: only a cycle fails
        except ValueError:
            skipped.setdefault("cycle", []).append(job)
            continue
        jobs.append(built)
    jobs.sort(key=lambda j: (j.arrival, j.id))
    if max_jobs is not None:
        jobs = jobs[:max_jobs]
    return BatchReport(Workload(jobs=tuple(jobs), source=path),
                       {k: tuple(v) for k, v in skipped.items()})


def _unusable(rows: list[_Row]) -> str | None:
    if any(r.status != "Terminated" for r in rows):
        return "status"
    if any(r.start <= 0 or r.end <= 0 or r.end < r.start or r.end - r.start > MAX_SECONDS
           for r in rows):
        return "times"
    if any(r.cpu is None or r.mem is None for r in rows):
        return "plan"
    if any(r.instances == 0 for r in rows):
        return "instances"
    return None
