"""Domain objects (agents/domain.py) to agora.v1 messages and back.

``x_to_proto`` writes a domain object as a message; ``x_from_proto`` reads a message back into
a domain object after checking everything it reads, and raises :class:`ProtoError` (a
ValueError) naming the field path, what was found and what would be right; a server answers
it as INVALID_ARGUMENT. A valid domain object comes back equal: ``x_from_proto(x_to_proto(o))
== o``. Units are the domain's, unchanged.

This module holds the per-message converters; ProtoError, :func:`decode` and the per-field
checks every reader shares are in ``convert_checks.py`` (ProtoError and decode are
re-exported here).

Conventions, the same in every message:

- a message field whose domain field has a default (``Site.power``, ``Cluster.default_link``,
  ``Cluster.faults``) may be left unset and means that default; one without (``Task.demand``,
  ``Demand.resources``) must be set;
- ``None`` is an unset ``optional`` scalar (``Job.deadline_s``, ``Workload.seed``,
  ``NodeOutage.until_s``), an empty string for a name (``Node.gpu_model``, ``NodeOutage.node``)
  and an empty repeated field for ``Demand.gpu_models`` (any model). The empty value itself
  has no domain meaning, so ``x_to_proto`` refuses it rather than change the object;
- unknown fields (a newer writer's, or bytes of another message) are refused, not dropped: a
  field this reader cannot see might change what the message means, and coordinator replicas
  must all read a command the same way. Roll a new field out to readers before writers.
"""

from __future__ import annotations

from agora.agents.domain import (
    MILLI,
    Cluster,
    Demand,
    Faults,
    Job,
    Link,
    Node,
    NodeOutage,
    PowerModel,
    Run,
    Site,
    Task,
    Workload,
    run_problem,
    topological_order,
)
from agora.agents.limits import (MAX_CORES, MAX_DATA_MB, MAX_GPUS, MAX_INSTANCES, MAX_MEM_MIB,
                                 MAX_SECONDS, MAX_TIME, MAX_WEIGHT)
from agora.protos.agora.v1 import cluster_pb2, resources_pb2, workload_pb2
# ProtoError, decode and the per-field checks live in convert_checks.py; ProtoError and decode
# are re-exported here, where callers import them.
from agora.protos.convert_checks import (ProtoError, _at_least, _at_most, _child, _id, _known,
                                         _name, _no_empty, _number, _unique, decode)

__all__ = [
    "ProtoError", "decode",
    "demand_to_proto", "demand_from_proto", "cluster_to_proto", "cluster_from_proto",
    "job_to_proto", "run_to_proto", "job_from_proto", "workload_to_proto", "workload_from_proto",
]


# ---- Demand ----

def demand_to_proto(d: Demand, where: str = "demand") -> resources_pb2.Demand:
    if d.gpu_models is not None and not d.gpu_models:
        raise ProtoError(f"{where}.gpu_models", "an empty set (no model allowed) cannot be sent",
                         "None for any model, or at least one model")
    return resources_pb2.Demand(
        resources=resources_pb2.Resources(cpu_milli=d.cpu, mem_mib=d.mem, gpu_milli=d.gpu),
        gpu_models=sorted(d.gpu_models or ()))


def demand_from_proto(msg: resources_pb2.Demand, where: str = "demand") -> Demand:
    _known(msg, where)
    r = _child(msg, "resources", where, required=True)
    at = f"{where}.resources"
    gpu = _at_least(r.gpu_milli, 0, f"{at}.gpu_milli")
    if gpu >= MILLI and gpu % MILLI:
        raise ProtoError(f"{at}.gpu_milli", f"{gpu} is above one gpu but not whole gpus",
                         f"a share below {MILLI} or a multiple of {MILLI}")
    models = [_name(m, f"{where}.gpu_models[{i}]") for i, m in enumerate(msg.gpu_models)]
    _unique(models, f"{where}.gpu_models", "gpu model")
    _at_most(gpu, MAX_GPUS * MILLI, f"{at}.gpu_milli")
    return Demand(cpu=_at_most(_at_least(r.cpu_milli, 0, f"{at}.cpu_milli"),
                               int(MAX_CORES * MILLI), f"{at}.cpu_milli"),
                  mem=_at_most(_at_least(r.mem_mib, 0, f"{at}.mem_mib"), MAX_MEM_MIB,
                               f"{at}.mem_mib"), gpu=gpu,
                  gpu_models=frozenset(models) if models else None)


# ---- Cluster ----

def _link_from_proto(msg: cluster_pb2.Link, where: str) -> Link:
    return Link(latency_ms=_number(msg.latency_ms, f"{where}.latency_ms"),
                bandwidth_mbps=_number(msg.bandwidth_mbps, f"{where}.bandwidth_mbps", above=True))


def _power_from_proto(msg: cluster_pb2.PowerModel, where: str) -> PowerModel:
    w = {f: _number(getattr(msg, f), f"{where}.{f}")
         for f in ("node_idle_w", "node_peak_w", "gpu_idle_w", "gpu_peak_w")}
    for part in ("node", "gpu"):
        if w[f"{part}_peak_w"] < w[f"{part}_idle_w"]:
            raise ProtoError(f"{where}.{part}_peak_w", f"{w[f'{part}_peak_w']!r} W is below "
                             f"{part}_idle_w", f"a peak >= {w[f'{part}_idle_w']!r} W")
    return PowerModel(**w, pue=_number(msg.pue, f"{where}.pue", lowest=1.0))


def _site_from_proto(msg: cluster_pb2.Site, where: str) -> Site:
    _known(msg, where)
    name = _name(msg.name, f"{where}.name")
    nodes = []
    for i, n in enumerate(msg.nodes):
        at = f"{where}.nodes[{i}]"
        _known(n, at)
        if n.site != name:
            raise ProtoError(f"{at}.site", f"{n.site!r} differs from its site", repr(name))
        nodes.append(Node(name=_name(n.name, f"{at}.name"), site=name,
                          cpu=_at_least(n.cpu_milli, 0, f"{at}.cpu_milli"),
                          mem=_at_least(n.mem_mib, 0, f"{at}.mem_mib"),
                          gpus=_at_least(n.gpus, 0, f"{at}.gpus"), gpu_model=n.gpu_model or None))
    _unique((n.name for n in nodes), f"{where}.nodes", "node name")
    power = _child(msg, "power", where, required=False)
    return Site(name=name, nodes=tuple(nodes),
                power=PowerModel() if power is None else _power_from_proto(power, f"{where}.power"))


def _outage_from_proto(msg: cluster_pb2.NodeOutage, where: str,
                       sites: dict[str, Site]) -> NodeOutage:
    _known(msg, where)
    at = _number(msg.at_s, f"{where}.at_s")
    until = (_number(msg.until_s, f"{where}.until_s", lowest=at, above=True)
             if msg.HasField("until_s") else None)
    if msg.site and msg.site not in sites:
        raise ProtoError(f"{where}.site", f"unknown site {msg.site!r}",
                         f"one of {sorted(sites)}")
    if msg.node:
        holders = [s for s in ([sites[msg.site]] if msg.site else sites.values())
                   if any(n.name == msg.node for n in s.nodes)]
        if len(holders) != 1:
            found = "no" if not holders else "more than one"
            raise ProtoError(f"{where}.node", f"{found} node named {msg.node!r} "
                             f"{'in site ' + repr(msg.site) if msg.site else 'in the cluster'}",
                             "the name of one node (with its site where names repeat)")
    elif not msg.site:
        raise ProtoError(where, "neither node nor site is set", "a node, a site, or both")
    return NodeOutage(at=at, until=until, node=msg.node or None, site=msg.site or None)


def _faults_from_proto(msg: cluster_pb2.Faults, where: str, sites: dict[str, Site]) -> Faults:
    return Faults(
        seed=msg.seed,
        task_failure_prob=_number(msg.task_failure_prob, f"{where}.task_failure_prob",
                                  highest=1.0),
        overrun_prob=_number(msg.overrun_prob, f"{where}.overrun_prob", highest=1.0),
        overrun_factor=_number(msg.overrun_factor, f"{where}.overrun_factor", lowest=1.0),
        max_attempts=_at_least(msg.max_attempts, 1, f"{where}.max_attempts"),
        outages=tuple(_outage_from_proto(o, f"{where}.outages[{i}]", sites)
                      for i, o in enumerate(msg.outages)))


def cluster_to_proto(c: Cluster, where: str = "cluster") -> cluster_pb2.Cluster:
    links = []
    for pair, link in c.links.items():
        if len(pair) != 2:
            raise ProtoError(f"{where}.links", f"key {sorted(pair)} is not a pair of sites",
                             "frozenset({site_a, site_b}) of two distinct sites")
        a, b = sorted(pair)
        links.append(cluster_pb2.Link(site_a=a, site_b=b, latency_ms=link.latency_ms,
                                      bandwidth_mbps=link.bandwidth_mbps))
    f = c.faults
    outages = [cluster_pb2.NodeOutage(
        at_s=o.at, until_s=o.until,
        node=_no_empty(o.node, f"{where}.faults.outages[{i}].node", "every node of the site"),
        site=_no_empty(o.site, f"{where}.faults.outages[{i}].site", "no site given"))
        for i, o in enumerate(f.outages)]
    return cluster_pb2.Cluster(
        sites=[cluster_pb2.Site(
            name=s.name, power=cluster_pb2.PowerModel(
                node_idle_w=s.power.node_idle_w, node_peak_w=s.power.node_peak_w,
                gpu_idle_w=s.power.gpu_idle_w, gpu_peak_w=s.power.gpu_peak_w, pue=s.power.pue),
            nodes=[cluster_pb2.Node(
                name=n.name, site=n.site, cpu_milli=n.cpu, mem_mib=n.mem, gpus=n.gpus,
                gpu_model=_no_empty(n.gpu_model, f"{where}.sites[{i}].nodes[{j}].gpu_model",
                                    "no gpu model"))
                for j, n in enumerate(s.nodes)])
            for i, s in enumerate(c.sites)],
        links=sorted(links, key=lambda m: (m.site_a, m.site_b)),
        default_link=cluster_pb2.Link(latency_ms=c.default_link.latency_ms,
                                      bandwidth_mbps=c.default_link.bandwidth_mbps),
        faults=cluster_pb2.Faults(
            seed=f.seed, task_failure_prob=f.task_failure_prob, overrun_prob=f.overrun_prob,
            overrun_factor=f.overrun_factor, max_attempts=f.max_attempts, outages=outages),
        source=c.source)


def cluster_from_proto(msg: cluster_pb2.Cluster, where: str = "cluster") -> Cluster:
    _known(msg, where)
    sites = [_site_from_proto(s, f"{where}.sites[{i}]") for i, s in enumerate(msg.sites)]
    _unique((s.name for s in sites), f"{where}.sites", "site name")
    by_name = {s.name: s for s in sites}
    links: dict[frozenset[str], Link] = {}
    for i, m in enumerate(msg.links):
        at = f"{where}.links[{i}]"
        _known(m, at)
        for end in ("site_a", "site_b"):
            if getattr(m, end) not in by_name:
                raise ProtoError(f"{at}.{end}", f"unknown site {getattr(m, end)!r}",
                                 f"one of {sorted(by_name)}")
        pair = frozenset((m.site_a, m.site_b))
        if len(pair) != 2:
            raise ProtoError(f"{at}.site_b", f"links site {m.site_a!r} to itself",
                             "a site other than site_a")
        if pair in links:
            raise ProtoError(at, f"a second link between {sorted(pair)}", "one link per pair")
        links[pair] = _link_from_proto(m, at)
    default = _child(msg, "default_link", where, required=False)
    if default is not None and (default.site_a or default.site_b):
        raise ProtoError(f"{where}.default_link", "names sites", "site_a and site_b empty")
    faults = _child(msg, "faults", where, required=False)
    return Cluster(
        sites=tuple(sites), links=links,
        default_link=Link() if default is None else _link_from_proto(default,
                                                                     f"{where}.default_link"),
        faults=Faults() if faults is None else _faults_from_proto(faults, f"{where}.faults",
                                                                  by_name),
        source=msg.source)


# ---- Job and Workload ----

def job_to_proto(j: Job, where: str = "job") -> workload_pb2.Job:
    return workload_pb2.Job(
        id=j.id, arrival_s=j.arrival, origin=j.origin, weight=j.weight, deadline_s=j.deadline,
        tasks=[workload_pb2.Task(id=t.id, duration_s=t.duration, instances=t.instances,
                                 demand=demand_to_proto(t.demand, f"{where}.tasks[{i}].demand"),
                                 after=t.after, data_mb=t.data_mb,
                                 run=run_to_proto(t.run) if t.run is not None else None)
               for i, t in enumerate(j.tasks)])


def run_to_proto(r: Run) -> workload_pb2.TaskRun:
    return workload_pb2.TaskRun(
        argv=r.argv, env=[workload_pb2.EnvVar(name=n, value=v) for n, v in r.env],
        cwd=r.cwd or "", timeout_s=r.timeout_s)


def _run_from_proto(msg: workload_pb2.TaskRun, where: str) -> Run:
    _known(msg, where)
    for i, e in enumerate(msg.env):
        _known(e, f"{where}.env[{i}]")
    run = Run(argv=tuple(msg.argv), env=tuple((e.name, e.value) for e in msg.env),
              cwd=msg.cwd or None,
              timeout_s=msg.timeout_s if msg.HasField("timeout_s") else None)
    bad = run_problem(run)
    if bad:
        field, found, expected = bad
        raise ProtoError(f"{where}.{field}", f"found {found}", expected)
    return run


def _task_from_proto(msg: workload_pb2.Task, where: str) -> Task:
    _known(msg, where)
    tid = _id(msg.id, f"{where}.id")
    after = tuple(msg.after)
    _unique(after, f"{where}.after", "task id")
    if tid in after:
        raise ProtoError(f"{where}.after[{after.index(tid)}]", f"task {tid!r} waits for itself",
                         "ids of other tasks of the job")
    return Task(id=tid, duration=_number(msg.duration_s, f"{where}.duration_s",
                                         highest=MAX_SECONDS),
                demand=demand_from_proto(_child(msg, "demand", where, required=True),
                                         f"{where}.demand"),
                instances=_at_most(_at_least(msg.instances, 1, f"{where}.instances"),
                                   MAX_INSTANCES, f"{where}.instances"), after=after,
                data_mb=_number(msg.data_mb, f"{where}.data_mb", highest=MAX_DATA_MB),
                run=(_run_from_proto(msg.run, f"{where}.run") if msg.HasField("run")
                     else None))


def job_from_proto(msg: workload_pb2.Job, where: str = "job") -> Job:
    _known(msg, where)
    if not msg.tasks:
        raise ProtoError(f"{where}.tasks", "no task", "at least one task")
    tasks = tuple(_task_from_proto(t, f"{where}.tasks[{i}]") for i, t in enumerate(msg.tasks))
    ids = [t.id for t in tasks]
    _unique(ids, f"{where}.tasks", "task id")
    known = set(ids)        # a list here made a job of 30,000 tasks cost 30 s to check
    for i, t in enumerate(tasks):
        for k, p in enumerate(t.after):
            if p not in known:
                shown = ", ".join(repr(x) for x in ids[:8])
                raise ProtoError(f"{where}.tasks[{i}].after[{k}]", f"unknown task {p!r}",
                                 f"one of the job's {len(ids)} task ids ({shown}"
                                 f"{', ...' if len(ids) > 8 else ''})")
    arrival = _number(msg.arrival_s, f"{where}.arrival_s", highest=MAX_TIME)
    job = Job(id=_id(msg.id, f"{where}.id"), arrival=arrival,
              origin=_name(msg.origin, f"{where}.origin"), tasks=tasks,
              weight=_number(msg.weight, f"{where}.weight", above=True, highest=MAX_WEIGHT),
              deadline=(_number(msg.deadline_s, f"{where}.deadline_s", lowest=arrival,
                                highest=MAX_TIME)
                        if msg.HasField("deadline_s") else None))
    try:
        topological_order(job)
    except ValueError as e:
        raise ProtoError(f"{where}.tasks", str(e), "tasks whose `after` form no cycle") from None
    return job


def workload_to_proto(w: Workload, where: str = "workload") -> workload_pb2.Workload:
    return workload_pb2.Workload(jobs=[job_to_proto(j, f"{where}.jobs[{i}]")
                                       for i, j in enumerate(w.jobs)],
                                 source=w.source, seed=w.seed)


def workload_from_proto(msg: workload_pb2.Workload, where: str = "workload") -> Workload:
    _known(msg, where)
    jobs = tuple(job_from_proto(j, f"{where}.jobs[{i}]") for i, j in enumerate(msg.jobs))
    _unique((j.id for j in jobs), f"{where}.jobs", "job id")
    for i in range(1, len(jobs)):
        prev, cur = jobs[i - 1], jobs[i]
        if (cur.arrival, cur.id) < (prev.arrival, prev.id):
            raise ProtoError(f"{where}.jobs[{i}]", f"job {cur.id!r} (arrival {cur.arrival:g} s) "
                             f"comes after {prev.id!r} (arrival {prev.arrival:g} s)",
                             "jobs sorted by (arrival_s, id)")
    return Workload(jobs=jobs, source=msg.source,
                    seed=msg.seed if msg.HasField("seed") else None)
