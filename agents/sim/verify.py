"""Check a finished run from its record of runs alone, independently of the simulator's own
bookkeeping: if the engine's accounting were wrong, this would still see the schedule break.

Checks: no node ever holds more cpu, memory or gpu than it has (gpu per device: shares on one
gpu sum to at most one gpu); gpu models are respected; no instance starts before its job
arrives or before every instance of every parent task has completed; nothing runs on a node
while it is down; every instance has exactly one outcome (completed once, or reported failed,
unschedulable or cancelled) — none lost, none run to completion twice; and the metrics
count none lost.
"""

from __future__ import annotations

from collections import defaultdict

from agora.agents.domain import MILLI
from agora.agents.sim.engine import SimResult


def verify(result: SimResult) -> list[str]:
    """Every violation found, as sentences (empty when the schedule is sound)."""
    bad: list[str] = []
    cluster = result.cluster
    nodes = cluster.nodes
    # -- capacity: sweep each node's runs by time (ends before starts at equal times) -------
    by_node: dict[int, list] = defaultdict(list)
    for a in result.attempts:
        by_node[a.node].append(a)
        d, n = a.task.demand, nodes[a.node]
        if d.gpu and d.gpu_models is not None and n.gpu_model not in d.gpu_models:
            bad.append(f"{a.task}: gpu model {n.gpu_model} not in {sorted(d.gpu_models)}")
        if a.start < a.task.job.job.arrival - 1e-9:
            bad.append(f"{a.task}: started at {a.start} before its job arrived")
    for node, runs in by_node.items():
        n = nodes[node]
        events = sorted([(a.end, 0, a) for a in runs] + [(a.start, 1, a) for a in runs],
                        key=lambda e: (e[0], e[1]))
        cpu = mem = 0
        gpu = [0] * n.gpus
        for _, is_start, a in events:
            d, sign = a.task.demand, (1 if is_start else -1)
            cpu += sign * d.cpu
            mem += sign * d.mem
            for i, g in a.slots:
                gpu[i] += sign * g
            if cpu > n.cpu or mem > n.mem or any(g > MILLI for g in gpu):
                bad.append(f"node {n.name} over capacity at t={a.start}: cpu {cpu}/{n.cpu}, "
                           f"mem {mem}/{n.mem}, gpus {gpu}")
                break
            if is_start and d.gpu and sum(g for _, g in a.slots) != d.gpu:
                bad.append(f"{a.task}: holds gpu slots {a.slots} for a demand of {d.gpu}")
    # -- outages ---------------------------------------------------------------------------
    node_index = {n.name: i for i, n in enumerate(nodes)}
    site_nodes = {s.name: [node_index[n.name] for n in s.nodes] for s in cluster.sites}
    for o in cluster.faults.outages:
        hit = [node_index[o.node]] if o.node else site_nodes[o.site]
        until = float("inf") if o.until is None else o.until
        for node in hit:
            for a in by_node.get(node, []):
                if a.start < until - 1e-9 and a.end > o.at + 1e-9:
                    bad.append(f"{a.task} ran on {nodes[node].name} [{a.start}, {a.end}) "
                               f"during its outage [{o.at}, {o.until})")
    # -- dependencies and outcomes ----------------------------------------------------------
    completed: dict[tuple, int] = defaultdict(int)
    last_end: dict[int, float] = {}
    for a in result.attempts:
        if a.outcome == "completed":
            completed[(a.task.rank, a.instance)] += 1
            last_end[a.task.rank] = max(last_end.get(a.task.rank, 0.0), a.end)
    for a in result.attempts:
        for p in a.task.job.tasks:
            if p.task.id in a.task.task.after:
                if p.task.instances and last_end.get(p.rank, float("inf")) > a.start + 1e-9:
                    bad.append(f"{a.task} started at {a.start} before parent {p.task.id} "
                               f"finished")
    for key, k in completed.items():
        if k > 1:
            bad.append(f"instance {key} completed {k} times")
    for js in result.jobs:
        for ts in js.tasks:
            done = sum(completed.get((ts.rank, i), 0) for i in range(ts.task.instances))
            if done != ts.done:
                bad.append(f"{ts}: record shows {done} completed instances, engine {ts.done}")
            if done + ts.failed != ts.task.instances:
                bad.append(f"{ts}: {done} completed + {ts.failed} reported != "
                           f"{ts.task.instances} instances")
    lost = result.metrics.get("tasks_lost", 0)
    if lost:
        bad.append(f"the metrics count {lost} instances lost: every instance the engine "
                   f"reported must be counted completed, failed, unschedulable or cancelled")
    return bad
