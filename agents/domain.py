"""The scheduling problem: clusters of sites, jobs of tasks, and their invariants.

Units, used everywhere in Agora (readers convert into them, the simulator and the protos use
them unchanged):

- cpu: **millicores** (int; 1 core = 1000), as Kubernetes and the Alibaba trace count it;
- memory: **MiB** (int);
- gpu: **milli-gpus** (int). A demand below 1000 is a *share of one gpu* (gpu sharing, as in
  the Alibaba GPU trace); a demand of 1000 or more must be a whole number of gpus (a multiple
  of 1000), each one entirely free;
- time: **seconds** (float) on the workload's own clock (the first arrival need not be 0);
- data: **MB** (float) of input a task must fetch when it runs away from its origin site;
- link latency: **milliseconds**; link bandwidth: **megabits per second**;
- power: **watts**; energy: **joules**.

Everything here is immutable; the simulator keeps its mutable state elsewhere.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field

MILLI = 1000


@dataclass(frozen=True, slots=True)
class Demand:
    """What one instance of a task needs while it runs."""

    cpu: int
    """millicores, >= 0"""
    mem: int
    """MiB, >= 0"""
    gpu: int = 0
    """milli-gpus: < 1000 is a share of one gpu, >= 1000 must be a multiple of 1000"""
    gpu_models: frozenset[str] | None = None
    """allowed gpu models; None means any model (ignored when gpu == 0)"""

    def __post_init__(self) -> None:
        for name in ("cpu", "mem", "gpu"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"Demand.{name} must be an int >= 0 (internal units), got {v!r}")
        if self.gpu > MILLI and self.gpu % MILLI:
            raise ValueError(f"Demand.gpu {self.gpu} milli-gpus: above one gpu, demands must be "
                             f"whole gpus (a multiple of {MILLI})")

    @property
    def whole_gpus(self) -> int:
        """Number of entirely free gpus needed (0 for a share or no gpu)."""
        return self.gpu // MILLI if self.gpu >= MILLI else 0

    @property
    def key(self) -> tuple:
        """A hashable shape: two demands with equal keys fit in exactly the same places."""
        models = None
        if self.gpu and self.gpu_models is not None:
            models = tuple(sorted(self.gpu_models))
        return (self.cpu, self.mem, self.gpu, models)


@dataclass(frozen=True, slots=True)
class PowerModel:
    """Linear power model of one site's machines (Barroso & Hölzle's energy-proportionality
    model): a node draws ``node_idle_w`` when idle and ``node_peak_w`` with all cores busy,
    linear in between; each gpu likewise between ``gpu_idle_w`` and ``gpu_peak_w``. ``pue``
    (power usage effectiveness, >= 1) scales everything for cooling and distribution."""

    node_idle_w: float = 100.0
    node_peak_w: float = 300.0
    gpu_idle_w: float = 50.0
    gpu_peak_w: float = 300.0
    pue: float = 1.2


@dataclass(frozen=True, slots=True)
class Node:
    """One machine of a site."""

    name: str
    site: str
    cpu: int
    """millicores"""
    mem: int
    """MiB"""
    gpus: int = 0
    """number of physical gpus"""
    gpu_model: str | None = None


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    nodes: tuple[Node, ...]
    power: PowerModel = field(default_factory=PowerModel)


@dataclass(frozen=True, slots=True)
class Link:
    """A network path between two sites, symmetric."""

    latency_ms: float = 20.0
    bandwidth_mbps: float = 10_000.0

    def transfer_s(self, data_mb: float) -> float:
        """Seconds to move ``data_mb`` megabytes over this link (latency + size / bandwidth)."""
        return self.latency_ms / 1000.0 + (data_mb * 8.0) / self.bandwidth_mbps


@dataclass(frozen=True, slots=True)
class NodeOutage:
    """A node (or, with ``node`` None, every node of ``site``) is down in [at, until)."""

    at: float
    until: float | None
    node: str | None = None
    site: str | None = None


@dataclass(frozen=True, slots=True)
class Faults:
    """Faults injected into a simulation, all seeded (``seed`` is recorded in the results)."""

    seed: int = 0
    task_failure_prob: float = 0.0
    """probability that one attempt of a task instance fails, at a uniform point of its run"""
    overrun_prob: float = 0.0
    """probability that an attempt runs ``overrun_factor`` times its stated duration"""
    overrun_factor: float = 1.5
    max_attempts: int = 5
    """attempts per instance before it is reported failed (never silently lost)"""
    outages: tuple[NodeOutage, ...] = ()


@dataclass(frozen=True, slots=True)
class Cluster:
    sites: tuple[Site, ...]
    links: dict[frozenset[str], Link] = field(default_factory=dict)
    """links between pairs of distinct sites; pairs not listed use ``default_link``"""
    default_link: Link = field(default_factory=Link)
    faults: Faults = field(default_factory=Faults)
    source: str = "<memory>"
    """where the cluster came from (a file path, a trace, 'default')"""

    @property
    def site_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sites)

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(n for s in self.sites for n in s.nodes)

    @property
    def gpu_models(self) -> frozenset[str]:
        return frozenset(n.gpu_model for n in self.nodes if n.gpus and n.gpu_model)

    def link(self, a: str, b: str) -> Link | None:
        """The link from site ``a`` to ``b``; None when a == b (no transfer)."""
        if a == b:
            return None
        return self.links.get(frozenset((a, b)), self.default_link)

    def capacity(self) -> tuple[int, int, int]:
        """Total (cpu millicores, MiB, milli-gpus) over every node."""
        ns = self.nodes
        return (sum(n.cpu for n in ns), sum(n.mem for n in ns), sum(n.gpus * MILLI for n in ns))


RESERVED_ENV = ("AGORA_JOB", "AGORA_TASK", "AGORA_INSTANCE", "AGORA_SITE", "AGORA_NODE",
                "AGORA_ATTEMPT", "AGORA_RAY_NODE", "AGORA_RUN_DIR", "AGORA_RUN")
"""environment variables Agora sets for each instance; a task's ``run.env`` may not set them"""


@dataclass(frozen=True, slots=True)
class Run:
    """What an instance of a task executes: ``argv`` (no shell; ``["sh", "-c", "..."]`` for
    one), ``env`` added to the runner's environment (with ``RESERVED_ENV`` set by Agora),
    ``cwd`` (default: the instance's log folder), and ``timeout_s`` after which the run is
    killed and counts as a failed attempt (None: no limit)."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    timeout_s: float | None = None


MAX_RUN_ARGS, MAX_RUN_ENV, MAX_RUN_BYTES = 256, 256, 32_768
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _text_problem(s: str) -> str | None:
    """Why ``s`` cannot be an argument, a variable's value or a path of a process: a NUL
    ends it early, a lone surrogate (JSON's "\\ud800") has no bytes to pass."""
    if "\0" in s:
        return "a NUL character"
    try:
        s.encode()
    except UnicodeEncodeError as e:
        return f"a lone surrogate {s[e.start]!r} at character {e.start}"
    return None


def run_problem(run: Run) -> tuple[str, str, str] | None:
    """What is wrong with ``run``, as (field under ``run``, what was found, what would be
    right), or None. One check for every reader (JSON Lines, protobuf)."""
    if not run.argv:
        return "argv", "an empty list", "the program and its arguments, at least one string"
    if len(run.argv) > MAX_RUN_ARGS:
        return "argv", f"{len(run.argv)} arguments", f"at most {MAX_RUN_ARGS}"
    for i, a in enumerate(run.argv):
        if _text_problem(a):
            return f"argv[{i}]", _text_problem(a), "text without NUL or lone surrogates"
    if not run.argv[0]:
        return "argv[0]", "an empty program name", "a program name or path"
    if len(run.env) > MAX_RUN_ENV:
        return "env", f"{len(run.env)} variables", f"at most {MAX_RUN_ENV}"
    seen: set[str] = set()
    for name, value in run.env:
        if not _ENV_NAME.fullmatch(name):
            return f"env.{name}", "an invalid variable name", "[A-Za-z_][A-Za-z0-9_]*"
        if name in RESERVED_ENV:
            return f"env.{name}", "a variable Agora sets", f"a name other than " \
                f"{', '.join(RESERVED_ENV)}"
        if name in seen:
            return f"env.{name}", "the name twice", "each name once"
        seen.add(name)
        if _text_problem(value):
            return f"env.{name}", _text_problem(value), "text without NUL or lone surrogates"
    if run.cwd is not None and (_text_problem(run.cwd) or not run.cwd):
        return "cwd", repr(run.cwd), "a folder path without NUL or lone surrogates (or no cwd)"
    if run.timeout_s is not None and not (0 < run.timeout_s <= 1e7 and
                                          math.isfinite(run.timeout_s)):
        return "timeout_s", f"{run.timeout_s!r}", "seconds, > 0 and <= 1e7 (or no timeout)"
    size = sum(len(a.encode()) for a in run.argv) + sum(
        len(n) + len(v.encode()) for n, v in run.env) + len((run.cwd or "").encode())
    if size > MAX_RUN_BYTES:
        return "argv", f"{size} bytes of argv, env and cwd", f"at most {MAX_RUN_BYTES} " \
            f"(put large inputs in files)"
    return None


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    duration: float
    """seconds one instance runs for (also the estimate schedulers see)"""
    demand: Demand
    instances: int = 1
    """identical copies; each needs ``demand`` on one node, independently"""
    after: tuple[str, ...] = ()
    """ids of tasks of the same job that must all finish (every instance) first"""
    data_mb: float = 0.0
    """input fetched from the origin site when an instance runs elsewhere"""
    run: Run | None = None
    """the command each instance runs (None: simulation and replay only; ``duration`` stays
    the estimate the policy sees, the real run takes what it takes)"""


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    arrival: float
    origin: str
    """site the job is submitted at (and where its data lives)"""
    tasks: tuple[Task, ...]
    weight: float = 1.0
    deadline: float | None = None
    """absolute time on the workload clock by which the job should complete"""

    def critical_path(self) -> float:
        """Longest chain of task durations through the DAG (the job's ideal runtime)."""
        finish: dict[str, float] = {}
        for t in topological_order(self):
            finish[t.id] = t.duration + max((finish[p] for p in t.after), default=0.0)
        return max(finish.values(), default=0.0)

    @property
    def instance_count(self) -> int:
        return sum(t.instances for t in self.tasks)


@dataclass(frozen=True, slots=True)
class Workload:
    jobs: tuple[Job, ...]
    """sorted by (arrival, id)"""
    source: str = "<memory>"
    seed: int | None = None
    """the seed a generated workload was drawn with (None for a trace)"""

    @property
    def task_count(self) -> int:
        return sum(len(j.tasks) for j in self.jobs)

    @property
    def instance_count(self) -> int:
        return sum(j.instance_count for j in self.jobs)


def topological_order(job: Job) -> list[Task]:
    """Tasks of ``job`` parents-first, ties in the order given. Raises ValueError on a cycle
    or an unknown parent (readers report these with file and line before this is reached)."""
    by_id = {t.id: t for t in job.tasks}
    if len(by_id) != len(job.tasks):
        dup = sorted({t.id for t in job.tasks if sum(u.id == t.id for u in job.tasks) > 1})
        raise ValueError(f"job {job.id}: duplicate task ids {dup}")
    indeg = {t.id: 0 for t in job.tasks}
    children: dict[str, list[str]] = {t.id: [] for t in job.tasks}
    for t in job.tasks:
        for p in t.after:
            if p not in by_id:
                raise ValueError(f"job {job.id}: task {t.id} waits for unknown task {p}")
            indeg[t.id] += 1
            children[p].append(t.id)
    ready = deque(t.id for t in job.tasks if indeg[t.id] == 0)
    order: list[Task] = []
    while ready:
        tid = ready.popleft()
        order.append(by_id[tid])
        for c in children[tid]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if len(order) != len(job.tasks):
        cyc = sorted(tid for tid, d in indeg.items() if d > 0)
        raise ValueError(f"job {job.id}: cyclic dependencies among tasks {cyc}")
    return order


def fits_node(demand: Demand, node: Node) -> bool:
    """Could ``demand`` run on ``node`` when the node is empty?"""
    if demand.cpu > node.cpu or demand.mem > node.mem:
        return False
    if demand.gpu == 0:
        return True
    if node.gpus == 0:
        return False
    if demand.gpu_models is not None and node.gpu_model not in demand.gpu_models:
        return False
    return demand.gpu < MILLI or demand.whole_gpus <= node.gpus


def why_unschedulable(demand: Demand, cluster: Cluster) -> str | None:
    """None if some node of ``cluster`` fits ``demand`` when empty, else a reason a person
    can act on (which dimension no node offers)."""
    nodes = cluster.nodes
    if any(fits_node(demand, n) for n in nodes):
        return None
    if not nodes:
        return "the cluster has no nodes"
    max_cpu = max(n.cpu for n in nodes)
    max_mem = max(n.mem for n in nodes)
    if demand.cpu > max_cpu:
        return f"needs {demand.cpu / MILLI:g} cpu cores; the largest node has {max_cpu / MILLI:g}"
    if demand.mem > max_mem:
        return f"needs {demand.mem} MiB memory; the largest node has {max_mem}"
    if demand.gpu:
        gpu_nodes = [n for n in nodes if n.gpus]
        if demand.gpu_models is not None:
            gpu_nodes = [n for n in gpu_nodes if n.gpu_model in demand.gpu_models]
            if not gpu_nodes:
                return (f"needs gpu model {sorted(demand.gpu_models)}; the cluster has "
                        f"{sorted(cluster.gpu_models) or 'no gpus'}")
        if not gpu_nodes:
            return "needs a gpu; the cluster has none"
        if demand.whole_gpus > max(n.gpus for n in gpu_nodes):
            return (f"needs {demand.whole_gpus} gpus on one node; the most on a matching node "
                    f"is {max(n.gpus for n in gpu_nodes)}")
    return _closest_node(demand, nodes)


def _closest_node(demand: Demand, nodes) -> str:
    """The reason when every dimension fits some node but no node fits all: what the demand
    asks and what the node that misses the fewest of them lacks."""
    def short(n: Node) -> list[str]:
        out = []
        if demand.cpu > n.cpu:
            out.append(f"{n.cpu / MILLI:g} cpu cores")
        if demand.mem > n.mem:
            out.append(f"{n.mem} MiB memory")
        if demand.gpu and not fits_node(Demand(0, 0, demand.gpu, demand.gpu_models), n):
            out.append(f"{n.gpus} gpu{'s' * (n.gpus != 1)}"
                       + (f" of model {n.gpu_model}" if n.gpus else ""))
        return out

    best = min(nodes, key=lambda n: len(short(n)))
    asks = f"{demand.cpu / MILLI:g} cpu cores and {demand.mem} MiB memory"
    if demand.gpu:
        g = (f"{demand.gpu / MILLI:g} of a gpu" if demand.gpu < MILLI
             else f"{demand.whole_gpus} gpu{'s' * (demand.whole_gpus != 1)}")
        asks += f" and {g}" + (f" (model {sorted(demand.gpu_models)})"
                               if demand.gpu_models is not None else "")
    return (f"no single node offers it all: needs {asks} on one node; the closest, "
            f"{best.name}, has only {' and '.join(short(best))}")


def is_finite_nonneg(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
