"""Who may read what a replica serves outside PBFT requests (``GetStatus``,
``WatchSchedule``): a client of the key file, proven by an Ed25519 signature over the
method, its id, a timestamp, (for a watch) the version it starts from and the replica it is
for. Replicas accept a signature within ``WINDOW_MS`` of their own clock (the clocks of sites
may differ by that much) and made out to them: every replica receives a reader's request, so
one that named no replica let a faulty replica replay a site's watch requests at the others
until the site's watch slots there were full (a probe's finding). The gRPC health service
stays open: it says SERVING and nothing else, and with mutual TLS (the default) it too needs
a certificate of the group's CA.

Schedule reads that are PBFT requests (``GetSchedule``: schedule, job status, ledger) are
signed requests already (``coordinator/validate.py``). Who reads how much --
the operator, replicas and auditors (``auditor:<name>``, who may only read) everything, a
site what concerns it and the open market -- is ``coordinator/read_scope.py``.
"""

from __future__ import annotations

import struct
import time

from nacl.signing import SigningKey, VerifyKey

from agora.coordinator.pbft.auth import _verify
from agora.coordinator.schedule_rules import client_id_problem
from agora.protos.agora.v1 import coordinator_pb2 as pb

READ_DOMAIN = b"agora.read.v2\0"
WINDOW_MS = 300_000


def read_signing_bytes(method: str, client_id: str, timestamp_ms: int, since: int = 0,
                       replica: int = 0) -> bytes:
    return (READ_DOMAIN + method.encode() + b"\0" + client_id.encode("utf-8", "surrogatepass")
            + b"\0" + struct.pack(">qqi", timestamp_ms, since, replica))


def sign_read(signer: SigningKey, client_id: str, method: str, since: int = 0,
              now_ms: int | None = None, *, replica: int) -> pb.ReadAuth:
    ts = int(time.time() * 1000) if now_ms is None else now_ms
    sig = signer.sign(read_signing_bytes(method, client_id, ts, since, replica)).signature
    return pb.ReadAuth(client_id=client_id, timestamp_ms=ts, signature=sig, replica=replica)


def read_refusal(verify: dict[str, VerifyKey], auth: pb.ReadAuth, method: str, since: int = 0,
                 now_ms: int | None = None, *, replica: int) -> str | None:
    """Why ``auth`` does not let its client read through ``method`` at replica ``replica``
    (None: it does)."""
    if not auth.client_id:
        return ("auth: missing; expected a ReadAuth signed by a client of the key file "
                "(CoordinatorClient signs it)")
    bad = client_id_problem(auth.client_id)
    if bad is not None:
        return f"auth.client_id: {bad}"
    vk = verify.get(auth.client_id)
    if vk is None:
        return f"auth.client_id: no key for client {auth.client_id!r}; expected a client of " \
               f"the key file"
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - auth.timestamp_ms) > WINDOW_MS:
        return (f"auth.timestamp_ms: {auth.timestamp_ms} is {abs(now - auth.timestamp_ms)} ms "
                f"from this replica's clock; expected within {WINDOW_MS} ms (check the clock)")
    if auth.replica != replica:
        return (f"auth.replica: {auth.replica}; expected {replica}, this replica's index (a "
                f"ReadAuth is signed for the one replica it is sent to)")
    if not _verify(vk, read_signing_bytes(method, auth.client_id, auth.timestamp_ms, since,
                                          replica), auth.signature):
        return f"auth.signature: does not verify with the key of client {auth.client_id!r} " \
               f"for {method}"
    return None
