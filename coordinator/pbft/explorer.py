"""A seeded randomised explorer in the style of Twins (Bano et al., 2020): each scenario draws
a fault (none, a crash, a crash and restart from storage, a twin — a second instance with
the same identity and keys — or one Byzantine behaviour), a few rounds of random partitions
(twins typically land on different sides) with random drops, duplicates and delays, which
push the group through view changes (leader schedules follow from the views), then heals the
network and lets the clients finish. Safety is checked on every scenario; liveness (every
client op completes) too, since at most f replicas are faulty and the network heals.

    results = explore(1000, seed=0)          # list of ScenarioResult
    run_scenario(seed)                       # replay one (the seed printed on a failure)
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

from coordinator.pbft.byzantine import BEHAVIOURS, Censor
from coordinator.pbft.checker import Checker
from coordinator.pbft.config import PbftConfig
from coordinator.pbft.simnet import LinkFaults, SimNet

FAULTS = ("none", "crash", "restart", "twins", "twins", *sorted(BEHAVIOURS))


@dataclass
class ScenarioResult:
    seed: int
    fault: str
    target: int
    safety: list[str] = field(default_factory=list)
    liveness: list[str] = field(default_factory=list)
    commits: int = 0
    view_changes: int = 0
    messages: int = 0

    @property
    def ok(self) -> bool:
        return not self.safety and not self.liveness


def scenario_seed(seed: int, i: int) -> int:
    return (seed * 1_000_003 + i) & 0x7FFFFFFF


def run_scenario(seed: int, *, f: int = 1, heal_time: float = 30.0,
                 replica_hook=None) -> ScenarioResult:
    """One scenario; ``replica_hook(replica)`` runs on every replica built (mutation tests)."""
    rng = random.Random(seed)
    n = 3 * f + 1
    cfg = PbftConfig(n=n, checkpoint_interval=2, watermark_window=4,
                     batch_size=rng.choice((1, 2, 4)), max_outstanding=rng.choice((1, 2, 4)),
                     batch_timeout=0.002, view_change_timeout=0.3, retransmit_interval=0.1,
                     client_retransmit=0.4)
    fault = rng.choice(FAULTS)
    target = 0 if rng.random() < 0.5 else rng.randrange(n)
    faults = LinkFaults(drop=rng.choice((0.0, 0.0, 0.05, 0.2)), duplicate=rng.choice((0.0, 0.05)),
                        min_delay=0.001, max_delay=rng.choice((0.005, 0.02)))
    net = SimNet(cfg, seed=seed, clients=("c0", "c1"),
                 twins=(target,) if fault == "twins" else (), faults=faults,
                 replica_hook=replica_hook)
    if fault in BEHAVIOURS:
        cls = BEHAVIOURS[fault]
        net.set_behaviour(target, cls(seed, client_id="c0") if cls is Censor else cls(seed))
    for cid in ("c0", "c1"):
        ops: list = [f"add {cid} {k}".encode() for k in range(rng.randint(1, 3))]
        if rng.random() < 0.3:
            ops.insert(rng.randrange(len(ops) + 1), (f"get {cid}".encode(),))
        net.submit(cid, ops, at=rng.uniform(0, 0.1))
    t = 0.0
    crash_at = restart_at = None
    if fault in ("crash", "restart"):
        net.faulty.add(target) if fault == "crash" else None
        crash_at = rng.uniform(0, 0.5)
        net.at(crash_at, lambda: net.crash(target))
    nodes = sorted(net.nodes)
    for _ in range(rng.randint(1, 3)):
        length = rng.uniform(0.2, 0.6)
        if rng.random() < 0.3:
            net.at(t, net.heal)
        else:
            side = {x: rng.random() < 0.5 for x in nodes}
            if fault == "twins":
                side[n] = not side[target]
            groups = [{x for x in nodes if side[x]}, {x for x in nodes if not side[x]}]
            net.at(t, lambda g=groups: net.partition(*g))
        t += length
    if fault == "restart":
        restart_at = max(t, crash_at + 0.01)
        net.at(restart_at, lambda: net.restart(target))
    net.at(t, net.heal)
    net.run_until(t)
    net.run_until(t + heal_time, stop=net.clients_done)
    net.run_until(net.now + 0.3)
    checker = Checker(net)
    res = ScenarioResult(seed, fault, target, safety=checker.safety_violations(),
                         liveness=checker.liveness_violations(), messages=net.messages,
                         commits=checker.max_executed())
    res.view_changes = max((nd.replica.view for nd in net.correct_nodes()
                            if nd.replica is not None), default=0)
    return res


def explore(count: int, seed: int = 0, *, f: int = 1, replica_hook=None) -> list[ScenarioResult]:
    return [run_scenario(scenario_seed(seed, i), f=f, replica_hook=replica_hook)
            for i in range(count)]


def summary(results: list[ScenarioResult]) -> dict:
    return {
        "scenarios": len(results),
        "safety_violations": sum(1 for r in results if r.safety),
        "liveness_violations": sum(1 for r in results if r.liveness),
        "median_commits": statistics.median(r.commits for r in results) if results else 0,
        "median_view_changes": statistics.median(r.view_changes for r in results) if results else 0,
        "max_view_changes": max((r.view_changes for r in results), default=0),
        "failing_seeds": [r.seed for r in results if not r.ok][:20],
    }
