"""A PBFT network a test drives by hand (tests only): real ``Replica`` objects, messages
queued and delivered in order, and the test decides which are dropped (``drop``), which
replicas are down, and when the clock ticks. ``GovApp`` is ``KVApp`` with an ordered
admission of governed ``site:*`` clients, as the schedule's ``admit_site``."""

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
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage


class GovApp(KVApp):
    """KVApp whose ordered ``admit <client> <hexkey>`` gives a governed client ('site:*')
    its key, as ScheduleState's admit_site does."""

    def __init__(self):
        super().__init__()
        self.members = {}
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
    def __init__(self, n=4, clients=("c0",), config=None, app=KVApp, static_clients=None,
                 storages=None):
        self.config = config or PbftConfig(n=n)
        self.keys = generate_keys(n, list(clients), seed=b"review")
        self.app_cls = app
        rk = self.keys
        if static_clients is not None:
            rk = dataclasses.replace(self.keys, client_verify={
                c: k for c, k in self.keys.client_verify.items() if c in static_clients})
        self.rkeys = rk
        self.storages = storages or [MemoryStorage() for _ in range(n)]
        self.reps = [self.make(i) for i in range(n)]
        self.q = deque()
        self.now = 0.0
        self.drop = lambda src, dst, env: False
        self.silent = set()
        self.down = set()

    def make(self, i):
        return Replica(self.config, i, self.rkeys.for_replica(i), self.app_cls(), self.storages[i])

    def restart(self, i):
        self.reps[i] = self.make(i)

    @staticmethod
    def kind(env):
        return PbftMessage.FromString(env.payload).WhichOneof("kind")

    def _out(self, src, actions):
        if src in self.silent or src in self.down:
            return
        for a in actions:
            if isinstance(a, Send):
                self.q.append((src, a.to, a.msg))
            elif isinstance(a, Broadcast):
                self.q.extend((src, j, a.msg) for j in range(len(self.reps)) if j != src)

    def run(self):
        while self.q:
            src, dst, env = self.q.popleft()
            if dst in self.down or self.drop(src, dst, env):
                continue
            self._out(dst, self.reps[dst].receive(env, self.now))

    def deliver(self, dst, env):
        self._out(dst, self.reps[dst].receive(env, self.now))
        self.run()

    def tick(self, t):
        self.now = t
        for i, r in enumerate(self.reps):
            if i not in self.down:
                self._out(i, r.tick(t))
        self.run()

    def run_for(self, until, step=0.05):
        t = self.now
        while t < until:
            t = round(t + step, 6)
            self.tick(t)

    def sign(self, client, ts, op, read_only=False):
        return ClientAuth(self.keys.for_client(client), client).sign_request(ts, op, read_only)

    def request(self, client, ts, op, to=None):
        req = self.sign(client, ts, op)
        env = PbftEnvelope(sender=-1, payload=PbftMessage(request=req).SerializeToString())
        for j in (range(len(self.reps)) if to is None else to):
            self.q.append((-1, j, env))
        self.run()
        return req
