"""A client written from docs/client-protocol.md alone -- grpcio, PyNaCl, hashlib, hmac, the
key file and the generated messages; none of Agora's client or PBFT code -- submits a job,
reads it back, and is refused for a forged signature, against four real replicas. This is
what a client in another language does; if the protocol drifts from the page, this fails."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import Counter

import grpc
import pytest
import yaml
from nacl.bindings import crypto_scalarmult
from nacl.signing import SigningKey, VerifyKey

from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import pbft_pb2, resources_pb2, workload_pb2

pytestmark = pytest.mark.timeout(180)

REQUEST_DOMAIN = b"agora.pbft.v1.request\0"
REPLY_DOMAIN = b"agora.reply-mac.v1\0"


class NoQuorum(Exception):
    def __init__(self, need: int, errors: list) -> None:
        super().__init__(f"no {need} matching replies: {errors}")
        self.errors = errors


class BareClient:
    """The page's steps 1-6, one function each."""

    def __init__(self, group, client_id: str, own_key: SigningKey | None = None) -> None:
        """``own_key``: a key the client made itself (a site the operator admitted), not in
        the key file: its reply keys are derived (step 5)."""
        keys = yaml.safe_load((group.tmp / "keys.yaml").read_text())
        self.client_id = client_id
        if own_key is None:
            me = next(c for c in keys["clients"] if c["id"] == client_id)
            self.signer = SigningKey(bytes.fromhex(me["signing_key"]))
        else:
            self.signer, keys = own_key, {**keys, "client_mac_keys": {}}
        self.replicas = list(group.config.replicas)
        self.f = (len(self.replicas) - 1) // 3
        self.reply_keys = [self._reply_key(keys, r["index"], bytes.fromhex(r["verify_key"]))
                           for r in sorted(keys["replicas"], key=lambda r: r["index"])]
        self.ts = 0

    def _reply_key(self, keys: dict, replica: int, replica_vk: bytes) -> bytes:
        listed = (keys.get("client_mac_keys") or {}).get(f"{replica}:{self.client_id}")
        if listed:
            return bytes.fromhex(listed)
        shared = crypto_scalarmult(bytes(self.signer.to_curve25519_private_key()),
                                   bytes(VerifyKey(replica_vk).to_curve25519_public_key()))
        return hashlib.sha256(REPLY_DOMAIN + shared + replica.to_bytes(2, "big")
                              + self.client_id.encode()).digest()

    def request(self, cmd: pb.Command, read_only: bool = False,
                signature: bytes | None = None) -> tuple[int, bytes]:
        self.ts = max(self.ts + 1, time.time_ns() // 1000)
        op = cmd.SerializeToString()
        cid = self.client_id.encode()
        signed = b"".join((REQUEST_DOMAIN, len(cid).to_bytes(2, "big"), cid,
                           self.ts.to_bytes(8, "big"), b"\1" if read_only else b"\0", op))
        req = pbft_pb2.PbftRequest(client_id=self.client_id, timestamp=self.ts, op=op,
                                   read_only=read_only,
                                   signature=signature or self.signer.sign(signed).signature)
        env = pbft_pb2.PbftEnvelope(sender=-1, payload=pbft_pb2.PbftMessage(
            request=req).SerializeToString())
        return self.ts, pb.ClientRequest(envelope=env.SerializeToString()).SerializeToString()

    def call(self, rpc: str, ts: int, data: bytes, read_only: bool = False) -> bytes:
        """Every replica asked; the result ``need`` authentic replies agree on."""
        need = 2 * self.f + 1 if read_only else self.f + 1
        votes: Counter[bytes] = Counter()
        errors = []
        for i, address in enumerate(self.replicas):
            with grpc.insecure_channel(address) as ch:
                method = ch.unary_unary(f"/agora.v1.Coordinator/{rpc}")
                try:
                    raw = method(data, timeout=30)
                except grpc.RpcError as e:
                    errors.append((e.code(), e.details()))
                    continue
            reply = pb.ClientReply.FromString(raw)
            env = pbft_pb2.PbftEnvelope.FromString(reply.envelope)
            good = (env.sender == i and len(env.macs) == 1 and hmac.compare_digest(
                env.macs[0], hmac.digest(self.reply_keys[i], env.payload, "sha256")[:16]))
            assert good, f"replica {i}: reply does not authenticate"
            r = pbft_pb2.PbftMessage.FromString(env.payload).reply
            assert (r.client_id, r.timestamp, r.replica, r.read_only) == (
                self.client_id, ts, i, read_only)
            votes[r.result] += 1
        if votes and votes.most_common(1)[0][1] >= need:
            return votes.most_common(1)[0][0]
        raise NoQuorum(need, errors)


def _job(job_id: str) -> workload_pb2.Job:
    demand = resources_pb2.Demand(resources=resources_pb2.Resources(cpu_milli=500, mem_mib=64))
    return workload_pb2.Job(id=job_id, arrival_s=0.0, origin="east", weight=1.0, tasks=[
        workload_pb2.Task(id="a", duration_s=2.0, demand=demand, instances=2),
        workload_pb2.Task(id="b", duration_s=1.0, demand=demand, instances=1, after=["a"])])


def test_a_client_from_the_page_alone_submits_reads_back_and_retransmits(group):
    c = BareClient(group, "operator")
    ts, data = c.request(pb.Command(submit_jobs=pb.SubmitJobs(jobs=[_job("bare-1")])))
    res = pb.Result.FromString(c.call("SubmitJobs", ts, data))
    assert (res.kind, res.accepted, list(res.rejections)) == ("submit_jobs", 1, [])
    # a retransmission of the same bytes is answered with the same result, not run again
    again = pb.Result.FromString(c.call("SubmitJobs", ts, data))
    assert again == res
    ts, data = c.request(pb.Command(query=pb.Query(job_status=pb.JobStatusQuery(
        job_id="bare-1"))), read_only=True)
    answer = pb.QueryResult.FromString(c.call("GetSchedule", ts, data, read_only=True))
    assert answer.job_status.job_id == "bare-1" and answer.version >= res.version
    assert [t.task_id for t in answer.job_status.tasks] == ["a", "b"]


def test_a_forged_signature_is_refused_by_every_replica_naming_the_field(group):
    c = BareClient(group, "operator")
    ts, data = c.request(pb.Command(submit_jobs=pb.SubmitJobs(jobs=[_job("bare-2")])),
                         signature=bytes(64))
    with pytest.raises(NoQuorum) as e:
        c.call("SubmitJobs", ts, data)
    assert len(e.value.errors) == len(c.replicas), e.value
    for code, details in e.value.errors:
        assert code == grpc.StatusCode.UNAUTHENTICATED, e.value
        assert details.startswith("envelope.payload.request.signature:"), details


def test_a_site_with_its_own_key_checks_replies_with_derived_keys(group):
    """The operator admits a key made by the site (2f+1 agree, as for any membership change);
    the site's requests then verify with it and its replies with keys derived by X25519."""
    own = SigningKey.generate()
    op = BareClient(group, "operator")
    ts, data = op.request(pb.Command(admit_site=pb.AdmitSite(
        site="edge", verify_key=bytes(own.verify_key))))
    assert pb.Result.FromString(op.call("AdmitSite", ts, data)).accepted == 1
    site = BareClient(group, "site:edge", own_key=own)
    job = _job("bare-edge")
    job.origin = "edge"
    ts, data = site.request(pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job])))
    res = pb.Result.FromString(site.call("SubmitJobs", ts, data))
    assert (res.accepted, list(res.rejections)) == (1, [])
