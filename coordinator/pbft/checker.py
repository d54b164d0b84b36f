"""Safety and liveness checks over a SimNet run (correct replicas only: a replica index is
faulty when the scenario made it Byzantine or gave it a twin; crashed and restarted replicas
with their storage intact are correct).

Safety: agreement (one batch digest per sequence number across correct replicas, so their
executed logs are prefixes of one another; a replica that skipped sequence numbers by state
transfer is compared where it executed), no replica executes one request twice (at two
sequence numbers, or again after a restart with another batch), and checkpoint digests
agree per sequence number. Liveness: every op of every client completed (f+1 matching
replies), i.e. progress resumed after the network healed.
"""

from __future__ import annotations

from agora.coordinator.pbft.simnet import SimNet


class Checker:
    def __init__(self, net: SimNet):
        self.net = net

    def safety_violations(self) -> list[str]:
        out: list[str] = []
        nodes = self.net.correct_nodes()
        by_seq: dict[int, dict[bytes, list[int]]] = {}
        cps: dict[int, dict[bytes, list[int]]] = {}
        for node in nodes:
            rec = node.record
            out.extend(f"replica {node.node_id}: {c}" for c in rec.conflicts)
            if node.replica is not None and node.replica.counters.get("safety_alarm"):
                out.append(f"replica {node.node_id}: a NEW-VIEW re-proposed another batch for "
                           f"a sequence number it had committed")
            for seq, digest in rec.executed.items():
                by_seq.setdefault(seq, {}).setdefault(digest, []).append(node.node_id)
            for seq, digest in rec.checkpoints.items():
                cps.setdefault(seq, {}).setdefault(digest, []).append(node.node_id)
            seen: dict[tuple, int] = {}
            for seq in sorted(rec.requests):
                for req in rec.requests[seq]:
                    if req in seen:
                        out.append(f"replica {node.node_id}: request {req} executed at seq "
                                   f"{seen[req]} and again at seq {seq}")
                    seen[req] = seq
        for seq in sorted(by_seq):
            if len(by_seq[seq]) > 1:
                out.append(f"agreement: seq {seq} executed with different batches: "
                           + "; ".join(f"{d.hex()[:12]} at {r}" for d, r in by_seq[seq].items()))
        for seq in sorted(cps):
            if len(cps[seq]) > 1:
                out.append(f"checkpoint {seq}: digests differ across correct replicas: "
                           + "; ".join(f"{d.hex()[:12]} at {r}" for d, r in cps[seq].items()))
        return out

    def liveness_violations(self) -> list[str]:
        out = []
        for cid, cn in sorted(self.net.clients.items()):
            if len(cn.done) < len(cn.ops):
                out.append(f"client {cid}: {len(cn.done)} of {len(cn.ops)} requests completed")
        return out

    def assert_ok(self, *, liveness: bool = True) -> None:
        problems = self.safety_violations() + (self.liveness_violations() if liveness else [])
        assert not problems, f"seed {self.net.seed}: " + "\n".join(problems)

    def max_executed(self) -> int:
        return max((max(n.record.executed, default=0) for n in self.net.correct_nodes()),
                   default=0)
