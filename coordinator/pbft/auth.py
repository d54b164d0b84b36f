"""Authentication (Castro & Liskov, TOCS 2002, section 3): MAC vectors for replica votes,
Ed25519 signatures for client requests and for VIEW-CHANGE / NEW-VIEW.

Every replica-authored envelope carries a MAC vector (one HMAC-SHA256 entry, truncated to 16
bytes, per replica, keyed with the pairwise link key) over the payload bytes. A replica checks
only its own entry, which also works for envelopes forwarded inside certificates. A faulty
sender can make entries that verify for some replicas and not others; that can cost a view
change (liveness), never safety, because certificates are judged by each verifier's entries.
"""

from __future__ import annotations

import hashlib
import hmac

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.pbft.messages import request_digest, request_signing_bytes
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage, PbftRequest

SIGN_DOMAIN = b"agora.pbft.v1\0"
MAC_LEN = 16
_CACHE_LIMIT = 8192


def mac(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, payload, "sha256")[:MAC_LEN]


def _verify(vk: VerifyKey, data: bytes, sig: bytes) -> bool:
    if len(sig) != 64:
        return False
    try:
        vk.verify(data, sig)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


class ReplicaAuth:
    """Replica ``index``'s view of the key set: seals its envelopes and checks others'."""

    def __init__(self, keys: KeySet, index: int):
        seed = keys.replica_signing[index]
        if seed is None:
            raise ValueError(f"keys: replica {index}'s signing key is missing; pass the key "
                             f"set generated for this replica (KeySet.for_replica)")
        self.index = index
        self.n = keys.n
        self.link = [keys.mac_key(index, j) for j in range(keys.n)]
        self.signer = SigningKey(seed)
        self.replica_verify = [VerifyKey(k) for k in keys.replica_verify]
        self.client_verify = {c: VerifyKey(k) for c, k in keys.client_verify.items()}
        self.client_mac = {c: k for (i, c), k in keys.client_macs.items() if i == index}
        self._good_requests: dict[bytes, None] = {}
        self._good_signatures: dict[bytes, None] = {}

    def seal(self, msg: PbftMessage, *, sign: bool = False) -> PbftEnvelope:
        payload = msg.SerializeToString()
        env = PbftEnvelope(sender=self.index, payload=payload,
                           macs=[mac(k, payload) for k in self.link])
        if sign:
            env.signature = self.signer.sign(SIGN_DOMAIN + payload).signature
        return env

    def to_client(self, msg: PbftMessage, client_id: str) -> PbftEnvelope | None:
        key = self.client_mac.get(client_id)
        if key is None:
            return None
        payload = msg.SerializeToString()
        return PbftEnvelope(sender=self.index, payload=payload, macs=[mac(key, payload)])

    def mac_ok(self, env: PbftEnvelope) -> bool:
        """Whether this replica's entry of ``env``'s MAC vector is right (sender in range)."""
        s = env.sender
        if not 0 <= s < self.n or len(env.macs) <= self.index:
            return False
        return hmac.compare_digest(env.macs[self.index], mac(self.link[s], env.payload))

    def signature_ok(self, env: PbftEnvelope) -> bool:
        """Whether ``env`` is signed by replica ``env.sender``; a success is cached."""
        s = env.sender
        if not 0 <= s < self.n:
            return False
        key = env.signature + s.to_bytes(2, "big") + hashlib.sha256(env.payload).digest()
        if key in self._good_signatures:
            return True
        if not _verify(self.replica_verify[s], SIGN_DOMAIN + env.payload, env.signature):
            return False
        _remember(self._good_signatures, key)
        return True

    def request_ok(self, req: PbftRequest, digest: bytes | None = None) -> bool:
        """Whether ``req`` is signed by its client's one key; each request is verified once."""
        digest = digest or request_digest(req)
        if digest in self._good_requests:
            return True
        vk = self.client_verify.get(req.client_id)
        if vk is None or req.timestamp < 1:
            return False
        data = request_signing_bytes(req.client_id, req.timestamp, req.op, req.read_only)
        if not _verify(vk, data, req.signature):
            return False
        _remember(self._good_requests, digest)
        return True


def _remember(cache: dict[bytes, None], key: bytes) -> None:
    if len(cache) >= _CACHE_LIMIT:
        del cache[next(iter(cache))]
    cache[key] = None


class ClientAuth:
    """A client's keys: signs its requests, checks replicas' replies."""

    def __init__(self, keys: KeySet, client_id: str):
        seed = keys.client_signing.get(client_id)
        if seed is None:
            raise ValueError(f"keys: no signing key for client {client_id!r}; generate the key "
                             f"set with this client id")
        self.client_id = client_id
        self.signer = SigningKey(seed)
        self.reply_keys = [keys.client_macs.get((i, client_id)) for i in range(keys.n)]

    def sign_request(self, timestamp: int, op: bytes, read_only: bool) -> PbftRequest:
        data = request_signing_bytes(self.client_id, timestamp, op, read_only)
        return PbftRequest(client_id=self.client_id, timestamp=timestamp, op=op,
                           read_only=read_only, signature=self.signer.sign(data).signature)

    def reply_ok(self, env: PbftEnvelope) -> bool:
        s = env.sender
        if not 0 <= s < len(self.reply_keys) or len(env.macs) != 1:
            return False
        key = self.reply_keys[s]
        return key is not None and hmac.compare_digest(env.macs[0], mac(key, env.payload))
