"""Shared helpers for the PBFT tests: a small fast configuration, a key set, hand-built
messages from any replica or client, and a SimNet runner."""

from __future__ import annotations

from functools import lru_cache

from agora.coordinator.pbft.app import KVApp
from agora.coordinator.pbft.auth import ClientAuth, ReplicaAuth
from agora.coordinator.pbft.checker import Checker
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.keys import KeySet, generate_keys
from agora.coordinator.pbft.messages import batch_digest
from agora.coordinator.pbft.replica import Replica
from agora.coordinator.pbft.simnet import LinkFaults, SimNet
from agora.coordinator.pbft.storage import MemoryStorage
from agora.protos.agora.v1.pbft_pb2 import (Commit, PbftEnvelope, PbftMessage, PbftStatus,
                                             PrePrepare, Prepare)

CLIENTS = ("c0", "c1")


def config(f: int = 1, **kw) -> PbftConfig:
    base = dict(n=3 * f + 1, checkpoint_interval=4, watermark_window=8, batch_size=4,
                max_outstanding=4, batch_timeout=0.0, view_change_timeout=0.5,
                retransmit_interval=0.1, client_retransmit=0.4)
    base.update(kw)
    return PbftConfig(**base)


@lru_cache(maxsize=4)
def keys(n: int = 4) -> KeySet:
    return generate_keys(n, list(CLIENTS) + ["mallory"], seed=b"tests")


class Forge:
    """Builds authentic messages as any replica or client of ``keys(n)`` would."""

    def __init__(self, n: int = 4):
        self.n = n
        self.keys = keys(n)
        self.replicas = [ReplicaAuth(self.keys, i) for i in range(n)]
        self.clients = {c: ClientAuth(self.keys, c) for c in self.keys.client_signing}

    def request(self, client: str = "c0", ts: int = 1, op: bytes = b"add x 1", *,
                read_only: bool = False):
        return self.clients[client].sign_request(ts, op, read_only)

    def request_env(self, *args, **kw) -> PbftEnvelope:
        return PbftEnvelope(sender=-1, payload=PbftMessage(
            request=self.request(*args, **kw)).SerializeToString())

    def pre_prepare(self, requests, *, view: int = 0, seq: int = 1, digest: bytes | None = None,
                    sender: int | None = None) -> PbftEnvelope:
        pp = PrePrepare(view=view, seq=seq, digest=digest or batch_digest(requests),
                        requests=requests)
        s = view % self.n if sender is None else sender
        return self.replicas[s].seal(PbftMessage(pre_prepare=pp))

    def prepare(self, sender: int, digest: bytes, *, view: int = 0, seq: int = 1) -> PbftEnvelope:
        return self.replicas[sender].seal(PbftMessage(prepare=Prepare(
            view=view, seq=seq, digest=digest, replica=sender)))

    def commit(self, sender: int, digest: bytes, *, view: int = 0, seq: int = 1) -> PbftEnvelope:
        return self.replicas[sender].seal(PbftMessage(commit=Commit(
            view=view, seq=seq, digest=digest, replica=sender)))

    def suspicion(self, sender: int, view: int = 0, *, suspects: bool = True) -> PbftEnvelope:
        """A STATUS of replica ``sender``, in ``view`` (active), saying whether it suspects
        that view's primary."""
        return self.replicas[sender].seal(PbftMessage(status=PbftStatus(
            view=view, view_active=True, replica=sender, suspects=suspects)))


def replica(index: int = 1, *, cfg: PbftConfig | None = None, storage=None, app=None) -> Replica:
    cfg = cfg or config()
    return Replica(cfg, index, keys(cfg.n).for_replica(index), app or KVApp(),
                   storage if storage is not None else MemoryStorage())


def kinds(actions) -> list[str]:
    out = []
    for a in actions:
        msg = PbftMessage.FromString(a.msg.payload)
        out.append(msg.WhichOneof("kind"))
    return out


def net(f: int = 1, *, seed: int = 1, faults: LinkFaults | None = None, **kw) -> SimNet:
    cfg = kw.pop("cfg", None) or config(f)
    return SimNet(cfg, seed=seed, clients=CLIENTS, faults=faults, **kw)


def ops(client: str, count: int) -> list[bytes]:
    return [f"add {client} {k + 1}".encode() for k in range(count)]


def finish(n: SimNet, until: float = 60.0, *, liveness: bool = True) -> Checker:
    """Run until every client op completed (or ``until``), a little longer, then check."""
    n.run_until(until, stop=n.clients_done)
    n.run_until(n.now + 0.5)
    checker = Checker(n)
    checker.assert_ok(liveness=liveness)
    return checker


def rejected(n: SimNet, reason: str) -> int:
    return sum(nd.replica.rejected.get(reason, 0) for nd in n.correct_nodes()
               if nd.replica is not None)
