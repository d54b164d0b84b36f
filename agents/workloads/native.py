"""Agora's native formats: a cluster in YAML, jobs in JSON Lines.

Cluster YAML (:func:`read_cluster`, :func:`write_cluster`); units as written in the file:

- ``sites``: non-empty list of ``{name, power?, nodes}``; ``power`` takes ``node_idle_w``,
  ``node_peak_w``, ``gpu_idle_w``, ``gpu_peak_w`` (watts, idle <= peak) and ``pue`` (>= 1);
- ``nodes``: non-empty list of ``{name, cpu, mem, gpus?, gpu_model?, count?}``: ``cpu`` in
  **cores** (float > 0, stored as millicores ``round(cpu*1000)``), ``mem`` in **MiB** (int),
  ``gpus`` whole devices, ``gpu_model`` required iff gpus > 0, ``count`` identical nodes
  named ``<site>/<name>-<i>`` (``<site>/<name>`` when count is 1);
- ``links``: ``{default: {latency_ms, bandwidth_mbps}, pairs: [{a, b, latency_ms,
  bandwidth_mbps}]}`` (milliseconds, megabits per second);
- ``faults``: ``{seed, task_failure_prob, overrun_prob, overrun_factor, max_attempts,
  outages: [{node | site, at, until?}]}`` (times in seconds, ``until`` absent = permanent).

Jobs JSON Lines (:func:`read_jobs`, :func:`write_jobs`): one job object a line, blank lines
and ``#`` comments skipped: ``{id, arrival (s), origin (site), weight?, deadline? (s,
absolute), tasks: [{id, duration (s), demand: {cpu (cores), mem (MiB), gpu (gpus: < 1 a
share of one, else whole), gpu_models?}, instances?, after?, data_mb? (MB), run?: {argv:
[str, ...], env?: {NAME: str}, cwd?, timeout_s?}}]}`` (``run``: what each instance executes;
without it a task serves simulation and replay only). A demand
that fits no node is *not* an error here (the simulator reports it with
``why_unschedulable``); only malformed input is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from agora.agents.domain import (MILLI, Cluster, Demand, Faults, Job, Link, Node, NodeOutage,
                                 PowerModel, Run, Site, Task, Workload, run_problem)
from agora.agents.limits import (ID_TEXT, MAX_CORES, MAX_DATA_MB, MAX_GPUS, MAX_INSTANCES,
                                 MAX_MEM_MIB, MAX_SECONDS, MAX_TIME, MAX_WEIGHT, SITE_NAME_TEXT,
                                 id_problem, site_name_problem)
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.yamlmarks import (Where, at_item, at_key, describe, get_int, get_list,
                                              get_mapping, get_number, get_str, load_yaml, parse_json,
                                              read_text, split_lines)

MAX_COUNT = 100_000
"""largest ``count`` of one node entry (guards against a typo building millions of nodes)"""

# ----------------------------------------------------------------------------- cluster


def read_cluster(path: str | Path) -> Cluster:
    """Read a native cluster YAML file; ``Cluster.source`` is ``path``."""
    path = str(path)
    doc = load_yaml(path)
    top = Where(path, getattr(doc, "line", 1))
    get_mapping(top, doc, required=("sites",), optional=("links", "faults"))
    w_sites = at_key(top, doc, "sites")
    raw_sites = get_list(w_sites, doc["sites"], nonempty=True, what="sites")
    sites: list[Site] = []
    site_lines: dict[str, int | None] = {}
    node_names: dict[str, int | None] = {}
    for i, raw in enumerate(raw_sites):
        site = _site(at_item(w_sites, raw_sites, i), raw, node_names)
        if site.name in site_lines:
            raise at_item(w_sites, raw_sites, i).key("name").error(
                f"site {site.name!r} already defined (line {site_lines[site.name]})",
                "unique site names")
        site_lines[site.name] = at_item(w_sites, raw_sites, i).line
        sites.append(site)
    names = set(site_lines)
    links, default = {}, Link()
    if "links" in doc:
        links, default = _links(at_key(top, doc, "links"), doc["links"], names)
    faults = Faults()
    if "faults" in doc:
        faults = _faults(at_key(top, doc, "faults"), doc["faults"], names, set(node_names))
    return Cluster(sites=tuple(sites), links=links, default_link=default, faults=faults,
                   source=path)


_POWER = ("node_idle_w", "node_peak_w", "gpu_idle_w", "gpu_peak_w", "pue")


def _named(w: Where, v: Any, problem, alphabet: str) -> str:
    """A string ``problem`` (``agents/limits.py``) finds nothing wrong with."""
    name = get_str(w, v)
    bad = problem(name)
    if bad:
        raise w.error(bad, alphabet)
    return name


def _site_name(w: Where, v: Any) -> str:
    return _named(w, v, site_name_problem, SITE_NAME_TEXT)


def _id(w: Where, v: Any) -> str:
    return _named(w, v, id_problem, ID_TEXT)


def _site(w: Where, raw: Any, node_names: dict[str, int | None]) -> Site:
    get_mapping(w, raw, required=("name", "nodes"), optional=("power",))
    name = _site_name(at_key(w, raw, "name"), raw["name"])
    power = PowerModel()
    if "power" in raw:
        wp = at_key(w, raw, "power")
        p = get_mapping(wp, raw["power"], optional=_POWER)
        vals = {k: get_number(at_key(wp, p, k), p[k], ge=1.0 if k == "pue" else 0.0,
                              unit="PUE" if k == "pue" else "watts") for k in p}
        power = PowerModel(**vals)
        for kind in ("node", "gpu"):
            idle, peak = getattr(power, f"{kind}_idle_w"), getattr(power, f"{kind}_peak_w")
            if idle > peak:
                raise at_key(wp, p, f"{kind}_idle_w" if f"{kind}_idle_w" in p
                             else f"{kind}_peak_w").error(
                    f"{kind}_idle_w {idle:g} is above {kind}_peak_w {peak:g}",
                    "idle power <= peak power")
    w_nodes = at_key(w, raw, "nodes")
    raw_nodes = get_list(w_nodes, raw["nodes"], nonempty=True, what="node entries")
    nodes: list[Node] = []
    for i, rn in enumerate(raw_nodes):
        wn = at_item(w_nodes, raw_nodes, i)
        get_mapping(wn, rn, required=("name", "cpu", "mem"),
                    optional=("gpus", "gpu_model", "count"))
        base = _site_name(at_key(wn, rn, "name"), rn["name"])
        cpu = get_number(at_key(wn, rn, "cpu"), rn["cpu"], gt=0, le=MAX_CORES, unit="cores")
        mem = get_int(at_key(wn, rn, "mem"), rn["mem"], ge=1, le=MAX_MEM_MIB, unit="MiB")
        gpus = get_int(at_key(wn, rn, "gpus"), rn.get("gpus", 0), ge=0, le=MAX_GPUS,
                       unit="gpus")
        model = rn.get("gpu_model")
        if gpus > 0:
            model = get_str(at_key(wn, rn, "gpu_model"), model,
                            "a gpu model name (required when gpus > 0)")
        elif model is not None:
            raise at_key(wn, rn, "gpu_model").error(
                f"found {describe(model)} on a node with no gpus",
                "gpu_model only when gpus > 0")
        count = get_int(at_key(wn, rn, "count"), rn.get("count", 1), ge=1, le=MAX_COUNT)
        millicores = round(cpu * MILLI)
        if millicores < 1:
            raise at_key(wn, rn, "cpu").error(f"found {cpu:g}, under one millicore",
                                              "at least 0.001 cores")
        full = [f"{name}/{base}"] if count == 1 else [f"{name}/{base}-{k}" for k in range(count)]
        for n in full:
            if n in node_names:
                raise at_key(wn, rn, "name").error(
                    f"node name {n!r} already used (line {node_names[n]})", "unique node names")
            node_names[n] = wn.line
            nodes.append(Node(name=n, site=name, cpu=millicores, mem=mem, gpus=gpus,
                              gpu_model=model))
    return Site(name=name, nodes=tuple(nodes), power=power)


def _link(w: Where, raw: dict) -> Link:
    return Link(latency_ms=get_number(at_key(w, raw, "latency_ms"), raw["latency_ms"], ge=0,
                                      unit="milliseconds"),
                bandwidth_mbps=get_number(at_key(w, raw, "bandwidth_mbps"),
                                          raw["bandwidth_mbps"], gt=0, unit="megabits/s"))


def _links(w: Where, raw: Any, sites: set[str]) -> tuple[dict[frozenset[str], Link], Link]:
    get_mapping(w, raw, optional=("default", "pairs"))
    default = Link()
    if "default" in raw:
        wd = at_key(w, raw, "default")
        default = _link(wd, get_mapping(wd, raw["default"],
                                        required=("latency_ms", "bandwidth_mbps")))
    links: dict[frozenset[str], Link] = {}
    if "pairs" in raw:
        wp = at_key(w, raw, "pairs")
        pairs = get_list(wp, raw["pairs"], what="links")
        for i, rp in enumerate(pairs):
            wi = at_item(wp, pairs, i)
            get_mapping(wi, rp, required=("a", "b", "latency_ms", "bandwidth_mbps"))
            ab = []
            for k in ("a", "b"):
                s = get_str(at_key(wi, rp, k), rp[k])
                if s not in sites:
                    raise at_key(wi, rp, k).error(f"unknown site {s!r}",
                                                  f"one of {', '.join(sorted(sites))}")
                ab.append(s)
            if ab[0] == ab[1]:
                raise at_key(wi, rp, "b").error(f"a and b are both {ab[0]!r}",
                                                "two distinct sites")
            key = frozenset(ab)
            if key in links:
                raise wi.error(f"link {ab[0]}-{ab[1]} listed twice", "each pair once")
            links[key] = _link(wi, rp)
    return links, default


_FAULTS = ("seed", "task_failure_prob", "overrun_prob", "overrun_factor", "max_attempts",
           "outages")
_FAULT_SCALARS: tuple[tuple[str, Any, dict[str, float]], ...] = (
    ("seed", get_int, {}), ("task_failure_prob", get_number, {"ge": 0, "lt": 1}),
    ("overrun_prob", get_number, {"ge": 0, "le": 1}), ("overrun_factor", get_number, {"ge": 1}),
    ("max_attempts", get_int, {"ge": 1}))


def _faults(w: Where, raw: Any, sites: set[str], nodes: set[str]) -> Faults:
    get_mapping(w, raw, optional=_FAULTS)
    vals: dict[str, Any] = {}
    for k, check, bounds in _FAULT_SCALARS:
        if k in raw:
            vals[k] = check(at_key(w, raw, k), raw[k], **bounds)
    outages: list[NodeOutage] = []
    if "outages" in raw:
        wo = at_key(w, raw, "outages")
        items = get_list(wo, raw["outages"], what="outages")
        for i, ro in enumerate(items):
            wi = at_item(wo, items, i)
            get_mapping(wi, ro, required=("at",), optional=("node", "site", "until"))
            if ("node" in ro) == ("site" in ro):
                raise wi.error("names " + ("both node and site" if "node" in ro else
                                           "neither node nor site"),
                               "exactly one of node: <node name> or site: <site name>")
            kind = "node" if "node" in ro else "site"
            name = get_str(at_key(wi, ro, kind), ro[kind])
            known = nodes if kind == "node" else sites
            if name not in known:
                raise at_key(wi, ro, kind).error(
                    f"unknown {kind} {name!r}",
                    f"a {kind} of this cluster" + ("" if kind == "node" else
                                                   f" ({', '.join(sorted(sites))})"))
            at = get_number(at_key(wi, ro, "at"), ro["at"], ge=0, unit="seconds")
            until = ro.get("until")
            if until is not None:
                until = get_number(at_key(wi, ro, "until"), until, gt=at,
                                   unit="seconds, after 'at'; absent when permanent")
            outages.append(NodeOutage(at=at, until=until, node=name if kind == "node" else None,
                                      site=name if kind == "site" else None))
    return Faults(**vals, outages=tuple(outages))


def write_cluster(cluster: Cluster, path: str | Path) -> None:
    """Write ``cluster`` as native YAML; ``read_cluster`` gives it back (``source`` aside).
    Runs of identical nodes named ``<site>/<base>-0..k-1`` are written with ``count: k``;
    every node name must start with ``<site>/``."""
    sites = []
    for s in cluster.sites:
        entries: list[dict[str, Any]] = []
        nodes = list(s.nodes)
        i = 0
        while i < len(nodes):
            n = nodes[i]
            prefix = f"{s.name}/"
            if not n.name.startswith(prefix):
                raise ValueError(f"node {n.name!r} is not named {prefix}<name>")
            base, k = n.name[len(prefix):], 1
            if base.endswith("-0") and len(base) > 2:
                stem = base[:-2]
                while (i + k < len(nodes) and nodes[i + k].name == f"{prefix}{stem}-{k}"
                       and _same_hw(nodes[i + k], n)):
                    k += 1
                if k > 1:
                    base = stem
            e: dict[str, Any] = {"name": base, "cpu": _units(n.cpu), "mem": n.mem}
            if n.gpus:
                e.update(gpus=n.gpus, gpu_model=n.gpu_model)
            if k > 1:
                e["count"] = k
            entries.append(e)
            i += k
        p = s.power
        sites.append({"name": s.name, "power": {k: getattr(p, k) for k in _POWER},
                      "nodes": entries})
    d = cluster.default_link
    pairs = [{"a": a, "b": b, "latency_ms": l.latency_ms, "bandwidth_mbps": l.bandwidth_mbps}
             for (a, b), l in sorted((tuple(sorted(k)), v) for k, v in cluster.links.items())]
    f = cluster.faults
    faults: dict[str, Any] = {k: getattr(f, k) for k in _FAULTS[:-1]}
    faults["outages"] = [{**({"node": o.node} if o.node is not None else {"site": o.site}),
                          "at": o.at, **({"until": o.until} if o.until is not None else {})}
                         for o in f.outages]
    doc = {"sites": sites,
           "links": {"default": {"latency_ms": d.latency_ms, "bandwidth_mbps": d.bandwidth_mbps},
                     "pairs": pairs},
           "faults": faults}
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False, width=100), encoding="utf-8")


def _same_hw(a: Node, b: Node) -> bool:
    return (a.cpu, a.mem, a.gpus, a.gpu_model) == (b.cpu, b.mem, b.gpus, b.gpu_model)


# ----------------------------------------------------------------------------- jobs

def read_jobs(path: str | Path, cluster: Cluster, *, require_run: bool = False) -> Workload:
    """Read native JSON Lines jobs; origins and gpu models are checked against ``cluster``.
    Jobs come back sorted by (arrival, id); ``Workload.source`` is ``path``. With
    ``require_run`` (jobs for a live Agora) every task must say what it runs."""
    path = str(path)
    lines = split_lines(read_text(path, "JSON Lines, one job object a line"))
    sites, models = set(cluster.site_names), cluster.gpu_models
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for no, text in enumerate(lines, 1):
        s = text.strip()
        if not s or s.startswith("#"):
            continue
        w = Where(path, no)
        rec = parse_json(w, s, "one JSON object a line")
        job = _job(w, rec, sites, models)
        if require_run:
            for k, t in enumerate(job.tasks):
                if t.run is None:
                    raise w.key(f"tasks[{k}].run").error(
                        f"task {t.id!r} has no run", 'the command each instance executes, '
                        'e.g. "run": {"argv": ["python", "step.py"]} (a live Agora runs it)')
        if job.id in seen:
            raise w.key("id").error(f"job id {job.id!r} already used on line {seen[job.id]}",
                                    "unique job ids")
        seen[job.id] = no
        jobs.append(job)
    jobs.sort(key=lambda j: (j.arrival, j.id))
    return Workload(jobs=tuple(jobs), source=path)


def _job(w: Where, rec: Any, sites: set[str], models: frozenset[str]) -> Job:
    get_mapping(w, rec, required=("id", "arrival", "origin", "tasks"),
                optional=("weight", "deadline"))
    jid = _id(w.key("id"), rec["id"])
    arrival = get_number(w.key("arrival"), rec["arrival"], ge=0, le=MAX_TIME, unit="seconds")
    origin = get_str(w.key("origin"), rec["origin"])
    if origin not in sites:
        raise w.key("origin").error(f"unknown site {origin!r}",
                                    f"a site of the cluster: {', '.join(sorted(sites))}")
    weight = get_number(w.key("weight"), rec.get("weight", 1.0), gt=0, le=MAX_WEIGHT)
    deadline = rec.get("deadline")
    if deadline is not None:
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
            "tasks wait for each other in a cycle: " + " -> ".join(cycle + [cycle[0]]),
            "dependencies without cycles")
    return Job(id=jid, arrival=arrival, origin=origin, tasks=tuple(tasks), weight=weight,
               deadline=deadline)


def _task(w: Where, rt: Any, models: frozenset[str]) -> Task:
    get_mapping(w, rt, required=("id", "duration", "demand"),
                optional=("instances", "after", "data_mb", "run"))
    tid = _id(w.key("id"), rt["id"])
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
        raise wd.key("gpu").error(f"found {gpu:g}",
                                  "a share of one gpu below 1, or a whole number of gpus")
    if 0 < gpu < 0.001:
        raise wd.key("gpu").error(f"found {gpu:g}, under 0.001 of a gpu",
                                  "0, a share of at least 0.001, or whole gpus")
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
        out["timeout_s"] = _num(run.timeout_s)
    return out


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


def _num(x: float) -> int | float:
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) < 2**53 else x


def _units(milli: int) -> int | float:
    """millicores -> cores, milli-gpus -> gpus (an int when whole)."""
    return milli // MILLI if milli % MILLI == 0 else milli / MILLI


def job_record(job: Job) -> dict[str, Any]:
    """The native JSON object of ``job`` (fields at their default left out)."""
    tasks = []
    for t in job.tasks:
        d = t.demand
        demand = {"cpu": _units(d.cpu), "mem": d.mem, "gpu": _units(d.gpu),
                  "gpu_models": sorted(d.gpu_models) if d.gpu and d.gpu_models else None}
        rec = {"id": t.id, "duration": _num(t.duration),
               "demand": {k: v for k, v in demand.items() if v or k in ("cpu", "mem")},
               "instances": t.instances, "after": list(t.after), "data_mb": _num(t.data_mb),
               "run": run_record(t.run) if t.run is not None else None}
        tasks.append({k: v for k, v in rec.items()
                      if not (k == "instances" and v == 1 or
                              k in ("after", "data_mb", "run") and not v)})
    out = {"id": job.id, "arrival": _num(job.arrival), "origin": job.origin,
           "weight": _num(job.weight), "deadline": _num(job.deadline), "tasks": tasks}
    return {k: v for k, v in out.items()
            if not (k == "weight" and v == 1 or k == "deadline" and v is None)}


def write_jobs(workload: Workload, path: str | Path) -> None:
    """Write ``workload`` as native JSON Lines; ``read_jobs`` gives it back (``source``
    aside). Raises ValueError on a non-finite number (no valid file could hold it)."""
    with open(path, "w", encoding="utf-8") as f:
        for job in workload.jobs:
            f.write(json.dumps(job_record(job), allow_nan=False, ensure_ascii=False) + "\n")

