"""Key material of a PBFT group: Ed25519 key pairs for replicas and clients, and pairwise
HMAC-SHA256 link keys (replica-replica, including each replica's key with itself so its own
envelopes can be checked inside forwarded certificates, and replica-client for replies).

``generate_keys(n, client_ids)`` makes a complete set; ``KeySet.to_dict()`` /
``KeySet.from_dict()`` carry it to and from a YAML/JSON-friendly dict of hex strings (what
``agora keys`` writes). ``for_replica(i)`` / ``for_client(c)`` strip the secrets a node must
not hold. Pass ``seed`` only for tests: keys derived from a seed are as secret as the seed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey


@dataclass(frozen=True)
class KeySet:
    """Everything a group's nodes need to authenticate one another.

    Secrets a node does not hold are absent (``None`` or missing from the dict)."""

    n: int
    replica_verify: tuple[bytes, ...]
    """Ed25519 public key of replica i (32 bytes)."""
    replica_signing: tuple[bytes | None, ...]
    """Ed25519 seed (32 bytes) of replica i, or None where not held."""
    client_verify: dict[str, bytes]
    """client id -> Ed25519 public key: one id, exactly one key."""
    client_signing: dict[str, bytes]
    """client id -> Ed25519 seed, only for clients whose secret is held."""
    replica_macs: dict[tuple[int, int], bytes]
    """(i, j) with i <= j -> 32-byte HMAC key of the link between replicas i and j."""
    client_macs: dict[tuple[int, str], bytes]
    """(replica, client id) -> 32-byte HMAC key replica i uses to authenticate replies."""

    def mac_key(self, i: int, j: int) -> bytes:
        return self.replica_macs[(i, j) if i <= j else (j, i)]

    def for_replica(self, index: int) -> KeySet:
        """What replica ``index`` may hold: its own secrets and every public key."""
        return KeySet(
            n=self.n, replica_verify=self.replica_verify,
            replica_signing=tuple(s if i == index else None
                                  for i, s in enumerate(self.replica_signing)),
            client_verify=dict(self.client_verify), client_signing={},
            replica_macs={k: v for k, v in self.replica_macs.items() if index in k},
            client_macs={k: v for k, v in self.client_macs.items() if k[0] == index})

    def for_client(self, client_id: str) -> KeySet:
        """What client ``client_id`` may hold: its own secrets and every public key."""
        return KeySet(
            n=self.n, replica_verify=self.replica_verify,
            replica_signing=(None,) * self.n, client_verify=dict(self.client_verify),
            client_signing={k: v for k, v in self.client_signing.items() if k == client_id},
            replica_macs={},
            client_macs={k: v for k, v in self.client_macs.items() if k[1] == client_id})

    def public(self) -> KeySet:
        """Every public key and no secret: what the operator hands a site that makes its own
        key (``with_own_key``)."""
        return KeySet(n=self.n, replica_verify=self.replica_verify,
                      replica_signing=(None,) * self.n, client_verify=dict(self.client_verify),
                      client_signing={}, replica_macs={}, client_macs={})

    def with_own_key(self, client_id: str, seed: bytes) -> KeySet:
        """What client ``client_id`` holds when it made its own Ed25519 key (``seed``, 32
        bytes) and the operator admitted its public key by an ordered command: the group's
        public keys and its own secret; replies are checked with keys derived from it
        (``auth.reply_mac_key``), so no link key is handed over."""
        if len(seed) != 32:
            raise ValueError(f"seed: {len(seed)} bytes; expected a 32-byte Ed25519 seed")
        pub = self.public()
        return KeySet(n=self.n, replica_verify=self.replica_verify,
                      replica_signing=pub.replica_signing,
                      client_verify={**pub.client_verify,
                                     client_id: bytes(SigningKey(seed).verify_key)},
                      client_signing={client_id: seed}, replica_macs={}, client_macs={})

    def to_dict(self) -> dict[str, Any]:
        """A dict of lists, strings and ints (keys as hex) that YAML and JSON carry as is."""
        replicas = []
        for i in range(self.n):
            entry: dict[str, Any] = {"index": i, "verify_key": self.replica_verify[i].hex()}
            if self.replica_signing[i] is not None:
                entry["signing_key"] = self.replica_signing[i].hex()
            replicas.append(entry)
        clients = []
        for cid in sorted(self.client_verify):
            entry = {"id": cid, "verify_key": self.client_verify[cid].hex()}
            if cid in self.client_signing:
                entry["signing_key"] = self.client_signing[cid].hex()
            clients.append(entry)
        return {
            "n": self.n, "replicas": replicas, "clients": clients,
            "mac_keys": {f"{i}-{j}": k.hex() for (i, j), k in sorted(self.replica_macs.items())},
            "client_mac_keys": {f"{i}:{c}": k.hex()
                                for (i, c), k in sorted(self.client_macs.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeySet:
        """Inverse of ``to_dict``; raises ValueError naming the field that is wrong."""
        try:
            n = int(data["n"])
            reps = sorted(data["replicas"], key=lambda r: int(r["index"]))
            # the count first: n: 1e9 would build a list of a billion (a review)
            if len(reps) != n or [int(r["index"]) for r in reps] != list(range(n)):
                raise ValueError(f"keys.replicas: expected indices 0..{n - 1}")
            verify = tuple(_hex(r["verify_key"], 32, f"replicas[{i}].verify_key")
                           for i, r in enumerate(reps))
            signing = tuple(_hex(r["signing_key"], 32, f"replicas[{i}].signing_key")
                            if "signing_key" in r else None for i, r in enumerate(reps))
            cverify, csigning = {}, {}
            for c in data.get("clients", []):
                cid = str(c["id"])
                if cid in cverify:
                    raise ValueError(f"keys.clients: client id {cid!r} appears twice; one id "
                                     f"has exactly one key")
                cverify[cid] = _hex(c["verify_key"], 32, f"clients[{cid}].verify_key")
                if "signing_key" in c:
                    csigning[cid] = _hex(c["signing_key"], 32, f"clients[{cid}].signing_key")
            macs = {}
            for name, key in data.get("mac_keys", {}).items():
                i, j = (int(x) for x in name.split("-"))
                macs[(min(i, j), max(i, j))] = _hex(key, 32, f"mac_keys.{name}")
            cmacs = {}
            for name, key in data.get("client_mac_keys", {}).items():
                i, cid = name.split(":", 1)
                cmacs[(int(i), cid)] = _hex(key, 32, f"client_mac_keys.{name}")
        except (KeyError, TypeError, AttributeError, OverflowError) as e:
            # a mapping where a list goes and the like (a review: AttributeError, and
            # OverflowError for n: .inf, were tracebacks)
            raise ValueError(f"keys: missing or malformed field {e}") from e
        return cls(n=n, replica_verify=verify, replica_signing=signing, client_verify=cverify,
                   client_signing=csigning, replica_macs=macs, client_macs=cmacs)


def _hex(value: Any, size: int, where: str) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError as e:
        raise ValueError(f"keys.{where}: not hex") from e
    if len(raw) != size:
        raise ValueError(f"keys.{where}: {len(raw)} bytes; expected {size}")
    return raw


def generate_keys(n: int, client_ids: list[str] | tuple[str, ...], *,
                  seed: bytes | None = None) -> KeySet:
    """A complete key set for replicas 0..n-1 and ``client_ids``, plus one client per
    replica, ``replica:<i>``, whose requests are the replica's own votes (closing a round,
    lapsing a silent site; ``coordinator/round_keeper.py``).

    Without ``seed`` every key comes from ``os.urandom``; with it, keys are derived from
    SHA-256(seed, label), reproducible (tests, the simulator)."""
    if len(set(client_ids)) != len(client_ids):
        raise ValueError("generate_keys: client ids must be distinct")
    client_ids = list(client_ids) + [f"replica:{i}" for i in range(n)
                                     if f"replica:{i}" not in client_ids]

    def secret(label: str) -> bytes:
        if seed is None:
            return os.urandom(32)
        return hashlib.sha256(seed + b"\0" + label.encode()).digest()

    rsign = tuple(secret(f"replica-sign/{i}") for i in range(n))
    csign = {c: secret(f"client-sign/{c}") for c in client_ids}
    return KeySet(
        n=n,
        replica_verify=tuple(bytes(SigningKey(s).verify_key) for s in rsign),
        replica_signing=rsign,
        client_verify={c: bytes(SigningKey(s).verify_key) for c, s in csign.items()},
        client_signing=csign,
        replica_macs={(i, j): secret(f"mac/{i}-{j}") for i in range(n) for j in range(i, n)},
        client_macs={(i, c): secret(f"client-mac/{i}:{c}") for i in range(n) for c in client_ids})
