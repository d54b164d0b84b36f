"""Signed site reports for one-command rounds (``Round`` in coordinator.proto).

A site signs its part of a round (its ended instances and its bids) with its client key;
whoever drives the round carries every site's signed part to the coordinator in one
ordered request, and every replica checks every signature itself. The carrier can drop a
site's part (the site can always send its own ``BidBatch`` instead) but cannot forge or
alter one: the signature covers the client id and the exact report bytes, and a report for
another round or another site is refused by the state machine.
"""

from __future__ import annotations

from typing import Callable

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from protos.agora.v1 import coordinator_pb2 as pb

DOMAIN = b"agora.v1.SiteRound"


def signing_bytes(client_id: str, report: bytes) -> bytes:
    return DOMAIN + b"\x00" + client_id.encode() + b"\x00" + report


def sign(seed: bytes, client_id: str, report: pb.SiteRound) -> pb.SignedSiteRound:
    data = report.SerializeToString(deterministic=True)
    sig = SigningKey(seed).sign(signing_bytes(client_id, data)).signature
    return pb.SignedSiteRound(client_id=client_id, report=data, signature=sig)


def verifier(client_keys: dict[str, bytes]) -> Callable[[str, bytes, bytes], bool]:
    """``verify(client_id, report, signature)`` over the clients' Ed25519 public keys."""
    keys = {c: VerifyKey(k) for c, k in client_keys.items()}

    def verify(client_id: str, report: bytes, signature: bytes) -> bool:
        vk = keys.get(client_id)
        if vk is None or len(signature) != 64:
            return False
        try:
            vk.verify(signing_bytes(client_id, report), signature)
        except (BadSignatureError, ValueError, TypeError):
            return False
        return True

    return verify
