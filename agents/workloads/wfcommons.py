"""Reader for WfCommons workflow instances (WfFormat JSON, github.com/wfcommons/WfFormat): real
scientific workflows -- Pegasus, Makeflow, Nextflow runs of WfInstances -- as DAG jobs.

Versions (``schemaVersion``, a string; any other is refused, unknown keys are ignored):

- ``1.5``, ``1.6`` (1.6 adds only optional ``metrics``): the DAG in
  ``workflow.specification.tasks`` (``id``, ``parents``, ``children``, ``inputFiles``; ``name``
  is a task type there and may repeat, so it is not read), sizes in
  ``workflow.specification.files`` (``id``, ``sizeInBytes``), measurements in
  ``workflow.execution.tasks`` (``id``, ``runtimeInSeconds``, ``coreCount``, ``memoryInBytes``);
- ``1.0`` to ``1.4``, the flat form: ``workflow.tasks`` (``workflow.jobs`` before 1.3), each
  with ``name`` (what ``parents`` and ``children`` name), ``runtimeInSeconds`` (1.4) or
  ``runtime``, ``cores``, ``memoryInBytes`` (1.4) or ``memory`` (KB, as WfFormat's migration
  tool reads it), ``files`` [{``link``: input | output, ``name``, ``sizeInBytes`` | ``size``}].

Mapping: one file -> one :class:`Job`: id = the instance ``name`` made an id (``as_id``:
white space and '/' made '_', a long one shortened with a hash), in a folder a name taken
becomes ``name~2``, ``name~3``, ...; arrival = k * ``arrival_gap_s`` for the k-th file of a
folder by name, skipped files counted (0 for one file); origin =
``site_names[zlib.crc32(id) % N]``; weight 1. One task -> one :class:`Task`, instances 1: id =
its ``id`` (1.5+) or ``name``, as written when it is an id, else made one (``as_id``,
``task_ids``: real Nextflow ids hold '/' and run to 216 characters); duration = its
runtime (s); cpu = its core count (1 when absent or null); mem = its memory in MiB rounded up
(0 when absent or null: the instance does not say, and memory then does not limit
placement); ``data_mb`` = its input files' bytes / 10^6, each file once (a size not known --
no ``files`` list in 1.5+, no size in the flat form -- counts 0); after = its parents, then
the tasks naming it among their children (WfFormat expects both to agree; its tools read
both), each once. No edge is inferred from files.

A workflow that cannot be replayed whole is skipped whole (never half a DAG), counted by
reason -- no ``execution`` section (a specification only), a task with no runtime (absent,
null, no execution entry) -- by :func:`read_wfcommons_report`; :func:`read_wfcommons` logs
one line naming them at WARNING. Anything malformed is an :class:`InputError` naming the file
and the JSON path of the field (``workflow.specification.tasks[3].parents[0]``), or the line
and column of a JSON syntax error: a missing or mistyped field, a negative or NaN number, a
value past the bounds of ``agents/limits.py``, a parent, child, execution entry or input file
the workflow does not declare, a task or file twice, a task waiting for itself, a cycle, a
file over ``MAX_FILE_BYTES``.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from agora.agents.domain import MILLI, Cluster, Demand, Job, Task, Workload, topological_order
from agora.agents.limits import MAX_CORES, MAX_DATA_MB, MAX_MEM_MIB, MAX_SECONDS, MAX_TIME
from agora.agents.workloads.errors import InputError, origin_sites, skipped_line
from agora.agents.workloads.id_names import as_id, task_ids, unused
from agora.agents.workloads.native import _find_cycle, parse_json
from agora.agents.workloads.textfile import read_text
from agora.agents.workloads.yamlmarks import (Where, describe, get_list, get_number, get_str,
                                              shorten)

MAX_FILE_BYTES = 512 * 2 ** 20
"""largest instance file read (the biggest WfInstances files are tens of MB)"""
SPEC_VERSIONS = ("1.5", "1.6")
FLAT_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4")
DEFAULT_CORES = 1.0
DEFAULT_MEM_MIB = 0
MIB = 2 ** 20
EXPECTED = "a WfCommons workflow instance (WfFormat JSON)"
NOT_INSTANCE = "not a WfCommons instance: the top level has no 'workflow' and 'schemaVersion'"
REASONS = {"execution": "no execution section (a specification without measurements)",
           "runtime": "a task without a recorded runtime"}

log = logging.getLogger(__name__)


class WfReport(NamedTuple):
    """What :func:`read_wfcommons_report` read: the workload, and the files it skipped by
    reason (a key of ``REASONS``) -> file names in reading order."""

    workload: Workload
    skipped: dict[str, tuple[str, ...]]


def skipped_note(report: WfReport, shown: int = 3) -> str | None:
    """One line naming the skipped workflows by reason, or None when none was skipped."""
    return skipped_line(report.workload.source, report.skipped, REASONS, "workflow",
                        "that cannot be replayed whole", shown)


def read_wfcommons(spec: str | Path, cluster: Cluster, *, arrival_gap_s: float = 0.0) -> Workload:
    """Read one instance file, or every ``*.json`` of a folder (module doc); the skipped
    workflows are logged at WARNING."""
    report = read_wfcommons_report(spec, cluster, arrival_gap_s=arrival_gap_s)
    if note := skipped_note(report):
        log.warning("%s", note)
    return report.workload


def read_wfcommons_report(spec: str | Path, cluster: Cluster, *,
                          arrival_gap_s: float = 0.0) -> WfReport:
    """Read a file or folder of instances into a workload plus what it skipped."""
    spec = str(spec)
    sites = origin_sites(cluster, spec)
    gap = get_number(Where(spec, None, "arrival_gap_s"), arrival_gap_s, ge=0, le=MAX_TIME,
                     unit="seconds between arrivals")
    paths = instance_files(spec)
    if gap * (len(paths) - 1) > MAX_TIME:
        raise Where(spec, None, "arrival_gap_s").error(
            f"{len(paths)} files {gap:g} s apart arrive past {MAX_TIME:g} s",
            f"a gap <= {MAX_TIME / max(1, len(paths) - 1):g} s for this folder")
    jobs: list[Job] = []
    taken: set[str] = set()
    skipped: dict[str, list[str]] = {}
    for k, path in enumerate(paths):
        name, tasks, why = read_instance(path)
        if why is not None:
            skipped.setdefault(why, []).append(Path(path).name)
            continue
        jid = unused(name, taken)         # name: an id (as_id)
        taken.add(jid)
        jobs.append(Job(id=jid, arrival=k * gap, tasks=tasks,
                        origin=sites[zlib.crc32(jid.encode("utf-8")) % len(sites)]))
    jobs.sort(key=lambda j: (j.arrival, j.id))
    return WfReport(Workload(jobs=tuple(jobs), source=spec),
                    {k: tuple(v) for k, v in skipped.items()})


def instance_files(spec: str) -> list[str]:
    """``[spec]`` for a file; for a folder its ``*.json`` files by name (not sub-folders)."""
    p = Path(spec)
    try:
        if not p.is_dir():
            return [spec]
        found = sorted((f for f in p.iterdir() if f.suffix.lower() == ".json" and f.is_file()),
                       key=lambda f: f.name)
    except OSError as e:
        raise InputError(path=spec, line=None, field=None,
                         problem=f"cannot read the folder ({e.strerror or e})") from None
    if found:
        return [str(f) for f in found]
    raise InputError(path=spec, line=None, field=None, problem="a folder with no .json file",
                     expected=f"a folder of .json files, each {EXPECTED}")


@dataclass(slots=True)
class _Raw:
    """One task as read, before the DAG is checked."""

    id: str
    where: Where
    parents: list[str]
    children: list[str]
    runtime: float | None = None
    cores: float | None = None
    mem_bytes: float | None = None
    data_mb: float = 0.0
    key: str = "id"
    """the key naming the task: 'id' (1.5+) or 'name' (flat form)"""


def read_instance(path: str) -> tuple[str, tuple[Task, ...], str | None]:
    """One instance file: (its job id before de-duplication, its tasks, None) or, when it
    cannot be replayed whole, (id, (), reason)."""
    top = parse(path)
    if not isinstance(top, dict) or "workflow" not in top or "schemaVersion" not in top:
        raise InputError(path=path, line=None, field=None, problem=NOT_INSTANCE,
                         expected=EXPECTED)
    w = Where(path, None)
    version = top["schemaVersion"]
    if not isinstance(version, str) or version not in SPEC_VERSIONS + FLAT_VERSIONS:
        raise w.key("schemaVersion").error(
            f"found {describe(version)}", f"a version this reader knows, as a string: "
                                          f"{', '.join(FLAT_VERSIONS + SPEC_VERSIONS)}")
    _object(w, top, ("name",))
    name = get_str(w.key("name"), top["name"], "the instance's name, a non-empty string")
    jid = as_id(name)
    wf = _object(w.key("workflow"), top["workflow"])
    if version in SPEC_VERSIONS:
        raws, why = _spec_form(w.key("workflow"), wf)
    else:
        raws, why = _flat_form(w.key("workflow"), wf), None
    tasks = _dag(jid, raws)
    if why is None and any(r.runtime is None for r in raws):
        why = "runtime"
    return jid, (() if why else tasks), why


def parse(path: str) -> Any:
    """The file's JSON value; InputError for a file too large, unreadable, not UTF-8, not JSON
    (with line and column) or with a key twice in one object."""
    where = Where(path, None)
    try:
        size = os.stat(path).st_size
    except OSError as e:
        raise where.error(f"cannot read the file ({e.strerror or e})", EXPECTED) from None
    if size > MAX_FILE_BYTES:
        raise where.error(f"{size:,} bytes, over the limit of {MAX_FILE_BYTES // MIB} MiB",
                          f"{EXPECTED} of at most {MAX_FILE_BYTES:,} bytes")
    return parse_json(where, read_text(path, EXPECTED), EXPECTED)


def _object(w: Where, v: Any, required: tuple[str, ...] = ()) -> dict:
    if not isinstance(v, dict):
        raise w.error(f"found {describe(v)}", "a JSON object"
                      + (f" with {', '.join(required)}" if required else ""))
    for k in required:
        if k not in v:
            raise w.key(k).error(f"required key {k!r} is missing", f"{k} in every such object")
    return v


def _strings(w: Where, v: Any) -> list[str]:
    items = get_list(w, v, what="strings")
    for j, x in enumerate(items):
        if not isinstance(x, str):
            raise w.item(j).error(f"found {describe(x)}", "a string")
    return items


def _optional(w: Where, v: Any, lo: float, hi: float, unit: str) -> float | None:
    """A number within [lo, hi], or None for null."""
    return None if v is None else get_number(w, v, ge=lo, le=hi, unit=unit)


def _measure(raw: _Raw, w: Where, t: dict, runtime: str, cores: str, mem: str, kb: bool):
    raw.runtime = _optional(w.key(runtime), t.get(runtime), 0, MAX_SECONDS, "seconds")
    raw.cores = _optional(w.key(cores), t.get(cores), 0.001, MAX_CORES, "cores")
    scale = 1000 if kb else 1
    raw.mem_bytes = _optional(w.key(mem), t.get(mem), 0, MAX_MEM_MIB * MIB / scale,
                              "KB" if kb else "bytes")
    raw.mem_bytes = None if raw.mem_bytes is None else raw.mem_bytes * scale


def _inputs(raw: _Raw, w: Where, files: dict[Any, float | None]) -> None:
    """``data_mb`` from the sizes of its input files by name (None: not known)."""
    raw.data_mb = sum(size or 0.0 for size in files.values()) / 1e6
    if raw.data_mb > MAX_DATA_MB:
        raise w.error(f"input files of {raw.data_mb:,.0f} MB in all",
                      f"at most {MAX_DATA_MB:,.0f} MB of input for one task")


def _spec_form(w: Where, wf: dict) -> tuple[list[_Raw], str | None]:
    """Tasks of a 1.5/1.6 instance, and 'execution' when it has no execution section."""
    ws = w.key("specification")
    spec = _object(ws, _object(w, wf, ("specification",))["specification"], ("tasks",))
    sizes: dict[str, float] | None = None
    if spec.get("files") is not None:
        sizes = {}
        for k, f in enumerate(get_list(ws.key("files"), spec["files"], what="file objects")):
            wk = ws.key("files").item(k)
            _object(wk, f, ("id", "sizeInBytes"))
            fid = get_str(wk.key("id"), f["id"], "a file id, a non-empty string")
            if fid in sizes:
                raise wk.key("id").error(f"file {fid!r} is listed twice", "each file once")
            sizes[fid] = get_number(wk.key("sizeInBytes"), f["sizeInBytes"], ge=0,
                                    le=MAX_DATA_MB * 1e6, unit="bytes")
    wt = ws.key("tasks")
    raws: dict[str, _Raw] = {}
    for i, t in enumerate(get_list(wt, spec["tasks"], nonempty=True, what="task objects")):
        wi = wt.item(i)
        _object(wi, t, ("id",))
        raw = _Raw(get_str(wi.key("id"), t["id"], "a task id, a non-empty string"), wi,
                   _strings(wi.key("parents"),
                   t.get("parents", [])), _strings(wi.key("children"), t.get("children", [])))
        files: dict[Any, float | None] = {}
        for j, fid in enumerate(_strings(wi.key("inputFiles"), t.get("inputFiles", []))):
            if sizes is not None and fid not in sizes:
                raise wi.key("inputFiles").item(j).error(
                    f"file {shorten(fid)!r} is not in workflow.specification.files",
                    "the id of a file the workflow lists")
            files[fid] = None if sizes is None else sizes[fid]
        _inputs(raw, wi.key("inputFiles"), files)
        _add(raws, raw)
    if wf.get("execution") is None:
        return list(raws.values()), "execution"
    we = w.key("execution")
    ex = _object(we, wf["execution"], ("tasks",))
    measured: set[str] = set()
    for k, e in enumerate(get_list(we.key("tasks"), ex["tasks"], what="task objects")):
        wk = we.key("tasks").item(k)
        _object(wk, e, ("id",))
        tid = get_str(wk.key("id"), e["id"], "a task id")
        if tid not in raws:
            raise wk.key("id").error(f"task {shorten(tid)!r} is not in "
                                     f"workflow.specification.tasks", "the id of a task there")
        if tid in measured:
            raise wk.key("id").error(f"task {tid!r} has a second entry", "one entry a task")
        measured.add(tid)
        _measure(raws[tid], wk, e, "runtimeInSeconds", "coreCount", "memoryInBytes", False)
    return list(raws.values()), None


def _flat_form(w: Where, wf: dict) -> list[_Raw]:
    """Tasks of a 1.0-1.4 instance."""
    key = "tasks" if "tasks" in wf else "jobs"
    if key not in wf:
        raise w.key("tasks").error("required key 'tasks' is missing",
                                   "workflow.tasks (workflow.jobs before 1.3)")
    wt = w.key(key)
    raws: dict[str, _Raw] = {}
    for i, t in enumerate(get_list(wt, wf[key], nonempty=True, what="task objects")):
        wi = wt.item(i)
        _object(wi, t, ("name",))
        raw = _Raw(get_str(wi.key("name"), t["name"], "a task name, a non-empty string"), wi,
                   _strings(wi.key("parents"),
                   t.get("parents", [])), _strings(wi.key("children"), t.get("children", [])),
                   key="name")
        _measure(raw, wi, t, "runtimeInSeconds" if "runtimeInSeconds" in t else "runtime",
                 "cores", "memoryInBytes" if "memoryInBytes" in t else "memory",
                 "memoryInBytes" not in t)
        files: dict[Any, float | None] = {}
        for j, f in enumerate(get_list(wi.key("files"), t.get("files", []), what="files")):
            wj = wi.key("files").item(j)
            _object(wj, f, ("link",))
            link = f["link"].lower() if isinstance(f["link"], str) else None
            if link not in ("input", "output"):     # WfFormat's two (a probe: any passed)
                raise wj.key("link").error(f"found {describe(f['link'])}", "input or output")
            if link != "input":
                continue
            sk = "sizeInBytes" if "sizeInBytes" in f else "size"
            name = f.get("name")          # each name once; an unnamed file counts apart
            files[name if isinstance(name, str) else j] = _optional(
                wj.key(sk), f.get(sk), 0, MAX_DATA_MB * 1e6, "bytes")
        _inputs(raw, wi.key("files"), files)
        _add(raws, raw)
    return list(raws.values())


def _add(raws: dict[str, _Raw], raw: _Raw) -> None:
    if raw.id in raws:
        raise raw.where.key(raw.key).error(
            f"task {raw.id!r} is also {raws[raw.id].where.field}", "each task once")
    raws[raw.id] = raw


def _dag(jid: str, raws: list[_Raw]) -> tuple[Task, ...]:
    """The tasks with their dependencies checked: every parent and child a task of the
    workflow, none the task itself, no cycle."""
    index = {r.id: i for i, r in enumerate(raws)}
    after: list[dict[str, None]] = [{} for _ in raws]
    for kind in ("parents", "children"):          # parents first, then children's edges
        for i, r in enumerate(raws):
            for j, x in enumerate(getattr(r, kind)):
                if x not in index or x == r.id:
                    raise r.where.key(kind).item(j).error(
                        f"task {shorten(x)!r} " + ("is the task itself" if x == r.id else
                                                   f"is not a task of workflow {jid!r}"),
                        f"the {r.key} of another task of the workflow")
                if kind == "parents":
                    after[i][x] = None
                else:
                    after[index[x]][r.id] = None
    ids = task_ids([r.id for r in raws])
    tasks = tuple(Task(id=ids[r.id], duration=r.runtime or 0.0,
                       after=tuple(ids[x] for x in after[i]),
                       demand=Demand(cpu=round((r.cores or DEFAULT_CORES) * MILLI),
                                     mem=DEFAULT_MEM_MIB if r.mem_bytes is None
                                     else math.ceil(r.mem_bytes / MIB)),
                       data_mb=r.data_mb) for i, r in enumerate(raws))
    try:
        topological_order(Job(id=jid, arrival=0.0, origin="", tasks=tasks))
    except ValueError:
        cycle = _find_cycle(list(tasks))
        raw_of = {ids[r.id]: r for r in raws}
        shown = [shorten(raw_of[t].id) for t in cycle]
        if len(shown) > 8:      # a probe: a 20,000-task cycle made a 189 KB line
            shown = shown[:4] + [f"... {len(shown) - 6} more ..."] + shown[-2:]
        raise raw_of[cycle[0]].where.key("parents").error(
            f"{len(cycle)} tasks wait for each other in a cycle (through parents or "
            f"children): " + " -> ".join(shown + [shown[0]]),
            "dependencies without cycles") from None
    return tasks
