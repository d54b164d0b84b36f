"""``agora certs``: a private certificate authority and one certificate per component.

Every Agora process that serves gRPC (site agents, coordinator replicas) gets a key and a
certificate signed by one CA; with TLS on, servers require a client certificate from the
same CA (mutual TLS), so a process without one is refused during the handshake. Keys are
drawn from the operating system's randomness, never from a seed: a key that could be
replayed from a recorded seed would be no key.

Layout written under ``--out DIR``::

    ca.crt  ca.key                      # keep ca.key offline once certificates are issued
    <name>.crt  <name>.key              # one pair per component: site-<s>, replica-<i>, client

Certificates carry the component name as the common name and, as subject alternative
names, the given hosts (default ``localhost`` and ``127.0.0.1``) and the name itself (a
site's peers dial ``site-<s>`` by that name, whatever address they were given).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agora.coordinator.private_file import check_private, write_private, write_public

DEFAULT_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class Issued:
    name: str
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Agora"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(out)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def _validity(days: int):
    now = dt.datetime.now(dt.timezone.utc)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)


def make_ca(out: Path, days: int = 365) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days)
    cert = (x509.CertificateBuilder().subject_name(_name("agora-ca")).issuer_name(_name("agora-ca"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True, mode=0o755)    # not 0777 under umask 000
    write_public(out / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    _write_key(out / "ca.key", key)
    return Issued("ca", out / "ca.crt", out / "ca.key")


def issue(out: Path, name: str, hosts: Iterable[str] = DEFAULT_HOSTS, days: int = 365) -> Issued:
    """A certificate for ``name`` signed by the CA in ``out`` (usable as server and client)."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"name: {name!r}; expected a plain file name such as 'site-a'")
    key = ec.generate_private_key(ec.SECP256R1())
    write_public(out / f"{name}.crt", _signed(out, name, key.public_key(), hosts, days))
    _write_key(out / f"{name}.key", key)
    return Issued(name, out / f"{name}.crt", out / f"{name}.key")


def sign_request(out: Path, name: str, csr_pem: bytes, hosts: Iterable[str] = DEFAULT_HOSTS,
                 days: int = 365) -> bytes:
    """A certificate (PEM) for ``name`` over the public key of the certificate request
    ``csr_pem`` (made on a site's node, whose key stays there), signed by the CA in ``out``.
    The name and hosts are the CA's to give, whatever the request asks; a request whose
    signature does not verify is refused (ValueError)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise ValueError(f"{name}: not a PEM certificate request ({e})") from None
    if not csr.is_signature_valid:
        raise ValueError(f"{name}: the certificate request's signature does not verify")
    return _signed(Path(out), name, csr.public_key(), hosts, days)


def _signed(out: Path, name: str, public_key, hosts: Iterable[str], days: int) -> bytes:
    ca_cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    # the CA's key is checked as every key is where it is read (a probe: a ca.key others
    # could read signed new certificates without a word)
    check_private(out / "ca.key", "the CA's key", "make a new CA and certificates with "
                  "`agora certs` in a fresh folder")
    ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
    start, end = _validity(days)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(dict.fromkeys((*hosts, name))), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def make_all(out: Path, sites: Iterable[str], replicas: int, hosts: Iterable[str] = DEFAULT_HOSTS,
             days: int = 365) -> list[Issued]:
    """The CA, then ``site-<s>`` for every site, ``replica-<i>`` for i < replicas, and
    ``client`` (for people running ``agora schedule`` / ``agora status``)."""
    hosts = tuple(hosts)
    made = [make_ca(out, days)]
    names = [f"site-{s}" for s in sites] + [f"replica-{i}" for i in range(replicas)] + ["client"]
    made += [issue(out, n, hosts, days) for n in names]
    return made


def ensure_all(out: Path, sites: Iterable[str], replicas: int,
               hosts: Iterable[str] = DEFAULT_HOSTS, days: int = 365) -> list[Issued]:
    """What ``make_all`` makes, but only what is missing: an existing CA and existing
    certificates are kept (certificates copied to other nodes stay valid); returns what it
    made. A folder with certificates but no CA key cannot issue new ones: it says which are
    missing."""
    out = Path(out)
    names = [f"site-{s}" for s in sites] + [f"replica-{i}" for i in range(replicas)] + ["client"]
    missing = [n for n in names
               if not ((out / f"{n}.crt").is_file() and (out / f"{n}.key").is_file())]
    made: list[Issued] = []
    if not (out / "ca.crt").is_file():
        made.append(make_ca(out, days))
        missing = names                  # a new CA: every certificate is issued again
    elif missing and not (out / "ca.key").is_file():
        raise ValueError(f"tls.certs_dir: {out} has ca.crt but no ca.key to issue "
                         f"{', '.join(missing)}; expected the folder written by agora certs "
                         f"(or copy those certificates there)")
    made += [issue(out, n, tuple(hosts), days) for n in missing]
    return made


def server_credentials(certs: Path, name: str):
    """Mutual-TLS gRPC server credentials for component ``name``: clients must present a
    certificate signed by the CA."""
    import grpc
    return grpc.ssl_server_credentials(
        [((certs / f"{name}.key").read_bytes(), (certs / f"{name}.crt").read_bytes())],
        root_certificates=(certs / "ca.crt").read_bytes(), require_client_auth=True)


def channel_credentials(certs: Path, name: str):
    """gRPC channel credentials presenting ``name``'s certificate and trusting the CA."""
    import grpc
    return grpc.ssl_channel_credentials(root_certificates=(certs / "ca.crt").read_bytes(),
                                        private_key=(certs / f"{name}.key").read_bytes(),
                                        certificate_chain=(certs / f"{name}.crt").read_bytes())
