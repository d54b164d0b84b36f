"""Agora's native formats: jobs in JSON Lines (here) and a cluster in YAML
(``native_cluster.py``; ``read_cluster`` and ``write_cluster`` are re-exported here).

Jobs JSON Lines (:func:`read_jobs`, :func:`write_jobs`): one job object a line, blank lines
and ``#`` comments skipped: ``{id, arrival (s), origin (site), weight?, deadline? (s,
absolute), tasks: [{id, duration (s), demand: {cpu (cores), mem (MiB), gpu (gpus: < 1 a
share of one, else whole), gpu_models?}, instances?, after?, data_mb? (MB), run?: {argv:
[str, ...], env?: {NAME: str}, cwd?, timeout_s?}}]}`` (``run``: what each instance executes;
without it a task serves simulation and replay only). A demand
that fits no node is *not* an error here for simulation (the simulator reports it with
``why_unschedulable``), only malformed input is; jobs for a live Agora (``require_run``)
are refused naming the line, as the coordinator would refuse them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from agora.agents.domain import (MILLI, Cluster, Demand, Job, Run, Task, Workload, run_problem,
                                 why_unschedulable)
from agora.agents.limits import (MAX_CORES, MAX_DATA_MB, MAX_GPUS, MAX_INSTANCES,
                                 MAX_LIVE_JOB_INSTANCES, MAX_LIVE_JOB_TASKS, MAX_MEM_MIB,
                                 MAX_SECONDS, MAX_TIME, MAX_WEIGHT)
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.native_cluster import read_cluster, write_cluster
from agora.agents.workloads.native_fields import ident, num, units
from agora.agents.workloads.textfile import read_text, split_lines
from agora.agents.workloads.yamlmarks import (Where, describe, get_int, get_list, get_mapping,
                                              get_number, get_str)

__all__ = ["read_jobs", "write_jobs", "job_record", "run_record", "read_cluster", "write_cluster"]

# ----------------------------------------------------------------------------- jobs

def read_jobs(path: str | Path, cluster: Cluster, *, require_run: bool = False,
              job_lines: dict[str, int] | None = None,
              problems: list[InputError] | None = None) -> Workload:
    """Read native JSON Lines jobs; origins and gpu models are checked against ``cluster``.
    Jobs come back sorted by (arrival, id); ``Workload.source`` is ``path``. With
    ``require_run`` (jobs for a live Agora) every task must say what it runs. ``job_lines``,
    if given, is filled with each job's id -> its line in the file. ``problems``, if given,
    gets the error of each bad line, which is left out, instead of the first one raised."""
    path = str(path)
    lines = split_lines(read_text(path, "JSON Lines, one job object a line"), path)
    _not_an_array(path, lines)
    sites, models = set(cluster.site_names), cluster.gpu_models
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for no, text in enumerate(lines, 1):
        s = text.strip()
        if not s or s.startswith("#"):
            continue
        if problems is None:
            _line(Where(path, no), s, cluster, sites, models, require_run, seen, jobs)
            continue
        try:
            _line(Where(path, no), s, cluster, sites, models, require_run, seen, jobs)
        except InputError as e:
            problems.append(e)
    jobs.sort(key=lambda j: (j.arrival, j.id))
    if job_lines is not None:
        job_lines.update(seen)
    return Workload(jobs=tuple(jobs), source=path)


def _not_an_array(path: str, lines: list[str]) -> None:
    """One error for a JSON array of jobs over several lines (a probe: a pretty-printed
    array was 20 lines of "not valid JSON" and a count, none saying what the file is)."""
    first = next((k for k, t in enumerate(lines) if t.strip() and not
                  t.strip().startswith("#")), None)
    if first is None or not lines[first].lstrip().startswith("[") or \
            lines[first].strip().endswith("]"):       # one line: that line's own error
        return
    try:
        data = json.loads("\n".join(lines[first:]))
    except (ValueError, RecursionError):
        return
    if isinstance(data, list):
        raise Where(path, first + 1).error(
            f"a JSON array of {len(data)} item(s) over {len(lines) - first} lines",
            "JSON Lines: one job object a line, no enclosing [ ] (e.g. jq -c '.[]' FILE)")


def _line(w: Where, s: str, cluster: Cluster, sites, models, require_run: bool,
          seen: dict[str, int], jobs: list[Job]) -> None:
    """One job line of ``read_jobs``: checked, appended to ``jobs``, its id to ``seen``."""
    no = w.line
    rec = parse_json(w, s, "one JSON object a line")
    job = _job(w, rec, sites, models)
    if require_run:      # jobs for a live Agora, which refuses these at submission
        if len(job.tasks) > MAX_LIVE_JOB_TASKS:
            raise w.key("tasks").error(f"{len(job.tasks):,} tasks", f"at most "
                                       f"{MAX_LIVE_JOB_TASKS:,} tasks a job for a live "
                                       f"Agora")
        total = sum(t.instances for t in job.tasks)
        if total > MAX_LIVE_JOB_INSTANCES:
            raise w.key("tasks").error(
                f"{total:,} instances over the job's tasks",
                f"at most {MAX_LIVE_JOB_INSTANCES:,} a job for a live Agora (split it "
                f"into several jobs)")
        for k, t in enumerate(job.tasks):
            if t.run is None:
                raise w.key(f"tasks[{k}].run").error(
                    f"task {t.id!r} has no run", 'the command each instance executes, '
                    'e.g. "run": {"argv": ["python", "step.py"]} (a live Agora runs it)')
            if not (t.demand.cpu or t.demand.mem):
                raise w.key(f"tasks[{k}].demand").error(
                    f"task {t.id!r} asks for no cpu and no memory",
                    "cpu > 0 or mem > 0: what each running instance uses")
            why = why_unschedulable(t.demand, cluster)
            if why:
                raise w.key(f"tasks[{k}].demand").error(
                    f"task {t.id!r} fits no node: {why}",
                    "a demand that some node of the cluster can hold")
        # a live Agora makes the job arrive now and keeps its deadline's distance
        room = MAX_TIME - time.time()
        if job.deadline is not None and job.deadline - job.arrival > room:
            raise w.key("deadline").error(
                f"{job.deadline:g} is {job.deadline - job.arrival:g} s after the job's "
                f"arrival ({job.arrival:g}); submitted, the job arrives now and its "
                f"deadline keeps that distance, past the latest time there is "
                f"({MAX_TIME:g} s of Unix time)",
                f"a deadline at most {room:.4g} s after the arrival (on the file's "
                f"clock: arrival 0, deadline 900 is due 900 s after submission)")
    if job.id in seen:
        raise w.key("id").error(f"job id {job.id!r} already used on line {seen[job.id]}",
                                "unique job ids")
    seen[job.id] = no
    jobs.append(job)


class _DuplicateKey(Exception):
    pass


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(items)
    if len(d) != len(items):
        seen: set[str] = set()
        for k, _ in items:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return d


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs)


def parse_json(where: Where, text: str, expected: str) -> Any:
    """One JSON value from ``text`` (a JSON Lines record, or a whole file at a ``where``
    without a line); InputError (at ``where``) if it is not valid JSON or an object repeats a
    key. NaN and Infinity are let through for the checks to name."""
    try:
        return _DECODER.decode(text)
    except _DuplicateKey as e:
        raise where.key(str(e.args[0])).error("key appears twice in one object",
                                              "each key once") from None
    except json.JSONDecodeError as e:
        # a record of one line (JSON Lines) keeps its line; a whole file gets the error's
        at = where if where.line is not None else Where(where.path, e.lineno, where.field)
        if e.msg == "Extra data" and where.line is None:   # a probe: JSON Lines named .json
            expected += ("; a file of one JSON object a line is JSON Lines: name it .jsonl to "
                         "read it as jobs")
        raise at.error(f"not valid JSON at column {e.colno}: {e.msg}", expected) from None
    except RecursionError:
        raise where.error(f"nested too deeply (more than about "
                          f"{sys.getrecursionlimit()} levels of arrays and objects)",
                          expected) from None
    except ValueError as e:
        if "int_max_str_digits" in str(e):     # Python's own advice is not the user's
            raise where.error(f"a number of more than {sys.get_int_max_str_digits()} digits",
                              expected) from None
        raise where.error(f"not valid JSON ({e})"[:200], expected) from None


def _job(w: Where, rec: Any, sites: set[str], models: frozenset[str]) -> Job:
    get_mapping(w, rec, required=("id", "arrival", "origin", "tasks"),
                optional=("weight", "deadline"))
    jid = ident(w.key("id"), rec["id"])
    arrival = get_number(w.key("arrival"), rec["arrival"], ge=0, le=MAX_TIME, unit="seconds")
    origin = get_str(w.key("origin"), rec["origin"])
    if origin not in sites:
        raise w.key("origin").error(f"unknown site {origin!r}",
                                    f"a site of the cluster: {', '.join(sorted(sites))}")
    weight = get_number(w.key("weight"), rec.get("weight", 1.0), gt=0, le=MAX_WEIGHT)
    deadline = rec.get("deadline")
    if deadline is not None:
        if arrival >= MAX_TIME:       # else "expected > 1e10 and <= 1e10" (a probe)
            raise w.key("deadline").error(
                f"a deadline for a job arriving at {arrival:g} s, the latest time there is",
                "an earlier arrival, or no deadline")
        deadline = get_number(w.key("deadline"), deadline, gt=arrival, le=MAX_TIME,
                              unit="seconds, absolute, after arrival")
    raw_tasks = get_list(w.key("tasks"), rec["tasks"], nonempty=True, what="task objects")
    tasks: list[Task] = []
    index: dict[str, int] = {}
    for i, rt in enumerate(raw_tasks):
        t = _task(w.key("tasks").item(i), rt, models)
        if t.id in index:
            raise w.key(f"tasks[{i}].id").error(
                f"task id {t.id!r} already used by tasks[{index[t.id]}]", "unique task ids")
        index[t.id] = i
        tasks.append(t)
    for i, t in enumerate(tasks):
        for j, p in enumerate(t.after):
            if p not in index:
                raise w.key(f"tasks[{i}].after[{j}]").error(
                    f"task {p!r} is not a task of job {jid!r}",
                    f"one of {', '.join(repr(x) for x in index)}")
    cycle = _find_cycle(tasks)
    if cycle:
        raise w.key(f"tasks[{index[cycle[0]]}].after").error(
            "tasks wait for each other in a cycle: " + _shown_cycle(cycle),
            "dependencies without cycles")
    return Job(id=jid, arrival=arrival, origin=origin, tasks=tuple(tasks), weight=weight,
               deadline=deadline)


def _task(w: Where, rt: Any, models: frozenset[str]) -> Task:
    get_mapping(w, rt, required=("id", "duration", "demand"),
                optional=("instances", "after", "data_mb", "run"))
    tid = ident(w.key("id"), rt["id"])
    duration = get_number(w.key("duration"), rt["duration"], ge=0, le=MAX_SECONDS,
                          unit="seconds")
    wd = w.key("demand")
    d = get_mapping(wd, rt["demand"], required=("cpu", "mem"), optional=("gpu", "gpu_models"))
    cpu = get_number(wd.key("cpu"), d["cpu"], ge=0, le=MAX_CORES, unit="cores")
    if 0 < cpu < 0.001:
        raise wd.key("cpu").error(f"found {cpu:g}, under one millicore",
                                  "0, or at least 0.001 cores")
    mem = get_int(wd.key("mem"), d["mem"], ge=0, le=MAX_MEM_MIB, unit="MiB")
    gpu = get_number(wd.key("gpu"), d.get("gpu", 0), ge=0, le=MAX_GPUS, unit="gpus")
    if gpu >= 1 and gpu != int(gpu):
        raise wd.key("gpu").error(f"found {gpu!r}",
                                  "a share of one gpu below 1, or a whole number of gpus")
    if 0 < gpu < 0.001:
        raise wd.key("gpu").error(f"found {gpu!r}, under 0.001 of a gpu",
                                  "0, a share of at least 0.001, or whole gpus")
    if 0 < gpu < 1 and round(gpu * MILLI) >= MILLI:
        # shares count in thousandths: 0.9999 would be read as a whole gpu
        raise wd.key("gpu").error(f"found {gpu!r}, a share that rounds to a whole gpu "
                                  f"(shares count in thousandths)",
                                  "a share of at most 0.999, or 1 for the whole gpu")
    gpu_models = None
    if "gpu_models" in d:
        wm = wd.key("gpu_models")
        if gpu == 0:
            raise wm.error("given for a demand with no gpu", "gpu_models only when gpu > 0")
        raw = get_list(wm, d["gpu_models"], nonempty=True, what="gpu model names")
        for j, m in enumerate(raw):
            get_str(wm.item(j), m)
            if m not in models:
                raise wm.item(j).error(f"unknown gpu model {m!r}",
                                       f"a model of the cluster: "
                                       f"{', '.join(sorted(models)) or 'none (no gpus)'}")
            if m in raw[:j]:
                raise wm.item(j).error(f"gpu model {m!r} listed twice", "each model once")
        gpu_models = frozenset(raw)
    instances = get_int(w.key("instances"), rt.get("instances", 1), ge=1, le=MAX_INSTANCES)
    after_raw = get_list(w.key("after"), rt.get("after", []), what="task ids")
    after: list[str] = []
    for j, p in enumerate(after_raw):
        get_str(w.key("after").item(j), p, "a task id")
        if p in after:
            raise w.key("after").item(j).error(f"task {p!r} listed twice", "each id once")
        after.append(p)
    data_mb = get_number(w.key("data_mb"), rt.get("data_mb", 0.0), ge=0, le=MAX_DATA_MB,
                         unit="MB")
    demand = Demand(cpu=round(cpu * MILLI), mem=mem, gpu=round(gpu * MILLI),
                    gpu_models=gpu_models)
    run = _run(w.key("run"), rt["run"]) if "run" in rt else None
    return Task(id=tid, duration=duration, demand=demand, instances=instances,
                after=tuple(after), data_mb=data_mb, run=run)


def _run(w: Where, raw: Any) -> Run:
    r = get_mapping(w, raw, required=("argv",), optional=("env", "cwd", "timeout_s"))
    argv = get_list(w.key("argv"), r["argv"], nonempty=True, what="strings (the program "
                    "and its arguments)")
    for i, a in enumerate(argv):
        if not isinstance(a, str):
            raise w.key("argv").item(i).error(f"found {describe(a)}", "a string")
    env = r.get("env", {})
    if not isinstance(env, dict):
        raise w.key("env").error(f"found {describe(env)}", "a mapping of NAME: value")
    for name, value in env.items():
        if not isinstance(value, str):
            raise w.key("env").key(name).error(f"found {describe(value)}",
                                               "a string (quote numbers)")
    cwd = get_str(w.key("cwd"), r["cwd"], "a folder path") if "cwd" in r else None
    timeout = (get_number(w.key("timeout_s"), r["timeout_s"], gt=0, le=1e7, unit="seconds")
               if r.get("timeout_s") is not None else None)
    run = Run(argv=tuple(argv), env=tuple(env.items()), cwd=cwd, timeout_s=timeout)
    bad = run_problem(run)
    if bad:
        field, found, expected = bad
        where = w
        for part in field.replace("[", ".[").split("."):
            where = where.item(int(part[1:-1])) if part.startswith("[") else where.key(part)
        raise where.error(f"found {found}", expected)
    return run


def run_record(run: Run) -> dict[str, Any]:
    """The native JSON object of ``run`` (fields at their default left out)."""
    out: dict[str, Any] = {"argv": list(run.argv)}
    if run.env:
        out["env"] = dict(run.env)
    if run.cwd is not None:
        out["cwd"] = run.cwd
    if run.timeout_s is not None:
        out["timeout_s"] = num(run.timeout_s)
    return out


SHOWN_CYCLE = 8
"""tasks of a dependency cycle an error names (a cycle of 20,000 tasks made a 189 KB line)"""


def _shown_cycle(cycle: list[str]) -> str:
    if len(cycle) <= SHOWN_CYCLE:
        return " -> ".join(cycle + [cycle[0]])
    return (" -> ".join(cycle[:SHOWN_CYCLE]) + f" -> ... ({len(cycle) - SHOWN_CYCLE:,} more "
            f"tasks) -> {cycle[0]}")


def _find_cycle(tasks: list[Task]) -> list[str]:
    """Task ids on one dependency cycle (each waits for the next), or [] if none."""
    after = {t.id: t.after for t in tasks}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in after:
        if root in state:
            continue
        path: list[str] = [root]
        iters = [iter(after[root])]
        state[root] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(after[nxt]))
    return []


def job_record(job: Job) -> dict[str, Any]:
    """The native JSON object of ``job`` (fields at their default left out)."""
    tasks = []
    for t in job.tasks:
        d = t.demand
        demand = {"cpu": units(d.cpu), "mem": d.mem, "gpu": units(d.gpu),
                  "gpu_models": sorted(d.gpu_models) if d.gpu and d.gpu_models else None}
        rec = {"id": t.id, "duration": num(t.duration),
               "demand": {k: v for k, v in demand.items() if v or k in ("cpu", "mem")},
               "instances": t.instances, "after": list(t.after), "data_mb": num(t.data_mb),
               "run": run_record(t.run) if t.run is not None else None}
        tasks.append({k: v for k, v in rec.items()
                      if not (k == "instances" and v == 1 or
                              k in ("after", "data_mb", "run") and not v)})
    out = {"id": job.id, "arrival": num(job.arrival), "origin": job.origin,
           "weight": num(job.weight), "deadline": num(job.deadline), "tasks": tasks}
    return {k: v for k, v in out.items()
            if not (k == "weight" and v == 1 or k == "deadline" and v is None)}


def write_jobs(workload: Workload, path: str | Path) -> None:
    """Write ``workload`` as native JSON Lines; ``read_jobs`` gives it back (``source``
    aside). Raises ValueError on a non-finite number (no valid file could hold it)."""
    with open(path, "w", encoding="utf-8") as f:
        for job in workload.jobs:
            f.write(json.dumps(job_record(job), allow_nan=False, ensure_ascii=False) + "\n")
