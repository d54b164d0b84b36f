"""The X.509 half of a site's identity (``site_key.NodeIdentity``), run in a short-lived child
process on the site's node: making or loading the node's TLS key (0600, never sent
anywhere), a certificate request for it, and checking that a certificate is for that key,
signed by the group's CA and not about to expire.

It is a child process so that the site agent -- a long-lived Ray actor -- never loads
``cryptography`` (about 7 MiB resident in every agent for a few calls at start-up). The
parent writes one JSON request on the child's standard input and reads one JSON answer:

    {"op": "request", "key": path, "site": "east"}       -> {"csr": PEM}
    {"op": "fits", "key": path, "ca": PEM, "cert": PEM}  -> {"fits": true | false}

A refusal (a key file others may read, a damaged one) is ``{"error": message}``, which the
parent raises as ValueError. PEMs travel as text, one character per byte (latin-1).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agora.coordinator.private_file import write_private
from agora.coordinator.site_key import _private_folder, _read_private


def tls_key(path: Path):
    """The TLS key in ``path``, or a new one written there (0600)."""
    if path.exists():
        raw = _read_private(path, "a TLS key")
        try:
            return serialization.load_pem_private_key(raw, None)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: not a PEM private key without a password; move "
                             f"it aside, the agent makes a new one") from None
    key = ec.generate_private_key(ec.SECP256R1())
    _private_folder(path.parent)
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return key


def request(path: Path, site: str) -> bytes:
    """A certificate signing request (PEM) for the TLS key in ``path``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"site-{site}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(
        tls_key(path), hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def fits(path: Path, ca: bytes, pem: bytes) -> bool:
    """Whether certificate ``pem`` is for the TLS key in ``path``, signed by ``ca``, valid
    for more than a day yet, and names its site (``site-<s>``) among its alternative names,
    which peers dial it by (one made before they did is replaced: a review found peer
    links down after an upgrade, the old certificate kept for its year)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    except Exception:  # noqa: BLE001 - unreadable, wrong issuer, bad signature: not ours
        return False
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    if cert.not_valid_after_utc < soon:     # expiring: ask for a new one
        return False
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        return False
    if not cn or cn[0] not in names:
        return False
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return (cert.public_key().public_bytes(*spki)
            == tls_key(path).public_key().public_bytes(*spki))


def answer(req: dict) -> dict:
    path = Path(req["key"])
    try:
        if req["op"] == "request":
            return {"csr": request(path, req["site"]).decode("ascii")}
        if req["op"] == "fits":
            return {"fits": fits(path, req["ca"].encode("latin-1"),
                                 req["cert"].encode("latin-1"))}
    except ValueError as e:
        return {"error": str(e)}
    raise ValueError(f"op: {req['op']!r}; expected request or fits")


if __name__ == "__main__":
    json.dump(answer(json.load(sys.stdin)), sys.stdout)
