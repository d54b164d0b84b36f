"""One run of the floor of ``bench/skeleton_floor.py``: the skeleton's source with Agora's
per-request work in it (``FloorWork``), run as the skeleton runs itself.

    [AGORA_FLOOR=app,log,signed] python -m bench.floor_work SKELETON TMPDIR BATCH \
        <the skeleton's own arguments>

``AGORA_FLOOR``: which of the floor's parts run (default all three).

The replicas' ``ScheduleState`` is set up here, before the skeleton forks its processes
(each replica gets its own copy); each replica's SQLite log is ``TMPDIR/r<i>.db``. Prints
the skeleton's line, then ``admitted share X``: the share of bids replica 0's schedule
admitted (bids for the round it is in, for open tasks of the site's own jobs).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import msgpack
import nacl.signing
import yaml

from agora.agents.domain import Demand, Job, Task
from agora.coordinator.pbft.messages import op_digest
from agora.coordinator.pbft.storage import SqliteStorage
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.validate import parse_command
from agora.agents.workloads.loader import load_cluster
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftRequest
from agora.protos.convert import job_to_proto
from bench.coordinator_throughput import INSTANCES, SITES, TASKS_PER_JOB, TICK_S
from bench.skeleton_floor import floor_source


def _key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"floor-replica-%d" % i).digest())


FEATURES = ("app", "log", "signed")


class NoLog:
    """The log left out (a floor without ``log``): every save does nothing."""

    def __getattr__(self, name):
        return lambda *args: None


class ReplicaWork:
    """What one replica of the floor does beyond the skeleton (see skeleton_floor), the
    parts in ``work.features``."""

    def __init__(self, work: "FloorWork", me: int, n: int, f: int) -> None:
        self.work, self.me, self.f = work, me, f
        self.app, self.signed = "app" in work.features, "signed" in work.features
        self.state = work.state                  # this process's own copy (forked)
        self.storage = (SqliteStorage(Path(work.tmp) / f"r{me}.db", synchronous="NORMAL")
                        if "log" in work.features else NoLog())
        self.sign_key = _key(me)
        self.verify = {i: _key(i).verify_key for i in range(n)}
        self.bids = self.admitted = 0
        self.durable = False
        """something written must be durable before what the message sends goes out"""

    def wrap(self, on_msg):
        storage = self.storage

        def handle(m):
            on_msg(m)
            # one transaction for a message that made a vote: its pre-prepare or its vote is
            # durable before the vote is sent. What executing wrote goes with the next one
            # (a replica that crashed before replays the committed batch from its peers)
            if self.durable:
                self.durable = False
                storage.flush()
        return handle

    @staticmethod
    def _request(r) -> PbftRequest:
        rid, payload, sig = r
        return PbftRequest(client_id=f"site:s{payload[0]}/0", timestamp=rid, op=payload[1:],
                           signature=sig)

    def admit(self, r) -> None:
        if self.app:
            parse_command(self._request(r), "SubmitRound")

    def pre_prepare(self, s: int, d: bytes, batch) -> None:
        # the batch as the skeleton encodes it (what its digest is of), not rebuilt as
        # Agora's PrePrepare message: the floor pays for keeping it, not for a format
        self.durable = True
        if isinstance(self.storage, SqliteStorage):
            self.storage._x("INSERT OR REPLACE INTO pre_prepare VALUES (?, ?, ?)",
                            (0, s, msgpack.packb(batch)))

    def vote(self, kind: str, s: int, d: bytes) -> None:
        self.durable = True
        self.storage.save_vote(kind, 0, s, d)

    def prepare(self, s: int, d: bytes) -> bytes:
        self.vote("prepare", s, d)
        if not self.signed:
            return b""
        return self.sign_key.sign(b"prepare" + s.to_bytes(8, "big") + d).signature

    def prepare_ok(self, m, have: int) -> bool:
        # the skeleton's quorum: 2f entries, its own among them; no more checks once it
        # holds (Agora checks only as many as its certificate needs, too)
        if have >= 2 * self.f or not self.signed:
            return True
        try:
            self.verify[m[1]].verify(b"prepare" + m[3].to_bytes(8, "big") + m[4], m[5])
        except Exception:
            return False
        return True

    def execute(self, x, seq: int) -> None:
        st = self.storage
        st.save_committed(seq, 0, x["d"])
        for r in x["batch"] if self.app else ():
            req = self._request(r)
            result = self.state.execute(req.client_id, req.op, seq)
            st.save_client(req.client_id, req.timestamp, result, op_digest(req.op))
            if self.me == 0:                     # counted on one replica: 1-3 us a part
                self.admitted += pb.Result.FromString(result).accepted
                self.bids += self.work.per
        st.save_executed(seq)
        if self.me == 0 and seq % 50 == 0:
            (Path(self.work.tmp) / "admitted").write_text(
                f"{self.admitted / max(self.bids, 1):.4f}")


class FloorWork:
    """The floor's state, set up before the fork, and the client's payloads."""

    def __init__(self, tmp: str, batch: int, per: int, features: set[str]) -> None:
        self.tmp, self.features, self.per = tmp, features, per
        sites = [{"name": f"s{k}", "nodes": [{"name": "big", "cpu": 100_000,
                                              "mem": 16_000_000, "count": 1}]}
                 for k in range(SITES + 1)]     # a quiet fifth site, as Agora's run has
        path = Path(tmp) / "cluster.yaml"
        path.write_text(yaml.safe_dump({"sites": sites}))
        self.state = ScheduleState(load_cluster(str(path)))
        want = int(1000 * per * TICK_S / SITES) if batch > 1 else 400
        self.jobs_per_site = max(2, min(60, want // TASKS_PER_JOB + 1))
        seq = 0
        for k in range(SITES):
            jobs = [Job(id=f"s{k}-j{j}", arrival=0.0, origin=f"s{k}", tasks=tuple(
                Task(f"t{t}", 1.0, Demand(1, 1), instances=INSTANCES)
                for t in range(TASKS_PER_JOB))) for j in range(self.jobs_per_site)]
            for i in range(0, len(jobs), 20):
                seq += 1
                op = pb.Command(submit_jobs=pb.SubmitJobs(
                    jobs=[job_to_proto(j) for j in jobs[i:i + 20]])).SerializeToString()
                res = pb.Result.FromString(self.state.execute("operator", op, seq))
                assert res.accepted == len(jobs[i:i + 20]), res.rejections[:3]
        self.round = self.state.round
        self.cursor = [0] * SITES

    def replica(self, me: int, n: int, f: int) -> ReplicaWork:
        return ReplicaWork(self, me, n, f)

    def payload(self, rid: int, per: int) -> bytes:
        """Site k's part of the round (``per`` bids on its next tasks), prefixed by k."""
        k = rid % SITES
        total = self.jobs_per_site * TASKS_PER_JOB
        start = self.cursor[k]
        self.cursor[k] = (start + per) % total
        picks = [(start + j) % total for j in range(min(per, total))]
        cmd = pb.Command(site_round=pb.SiteRound(
            site=f"s{k}", round=self.round, bidding=True, bids=[
                pb.Bid(job_id=f"s{k}-j{t // TASKS_PER_JOB}", task_id=f"t{t % TASKS_PER_JOB}",
                       instances=1, price=1) for t in picks]))
        return bytes([k]) + cmd.SerializeToString()


def main() -> None:
    skeleton, tmp, batch = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    args = sys.argv[4:]
    per = int(args[args.index("--assign") + 1])
    spec = os.environ.get("AGORA_FLOOR", ",".join(FEATURES))
    features = set() if spec in ("", "none") else set(spec.split(","))
    if not features <= set(FEATURES):
        sys.exit(f"AGORA_FLOOR: got {sorted(features)}; expected some of {FEATURES}")
    work = FloorWork(tmp, batch, per, features)
    (Path(tmp) / "ready_at").write_text(repr(time.monotonic()))
    sys.argv = [str(skeleton)] + args
    code = compile(floor_source(skeleton), str(skeleton), "exec")
    exec(code, {"__name__": "__main__", "WORK": work})
    share = Path(tmp) / "admitted"
    print(f"admitted share {share.read_text() if share.exists() else '0'}", flush=True)


if __name__ == "__main__":
    main()
