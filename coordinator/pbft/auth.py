"""Authentication (Castro & Liskov, TOCS 2002, section 3): MAC vectors for replica votes,
Ed25519 signatures for client requests and for what travels inside proofs: PREPARE and
CHECKPOINT (carried in prepared certificates and checkpoint proofs), VIEW-CHANGE and NEW-VIEW.

Every replica-authored envelope carries a MAC vector (one HMAC-SHA256 entry, truncated to 16
bytes, per replica, keyed with the pairwise link key) over the payload bytes; a replica checks
only its own entry. A faulty sender can make entries that verify for some replicas and not
others. For a message used once, at its receiver (PRE-PREPARE, COMMIT, STATUS), that costs
at most a view change. A message that a replica later forwards as proof to the others must
verify for every one of them: a PREPARE whose MAC entry was right only for replica 1 made
replica 1's prepared certificate -- and so its VIEW-CHANGE -- unacceptable to every other
replica, and with that faulty replica silent no view change could complete (found by review,
test_pbft_byzantine_proofs.py). So PREPARE and CHECKPOINT are signed too (``SIGNED_KINDS``:
``seal`` signs them) and judged by signature: a CHECKPOINT when it arrives, a PREPARE when it
goes into this replica's certificate, both inside the certificates and proofs of others.

**Clients whose key the log decides.** The key file fixes the replicas' keys and some
clients' (the operator, auditors, the replicas' own voters). An application may govern
other clients' keys by ordered commands (``App.governs`` / ``App.member_key``: the schedule
admits a site by its public key, replaces it, and removes it). Once the log has given or
revoked a client's key, its requests are judged against the key *at their place in the
log*, when they execute: a replica whose execution is behind an admission or a removal
cannot judge them when they are ordered, so the ordering checks (pre-prepare, new view) let
such a request through, and execution refuses it -- deterministically, on every correct
replica -- if its signature does not verify with the key the log gives the client then. A
refused request changes nothing, not even the client's reply-table entry (a faulty primary
cannot block a site by ordering a forged request with a huge timestamp). Requests of a
client the log has said nothing about are checked against the key file when ordered, as
before; a backup that has not yet executed a site's first admission refuses that site's
first requests (as a backup more than f behind would: a delay, never a wrong answer). The
replica that first receives a request checks it against its current key and refuses it at
once when it does not verify.

Replies to a client without a link key in the key file are authenticated with a key both
ends derive from their own Ed25519 keys (X25519 on the birationally equivalent curve;
``reply_mac_key``): nothing secret is exchanged, and the client's secret never leaves it.
"""

from __future__ import annotations

import hashlib
import hmac

from typing import Callable

from nacl.bindings import crypto_scalarmult
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.pbft.messages import (request_digest, request_shape_ok,
                                             request_signing_bytes)
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage, PbftRequest

SIGN_DOMAIN = b"agora.pbft.v1\0"
MAC_LEN = 16
_CACHE_LIMIT = 8192
REPLY_MAC_DOMAIN = b"agora.reply-mac.v1\0"


SIGNED_KINDS = frozenset({"prepare", "checkpoint", "view_change", "new_view"})
"""Replica messages signed as well as MACed: those a replica forwards inside certificates
and proofs, whose authenticity every other replica must be able to check."""


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


def reply_mac_key(own: SigningKey, other: bytes, replica: int, client_id: str) -> bytes | None:
    """The link key replica ``replica`` and client ``client_id`` authenticate replies with,
    from one end's signing key and the other end's Ed25519 public key (either way round
    gives the same key); None when ``other`` is not a usable public key."""
    try:
        shared = crypto_scalarmult(bytes(own.to_curve25519_private_key()),
                                   bytes(VerifyKey(other).to_curve25519_public_key()))
    except (CryptoError, ValueError, TypeError):
        return None
    return hashlib.sha256(REPLY_MAC_DOMAIN + shared + replica.to_bytes(2, "big")
                          + client_id.encode("utf-8", "surrogatepass")).digest()


def usable_public_key(key: bytes) -> bool:
    """Whether ``key`` is an Ed25519 public key that can verify and derive reply keys (32
    bytes, a point of the curve that is not of small order)."""
    if len(key) != 32:
        return False
    return reply_mac_key(SigningKey(b"\x01" * 32), key, 0, "") is not None


class ClientKeys:
    """The key each client's requests must verify with: the key file's, overridden for the
    clients an application governs by what its ordered commands say (see module doc).
    ``get`` and ``in`` as for a dict."""

    def __init__(self, static: dict[str, bytes]) -> None:
        self.static = {c: VerifyKey(k) for c, k in static.items()}
        self.governs: Callable[[str], bool] | None = None
        self.member_key: Callable[[str], bytes | None] | None = None
        """client id -> its admitted key, b"" when removed, None when the key file decides"""
        self._keys: dict[bytes, VerifyKey] = {}

    def attach(self, app) -> None:
        """Let ``app`` govern clients (when it has ``governs`` and ``member_key``)."""
        if hasattr(app, "governs") and hasattr(app, "member_key"):
            self.governs, self.member_key = app.governs, app.member_key
            self._app = app

    _app = None

    def changes(self) -> int:
        """A number that changes whenever the app's ordered commands changed some client's
        key (``App.member_changes``): held requests are judged again then."""
        return getattr(self._app, "member_changes", 0)

    def dynamic(self, client_id: str) -> bool:
        """Whether ordered commands may change ``client_id``'s key."""
        return self.governs is not None and self.governs(client_id)

    def entry(self, client_id: str) -> bytes | None:
        """What the log says of ``client_id``'s key: its key, b"" (revoked), or None
        (nothing: the key file decides)."""
        return self.member_key(client_id) if self.dynamic(client_id) else None

    def get(self, client_id: str, default=None) -> VerifyKey | None:
        if self.dynamic(client_id):
            key = self.member_key(client_id)
            if key is not None:
                if not key:
                    return default
                vk = self._keys.get(key)
                if vk is None:
                    if len(self._keys) >= _CACHE_LIMIT:
                        self._keys.clear()
                    vk = self._keys[key] = VerifyKey(key)
                return vk
        return self.static.get(client_id, default)

    def __contains__(self, client_id: str) -> bool:
        return self.get(client_id) is not None


class RequestAuth:
    """The checks of client requests, over ``client_verify`` (a ``ClientKeys``); what
    re-executing a log needs (``recovery._Replayer``), and ``ReplicaAuth``'s base."""

    def __init__(self, client_verify: ClientKeys) -> None:
        self.client_verify = client_verify
        self._good_requests: dict[bytes, None] = {}

    def request_ok(self, req: PbftRequest, digest: bytes | None = None, *,
                   ordering: bool = False) -> bool:
        """Whether ``req`` is signed by its client's one key; each request is verified once
        per key. ``ordering``: the check of a request in a pre-prepare or new view, which
        lets through a request of a client whose key the log has given or revoked (an
        admission or removal may be ahead of this replica's execution; execution judges
        it, see ``executable``)."""
        if not request_shape_ok(req):
            return False
        keys = self.client_verify
        vk = keys.get(req.client_id)
        if vk is not None:
            key = (digest or request_digest(req)) + bytes(vk)
            if key in self._good_requests:
                return True
            data = request_signing_bytes(req.client_id, req.timestamp, req.op, req.read_only)
            if _verify(vk, data, req.signature):
                _remember(self._good_requests, key)
                return True
        return ordering and keys.dynamic(req.client_id) and keys.entry(req.client_id) is not None

    def executable(self, req: PbftRequest) -> bool:
        """Whether an ordered request may execute. A client whose key the log has given (or
        revoked) must have signed it with the key the log gives it now; any other was
        checked against the key file by the f+1 or more correct replicas that let it be
        ordered (keys the log gives are never taken back into the key file's hands), so
        re-executing a log needs no key file."""
        keys = self.client_verify
        if not keys.dynamic(req.client_id) or keys.entry(req.client_id) is None:
            return True
        return self.request_ok(req)


class ReplicaAuth(RequestAuth):
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
        super().__init__(ClientKeys(keys.client_verify))
        self.client_mac = {c: k for (i, c), k in keys.client_macs.items() if i == index}
        self._derived_macs: dict[tuple[str, bytes], bytes | None] = {}
        self._good_signatures: dict[bytes, None] = {}

    def seal(self, msg: PbftMessage, *, sign: bool | None = None) -> PbftEnvelope:
        """``msg`` with this replica's MAC vector, and signed when ``sign`` is true or, by
        default, when its kind is one of ``SIGNED_KINDS``."""
        if sign is None:
            sign = msg.WhichOneof("kind") in SIGNED_KINDS
        payload = msg.SerializeToString()
        env = PbftEnvelope(sender=self.index, payload=payload,
                           macs=[mac(k, payload) for k in self.link])
        if sign:
            env.signature = self.signer.sign(SIGN_DOMAIN + payload).signature
        return env

    def to_client(self, msg: PbftMessage, client_id: str) -> PbftEnvelope | None:
        # a client whose key the log gave made that key itself: the key file's link key
        # (if it lists the client) is not one it holds
        key = (self._derived_mac(client_id) if self.client_verify.entry(client_id) is not None
               else self.client_mac.get(client_id) or self._derived_mac(client_id))
        if key is None:
            return None
        payload = msg.SerializeToString()
        return PbftEnvelope(sender=self.index, payload=payload, macs=[mac(key, payload)])

    def _derived_mac(self, client_id: str) -> bytes | None:
        vk = self.client_verify.get(client_id)
        if vk is None:
            return None
        k = (client_id, bytes(vk))
        if k not in self._derived_macs:
            if len(self._derived_macs) >= _CACHE_LIMIT:
                self._derived_macs.clear()
            self._derived_macs[k] = reply_mac_key(self.signer, k[1], self.index, client_id)
        return self._derived_macs[k]

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
        self.reply_keys = [keys.client_macs.get((i, client_id))
                           or reply_mac_key(self.signer, keys.replica_verify[i], i, client_id)
                           for i in range(keys.n)]

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
