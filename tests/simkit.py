"""Small hand-built clusters and jobs for tests (no files, no ../shared)."""

from __future__ import annotations

from agora.agents.domain import Cluster, Demand, Faults, Job, Link, Node, PowerModel, Site, Task, Workload


def node(site: str, name: str, cpu: float, mem: int = 1 << 20, gpus: int = 0,
         model: str | None = None) -> Node:
    return Node(f"{site}/{name}", site, int(cpu * 1000), mem, gpus, model)


def site(name: str, *nodes: Node, power: PowerModel | None = None) -> Site:
    return Site(name, tuple(nodes), power or PowerModel())


def cluster(*sites: Site, faults: Faults | None = None, link: Link | None = None,
            links: dict | None = None) -> Cluster:
    return Cluster(sites=tuple(sites), links=links or {}, default_link=link or Link(),
                   faults=faults or Faults())


def task(tid: str, duration: float, cpu: float, *, after=(), instances: int = 1,
         gpu: float = 0.0, models=None, mem: int = 0, data_mb: float = 0.0) -> Task:
    return Task(tid, duration, Demand(int(cpu * 1000), mem, int(round(gpu * 1000)),
                                      None if models is None else frozenset(models)),
                instances, tuple(after), data_mb)


def job(jid: str, arrival: float, origin: str, *tasks: Task, weight: float = 1.0,
        deadline: float | None = None) -> Job:
    return Job(jid, arrival, origin, tuple(tasks), weight, deadline)


def workload(*jobs: Job) -> Workload:
    return Workload(tuple(sorted(jobs, key=lambda j: (j.arrival, j.id))))
