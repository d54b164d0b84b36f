"""A deterministic discrete-event network for PBFT replicas and clients (fault injection).

    net = SimNet(PbftConfig(n=4), seed=7, clients=["c0", "c1"])
    net.submit("c0", [b"add x 1", b"add x 2"])   # each client runs its ops one after another
    net.run_until(5.0)
    Checker(net).assert_ok()

Time is virtual (seconds). Every random draw comes from one ``random.Random(seed)``, so a
seed replays a scenario exactly. Faults: per-link drop / duplicate probabilities and a delay
drawn uniformly in [min_delay, max_delay] (different delays reorder messages); partitions
(groups of replica nodes that can talk; clients reach every replica); pause (messages are
held until resume); crash (the node's memory is gone) and restart (a new Replica on the same
storage); Byzantine behaviours (``byzantine.py``) that rewrite a node's outgoing actions or
drop its incoming messages; twins (Bano et al. 2020): a second node with the same index and
keys, which counts as that replica being faulty.

Node ids: 0..n-1 are the replicas; a twin of replica i gets id n, n+1, ...; clients are
addressed by their client id.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from agora.coordinator.pbft.app import KVApp
from agora.coordinator.pbft.client import Client
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.keys import KeySet, generate_keys
from agora.coordinator.pbft.messages import Broadcast, Completed, Reply, Send
from agora.coordinator.pbft.replica import Replica
from agora.coordinator.pbft.storage import MemoryStorage


@dataclass
class LinkFaults:
    """Faults of every link that has no override."""
    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: float = 0.001
    max_delay: float = 0.005


@dataclass
class Record:
    """What a replica node executed and checkpointed (kept across its crashes)."""
    executed: dict[int, bytes] = field(default_factory=dict)
    requests: dict[int, list] = field(default_factory=dict)
    checkpoints: dict[int, bytes] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    def on_execute(self, seq: int, digest: bytes, requests: list) -> None:
        old = self.executed.get(seq)
        if old is not None and (old != digest or self.requests[seq] != requests):
            self.conflicts.append(f"seq {seq} executed twice with different batches")
        self.executed[seq] = digest
        self.requests[seq] = requests


class _Observer:
    def __init__(self, record: Record):
        self.record = record

    def executed(self, index, seq, digest, requests):
        self.record.on_execute(seq, digest, requests)

    def checkpoint(self, index, seq, digest):
        self.record.checkpoints[seq] = digest


@dataclass
class Node:
    node_id: int
    index: int
    storage: object
    replica: Replica | None
    record: Record
    behaviour: object | None = None
    paused: bool = False
    held: list = field(default_factory=list)
    timer_at: float | None = None


@dataclass
class ClientNode:
    client: Client
    ops: list = field(default_factory=list)
    done: list = field(default_factory=list)
    submitted: int = 0
    timer_at: float | None = None


@lru_cache(maxsize=8)
def _keys(n: int, clients: tuple[str, ...]) -> KeySet:
    return generate_keys(n, list(clients), seed=b"agora-simnet")


class SimNet:
    def __init__(self, config: PbftConfig, *, seed: int = 0, clients=("c0",), twins=(),
                 faults: LinkFaults | None = None, app_factory: Callable = KVApp,
                 storage_factory: Callable | None = None, keys: KeySet | None = None,
                 replica_hook: Callable[[Replica], None] | None = None):
        self.config = config
        self.rng = random.Random(seed)
        self.seed = seed
        self.keys = keys or _keys(config.n, tuple(clients))
        self.faults = faults or LinkFaults()
        self.link_faults: dict[tuple, LinkFaults] = {}
        self.app_factory = app_factory
        self.storage_factory = storage_factory or (lambda node_id: MemoryStorage())
        self.replica_hook = replica_hook
        self.now = 0.0
        self._events: list = []
        self._counter = 0
        self.groups: list[frozenset] | None = None
        self.faulty: set[int] = set()
        self.messages = 0
        self.nodes: dict[int, Node] = {}
        for i in range(config.n):
            self._add_node(i, i)
        for k, i in enumerate(twins):
            self._add_node(config.n + k, i)
            self.faulty.add(i)
        self.clients = {c: ClientNode(Client(config, c, self.keys.for_client(c)))
                        for c in clients}

    def _add_node(self, node_id: int, index: int) -> None:
        record = Record()
        storage = self.storage_factory(node_id)
        node = Node(node_id, index, storage, None, record)
        self.nodes[node_id] = node
        node.replica = self._make_replica(node)

    def _make_replica(self, node: Node) -> Replica:
        replica = Replica(self.config, node.index, self.keys.for_replica(node.index),
                          self.app_factory(), node.storage, observer=_Observer(node.record))
        if self.replica_hook is not None:
            self.replica_hook(replica)
        return replica

    # ---- scenario controls ----

    def submit(self, client_id: str, ops: list[bytes], *, at: float | None = None) -> None:
        """Queue ``ops`` for a client; it sends them one at a time from ``at`` (default now)."""
        self.clients[client_id].ops.extend(ops)
        self.at(self.now if at is None else at, lambda: self._next_op(client_id))

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._push(when, "call", None, fn)

    def partition(self, *groups) -> None:
        self.groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        self.groups = None
        self.link_faults.clear()
        self.faults = LinkFaults(min_delay=self.faults.min_delay, max_delay=self.faults.max_delay)

    def set_link(self, a: int, b: int, faults: LinkFaults) -> None:
        self.link_faults[(a, b)] = faults

    def crash(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.replica, node.held, node.timer_at = None, [], None

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.replica = self._make_replica(node)
        self._handle(node, node.replica.tick(self.now))

    def pause(self, node_id: int) -> None:
        self.nodes[node_id].paused = True

    def resume(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.paused = False
        held, node.held = node.held, []
        for env in held:
            self._push(self.now, "msg", node_id, env)
        if node.replica is not None:
            self._handle(node, node.replica.tick(self.now))

    def set_behaviour(self, node_id: int, behaviour, *, faulty: bool = True) -> None:
        self.nodes[node_id].behaviour = behaviour
        if faulty:
            self.faulty.add(self.nodes[node_id].index)

    def replica(self, node_id: int) -> Replica | None:
        return self.nodes[node_id].replica

    def correct_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.index not in self.faulty]

    def clients_done(self) -> bool:
        return all(c.submitted >= len(c.ops) and not c.client.busy for c in self.clients.values())

    # ---- the event loop ----

    def _push(self, when: float, kind: str, target, payload) -> None:
        self._counter += 1
        heapq.heappush(self._events, (when, self._counter, kind, target, payload))

    def run_until(self, t_end: float, *, stop: Callable[[], bool] | None = None) -> None:
        while self._events and self._events[0][0] <= t_end:
            when, _, kind, target, payload = heapq.heappop(self._events)
            self.now = when
            if kind == "msg":
                self._deliver(target, payload)
            elif kind == "tick":
                self._tick(target, when)
            else:
                payload()
            if stop is not None and stop():
                return
        self.now = max(self.now, t_end)

    def _deliver(self, target, env) -> None:
        if isinstance(target, str):
            cn = self.clients[target]
            self._client_actions(cn, cn.client.receive(env, self.now))
            return
        node = self.nodes[target]
        if node.replica is None:
            return
        if node.paused:
            node.held.append(env)
            return
        if node.behaviour is not None:
            env = node.behaviour.incoming(node, env, self.now)
            if env is None:
                return
        self._handle(node, node.replica.receive(env, self.now))

    def _tick(self, target, when: float) -> None:
        if isinstance(target, str):
            cn = self.clients[target]
            if cn.timer_at != when:
                return
            cn.timer_at = None
            self._client_actions(cn, cn.client.tick(when))
            return
        node = self.nodes[target]
        if node.timer_at != when or node.replica is None or node.paused:
            return
        node.timer_at = None
        self._handle(node, node.replica.tick(when))

    def _handle(self, node: Node, actions) -> None:
        if node.behaviour is not None:
            actions = node.behaviour.outgoing(node, actions, self.now)
        for a in actions:
            if isinstance(a, Send):
                for dst in self.nodes.values():
                    if dst.index == a.to and dst.node_id != node.node_id:
                        self._transmit(node.node_id, dst.node_id, a.msg)
            elif isinstance(a, Broadcast):
                for dst in self.nodes.values():
                    if dst.index != node.index:
                        self._transmit(node.node_id, dst.node_id, a.msg)
            elif isinstance(a, Reply):
                if a.client_id in self.clients:
                    self._transmit(node.node_id, a.client_id, a.msg)
        if node.replica is not None:
            nd = node.replica.next_deadline()
            if nd is not None and (node.timer_at is None or nd < node.timer_at):
                node.timer_at = max(nd, self.now)
                self._push(node.timer_at, "tick", node.node_id, None)

    def _client_actions(self, cn: ClientNode, actions) -> None:
        cid = cn.client.client_id
        for a in actions:
            if isinstance(a, Send):
                for dst in self.nodes.values():
                    if dst.index == a.to:
                        self._transmit(cid, dst.node_id, a.msg)
            elif isinstance(a, Broadcast):
                for dst in self.nodes.values():
                    self._transmit(cid, dst.node_id, a.msg)
            elif isinstance(a, Completed):
                cn.done.append(a)
                self.at(self.now, lambda c=cid: self._next_op(c))
        nd = cn.client.next_deadline()
        if nd is not None and (cn.timer_at is None or nd < cn.timer_at):
            cn.timer_at = nd
            self._push(nd, "tick", cid, None)

    def _next_op(self, cid: str) -> None:
        cn = self.clients[cid]
        if cn.client.busy or cn.submitted >= len(cn.ops):
            return
        op = cn.ops[cn.submitted]
        cn.submitted += 1
        read_only = isinstance(op, tuple)
        self._client_actions(cn, cn.client.submit(op[0] if read_only else op, self.now,
                                                  read_only=read_only))

    def _transmit(self, src, dst, env) -> None:
        if (self.groups is not None and isinstance(src, int) and isinstance(dst, int)
                and not any(src in g and dst in g for g in self.groups)):
            return
        lf = self.link_faults.get((src, dst), self.faults)
        rng = self.rng
        if lf.drop and rng.random() < lf.drop:
            return
        self.messages += 1
        self._push(self.now + rng.uniform(lf.min_delay, lf.max_delay), "msg", dst, env)
        if lf.duplicate and rng.random() < lf.duplicate:
            self._push(self.now + rng.uniform(lf.min_delay, lf.max_delay), "msg", dst, env)
