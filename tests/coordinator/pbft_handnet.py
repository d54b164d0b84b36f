"""A PBFT network a test drives by hand (tests only): real sans-IO ``Replica`` objects, keys
and messages, and a FIFO of envelopes inside the test. ``drop(src, dst, env)`` filters
deliveries; what a replica in ``silent`` sends is discarded (it is faulty: the test speaks
for it); a replica in ``down`` neither receives nor sends; the test moves the clock
(``tick``). ``seen`` records what each replica executed. ``GovApp`` is ``KVApp`` with an
ordered admission of governed ``site:*`` clients, as the schedule's ``admit_site``."""

from __future__ import annotations

import dataclasses
import json
from collections import deque

from agora.coordinator.pbft.app import KVApp
from agora.coordinator.pbft.auth import ClientAuth
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.keys import generate_keys
from agora.coordinator.pbft.messages import Broadcast, Send
from agora.coordinator.pbft.replica import Replica
from agora.coordinator.pbft.storage import MemoryStorage
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage, PbftRequest


class Executions:
    """The replicas' observer: what each executed at each sequence number."""

    def __init__(self, n: int):
        self.log: dict[int, dict[int, list]] = {i: {} for i in range(n)}

    def executed(self, index, seq, digest, requests) -> None:
        self.log[index][seq] = list(requests)

    def checkpoint(self, *a) -> None:
        pass


class GovApp(KVApp):
    """``KVApp`` whose ordered ``admit <client> <hexkey>`` gives a governed client
    (``site:*``) its key."""

    def __init__(self):
        super().__init__()
        self.members: dict[str, bytes] = {}
        self.member_changes = 0

    def governs(self, cid):
        return cid.startswith("site:")

    def member_key(self, cid):
        return self.members.get(cid)

    def execute(self, cid, op, seq):
        p = op.split(b" ")
        if p[0] == b"admit" and len(p) == 3:
            self.members[p[1].decode()] = bytes.fromhex(p[2].decode())
            self.member_changes += 1
            return b"ok"
        return super().execute(cid, op, seq)

    def snapshot(self):
        return json.dumps({"d": self.data, "m": {k: v.hex() for k, v in self.members.items()}},
                          sort_keys=True).encode()

    def restore(self, snap):
        o = json.loads(snap or b'{"d":{},"m":{}}')
        self.data = o["d"]
        self.members = {k: bytes.fromhex(v) for k, v in o["m"].items()}
        self.member_changes += 1


class Net:
    """``n`` replicas (``config``'s), clients ``clients``; ``static_clients``: the clients
    the replicas' key file holds (default all; the others must be admitted in order)."""

    def __init__(self, n: int = 4, clients=("c0",), config: PbftConfig | None = None,
                 app=KVApp, static_clients=None):
        self.config = config or PbftConfig(n=n)
        n = self.config.n
        self.keys = generate_keys(n, list(clients), seed=b"handnet")
        self.rkeys = self.keys if static_clients is None else dataclasses.replace(
            self.keys, client_verify={c: k for c, k in self.keys.client_verify.items()
                                      if c in static_clients})
        self.app_cls = app
        self.storages = [MemoryStorage() for _ in range(n)]
        self.seen = Executions(n)
        self.reps = [self._make(i) for i in range(n)]
        self.q: deque = deque()
        self.now = 0.0
        self.drop = lambda src, dst, env: False
        self.silent: set[int] = set()
        self.down: set[int] = set()

    def _make(self, i: int) -> Replica:
        return Replica(self.config, i, self.rkeys.for_replica(i), self.app_cls(),
                       self.storages[i], observer=self.seen)

    def restart(self, i: int) -> None:
        """Replica ``i`` starts again on its own storage."""
        self.reps[i] = self._make(i)

    @staticmethod
    def kind(env: PbftEnvelope) -> str:
        return PbftMessage.FromString(env.payload).WhichOneof("kind")

    def _out(self, src: int, actions) -> None:
        if src in self.silent or src in self.down:
            return
        for a in actions:
            if isinstance(a, Send):
                self.q.append((src, a.to, a.msg))
            elif isinstance(a, Broadcast):
                self.q.extend((src, j, a.msg) for j in range(len(self.reps)) if j != src)

    def run(self) -> None:
        while self.q:
            src, dst, env = self.q.popleft()
            if dst not in self.down and not self.drop(src, dst, env):
                self._out(dst, self.reps[dst].receive(env, self.now))

    def deliver(self, dst: int, env: PbftEnvelope) -> None:
        """A faulty replica's hand-made envelope, delivered now."""
        self._out(dst, self.reps[dst].receive(env, self.now))
        self.run()

    def tick(self, t: float) -> None:
        self.now = t
        for i, r in enumerate(self.reps):
            if i not in self.down:
                self._out(i, r.tick(t))
        self.run()

    def run_for(self, until: float, step: float = 0.05) -> None:
        while self.now < until:
            self.tick(round(self.now + step, 6))

    def request(self, ts: int, op: bytes, *, client: str = "c0", to=None,
                run: bool = False) -> PbftRequest:
        """Client ``client``'s signed request, queued to ``to`` (default every replica);
        delivered now with ``run``."""
        req = ClientAuth(self.keys.for_client(client), client).sign_request(ts, op, False)
        env = PbftEnvelope(sender=-1, payload=PbftMessage(request=req).SerializeToString())
        self.q.extend((-1, j, env) for j in (range(len(self.reps)) if to is None else to))
        if run:
            self.run()
        return req
