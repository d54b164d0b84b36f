"""A seeded randomised explorer in the style of Twins (Bano et al., 2020): each scenario draws
a fault (none, a crash, a crash and restart from storage, a twin — a second instance with
the same identity and keys — or one Byzantine behaviour), a few rounds of random partitions
(twins typically land on different sides) with random drops, duplicates and delays, which
push the group through view changes (leader schedules follow from the views), then heals the
network and lets the clients finish. Safety is checked on every scenario; liveness (every
client op completes) too, since at most f replicas are faulty and the network heals.

    results = explore(1000, seed=0)          # list of ScenarioResult
    run_scenario(seed)                       # replay one (the seed printed on a failure)

Short scenarios commit a handful of requests. ``run_long_scenario`` / ``explore_long`` go into
deep water: hundreds of requests from four clients, checkpoints every 2 sequence numbers in a
window of 4 (water marks advance and the log is truncated many times), 4-8 rounds of
partitions (several view changes), and faults that include a replica crashed *while it
fetches state* from its peers and restarted from its storage. ``coverage`` says how often
each of those paths was crossed.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

from agora.coordinator.pbft.byzantine import BEHAVIOURS, Censor
from agora.coordinator.pbft.checker import Checker
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.simnet import LinkFaults, SimNet

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
    apart: int = 0
    """correct replicas that end the scenario outside the view most correct replicas are in
    (a replica that left the group's view alone, say)"""
    messages: int = 0
    paths: dict[str, int] = field(default_factory=dict)
    """long scenarios: how often each deep path was crossed (stable checkpoints, log
    truncations, state transfers, view changes, crashes during a state transfer)"""

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
    for _ in range(rng.randint(1, 3)):
        t += _partition_round(net, rng, t, fault, target, heal_p=0.3)
    if fault == "restart":
        restart_at = max(t, crash_at + 0.01)
        net.at(restart_at, lambda: net.restart(target))
    net.at(t, net.heal)
    net.run_until(t)
    net.run_until(t + heal_time, stop=net.clients_done)
    net.run_until(net.now + 0.3)
    return _checked(net, seed, fault, target)


def _partition_round(net: SimNet, rng: random.Random, t: float, fault: str, target: int, *,
                     heal_p: float) -> float:
    """At ``t``: heal (probability ``heal_p``) or split the nodes in two at random (a twin
    and its original on different sides); returns how long the round lasts."""
    length = rng.uniform(0.2, 0.6)
    if rng.random() < heal_p:
        net.at(t, net.heal)
    else:
        nodes = sorted(net.nodes)
        side = {x: rng.random() < 0.5 for x in nodes}
        if fault == "twins":
            side[net.config.n] = not side[target]
        groups = [{x for x in nodes if side[x]}, {x for x in nodes if not side[x]}]
        net.at(t, lambda g=groups: net.partition(*g))
    return length


def _checked(net: SimNet, seed: int, fault: str, target: int) -> ScenarioResult:
    """The scenario's result: safety and liveness checked, commits and views counted."""
    checker = Checker(net)
    res = ScenarioResult(seed, fault, target, safety=checker.safety_violations(),
                         liveness=checker.liveness_violations(), messages=net.messages,
                         commits=checker.max_executed())
    views = [nd.replica.view for nd in net.correct_nodes() if nd.replica is not None]
    res.view_changes = max(views, default=0)
    if views:
        common = statistics.mode(views)
        res.apart = sum(1 for v in views if v != common)
    return res


LONG_FAULTS = ("none", "crash", "restart", "crash-in-transfer", "crash-in-transfer", "twins",
               *sorted(BEHAVIOURS))


def hurried(index: int, factor: float = 10.0):
    """A replica hook: replica ``index``'s request and view-change timers run ``factor`` times
    shorter than the others' -- a correct replica on a loaded machine, whose timer fires
    while the group is merely slow (the pre-vote's case, ``ViewChangeMixin._suspect``)."""
    def hook(replica) -> None:
        if replica.index == index:
            base = replica._timeout
            replica._timeout = lambda: base() / factor
    return hook


def run_long_scenario(seed: int, *, f: int = 1, requests: int = 200,
                      heal_time: float = 120.0, replica_hook=None) -> ScenarioResult:
    """One long scenario (module doc): ``requests`` ops from four clients."""
    rng = random.Random(seed)
    n = 3 * f + 1
    cfg = PbftConfig(n=n, checkpoint_interval=2, watermark_window=4,
                     batch_size=rng.choice((1, 2, 4)), max_outstanding=rng.choice((2, 4)),
                     batch_timeout=0.002, view_change_timeout=0.3, retransmit_interval=0.1,
                     client_retransmit=0.4, calm_timeouts=0.0)
    # calm_timeouts 0: the timeout returns to its base at the first execution in a new view.
    # These scenarios are for depth (several view changes back to back across checkpoints
    # and transfers), which the default's longer timeouts after a view change make rarer;
    # the short scenarios (``explore``) run the default.
    fault = rng.choice(LONG_FAULTS)
    target = rng.randrange(n)
    paths = {"stable_checkpoints": 0, "log_truncations": 0, "state_transfers": 0,
             "view_changes": 0, "crashes_in_transfer": 0}

    def count(replica) -> None:
        make_stable, truncate = replica._make_stable, replica.storage.truncate

        def stable(seq, digest, proof):
            paths["stable_checkpoints"] += 1
            make_stable(seq, digest, proof)

        def truncated(seq):
            paths["log_truncations"] += 1
            truncate(seq)
        truncated.counted = True
        replica._make_stable = stable
        if not getattr(truncate, "counted", False):    # a restart keeps its storage
            replica.storage.truncate = truncated
        if replica_hook is not None:
            replica_hook(replica)

    faults = LinkFaults(drop=rng.choice((0.0, 0.02, 0.1)), duplicate=rng.choice((0.0, 0.05)),
                        min_delay=0.001, max_delay=rng.choice((0.005, 0.02)))
    clients = ("c0", "c1", "c2", "c3")
    net = SimNet(cfg, seed=seed, clients=clients,
                 twins=(target,) if fault == "twins" else (), faults=faults,
                 replica_hook=count)
    if fault in BEHAVIOURS:
        cls = BEHAVIOURS[fault]
        net.set_behaviour(target, cls(seed, client_id="c0") if cls is Censor else cls(seed))
    for cid in clients:
        ops: list = [f"add {cid} {k}".encode() for k in range(requests // len(clients))]
        ops.insert(rng.randrange(len(ops) + 1), (f"get {cid}".encode(),))
        net.submit(cid, ops, at=rng.uniform(0, 0.1))
    if fault == "crash":
        net.faulty.add(target)
        net.at(rng.uniform(0, 1.0), lambda: net.crash(target))
    elif fault == "restart":
        down = rng.uniform(0, 1.0)
        net.at(down, lambda: net.crash(target))
        net.at(down + rng.uniform(0.5, 2.0), lambda: net.restart(target))
    elif fault == "crash-in-transfer":
        # down long enough to fall behind the others' stable checkpoint; back, it fetches
        # state -- and is crashed again in the middle of that, then restarted
        net.at(0.05, lambda: net.crash(target))
        back = rng.uniform(1.0, 2.5)
        net.at(back, lambda: net.restart(target))

        def watch(t: float) -> None:
            r = net.replica(target)
            if r is not None and r.fetch is not None:
                paths["crashes_in_transfer"] += 1
                net.crash(target)
                net.at(t + rng.uniform(0.05, 0.3), lambda: net.restart(target))
            elif t < back + 10:
                net.at(t + 0.005, lambda: watch(t + 0.005))
        net.at(back + 0.001, lambda: watch(back + 0.001))
    t = rng.uniform(0.2, 0.5)
    for _ in range(rng.randint(4, 8)):
        t += _partition_round(net, rng, t, fault, target, heal_p=0.25)
        net.at(t, net.heal)
        t += rng.uniform(0.1, 0.5)
    net.run_until(t)
    net.run_until(t + heal_time, stop=net.clients_done)
    net.run_until(net.now + 0.5)
    res = _checked(net, seed, fault, target)
    live = [nd.replica for nd in net.correct_nodes() if nd.replica is not None]
    paths["view_changes"] = res.view_changes
    paths["state_transfers"] = sum(r.counters["state_transfers"] for r in live)
    res.paths = paths
    return res


def explore_long(count: int, seed: int = 0, *, f: int = 1, requests: int = 200,
                 replica_hook=None) -> list[ScenarioResult]:
    return [run_long_scenario(scenario_seed(seed, i), f=f, requests=requests,
                              replica_hook=replica_hook)
            for i in range(count)]


def coverage(results: list[ScenarioResult]) -> dict[str, dict[str, float]]:
    """Per deep path: in how many scenarios it was crossed, and the median count."""
    out: dict[str, dict[str, float]] = {}
    for name in (results[0].paths if results else {}):
        counts = [r.paths[name] for r in results]
        out[name] = {"scenarios": sum(1 for c in counts if c > 0),
                     "median": statistics.median(counts), "max": max(counts)}
    return out


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
