"""A site's own keys: made on the site's node, kept there in private files (mode 0600), never
sent anywhere. Only public halves travel: the signing key's public key to the operator, who
admits the site by it with an ordered command (``agora site admit``;
``coordinator/membership.py``), and, with mutual TLS, a certificate request for the node's
TLS key, which the operator's CA signs (``NodeIdentity``).

    key = load_or_create(Path("/var/lib/agora/site-east.key"))    # SigningKey
    key.verify_key.encode().hex()                                  # what the operator admits
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from agora.agents.process import python_module
from agora.coordinator.private_file import check_private, write_private

HEADER = b"agora site key v1\n"


def is_site_key(path: str | Path) -> bool:
    """Whether ``path`` is a site key file (as ``load_or_create`` writes)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(HEADER)) == HEADER
    except OSError:
        return False


def load_or_create(path: str | Path) -> SigningKey:
    """The key in ``path``, or a new random one written there (0600, the folder made 0700
    when missing). Raises ValueError naming the file when it holds something else, or when
    others may read it (a key that may have leaked is not used: make a new one)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        # a dangling link: os.link below finds the name taken, and the retry found it
        # missing again, for good (a probe: RecursionError, 7,900 lines of traceback)
        raise ValueError(f"{path}: a symbolic link to {os.readlink(path)}, which does not "
                         f"exist; expected the path of a site key file (remove the link to "
                         f"make a new key there)")
    if path.exists():
        if not path.is_file():      # a probe: a folder was said to be a key that had leaked
            raise ValueError(f"{path}: {'a folder' if path.is_dir() else 'not a regular file'}"
                             f"; expected the path of a site key file (made there if missing)")
        raw = path.read_bytes()         # unreadable: the OSError names it
        if not raw.startswith(HEADER) or len(raw) != len(HEADER) + 64:
            # told before its mode: a probe's ordinary file was "a key that may have leaked"
            raise ValueError(f"{path}: not an Agora site key (expected the {len(HEADER) + 64}"
                             f"-byte file load_or_create writes); it was left as it is: "
                             f"choose another path, or move it aside to make a new key there")
        _check_private(path, "a site key")
        try:
            return SigningKey(bytes.fromhex(raw[len(HEADER):].decode("ascii")))
        except ValueError:
            raise ValueError(f"{path}: the key is not hex; move the file aside to make a "
                             f"new one") from None
    _private_folder(path.parent)
    key = SigningKey.generate()
    try:
        tmp = write_private(path.with_name(
            f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.new"),
            HEADER + bytes(key).hex().encode())
    except OSError as e:     # named by the user's path, not the temporary file's (a probe)
        raise type(e)(e.errno, e.strerror, str(path)) from None
    try:
        os.link(tmp, path)          # only if none exists: a concurrent maker's key wins, once
    except FileExistsError:
        return load_or_create(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key


def _read_private(path: Path, what: str) -> bytes:
    """The bytes of private file ``path``; ValueError when others may read it (a key that
    may have leaked is not used: make a new one)."""
    _check_private(path, what)
    return path.read_bytes()


def _check_private(path: Path, what: str) -> None:
    """ValueError when others may read private file ``path`` (``what``, for the message), or
    when another user owns it (``check_private``)."""
    check_private(path, what, "remove it, start the agent again (it makes a new key) and "
                              "admit the new key")


def _private_folder(folder: Path) -> None:
    """Make ``folder`` (0700) when missing; refuse one that others may write to (they could
    replace a key file)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = folder.stat().st_mode & 0o777
    if mode & 0o022:
        raise ValueError(f"{folder}: mode {mode:03o}; a folder of site keys must not be "
                         f"writable by others (chmod 700 it)")


# ---- the site's whole identity on its node: signing key and TLS key ----------------------

TLS_KEY, TLS_CERT = "site-{site}.tls.key", "site-{site}.tls.crt"
FITS_TTL_S = 3600.0
"""How long an answer of ``NodeIdentity._fits`` stands for the same key, CA and certificate
(each asks a child process; the operator's supervisor asks every agent every 5 s, and 64
agents' children every 5 s took both cores of a 2-core machine). An hour: a certificate is
taken only with more than a day of validity left."""
_fits_seen: dict[tuple, tuple[bool, float]] = {}


@dataclass(frozen=True)
class NodeIdentity:
    """Site ``site``'s keys, made and kept in ``key_dir`` on its own node: its Ed25519
    signing key (``site-<site>.key``) and, with mutual TLS (``ca``: the group's CA
    certificate), its TLS key (``site-<site>.tls.key``, 0600) whose certificate the
    operator's CA signs from a certificate request (``tls_request`` / ``install``): only
    public keys and the request leave the node. Plain data: Ray carries it to the node.
    What needs X.509 (the TLS key, the request, checking a certificate) runs in a short-lived
    child process (``site_tls``), so the agent's own process never loads ``cryptography``."""

    site: str
    key_dir: str
    ca: bytes | None = None

    def _path(self, pattern: str) -> Path:
        return Path(self.key_dir) / pattern.format(site=self.site)

    def signing_key(self) -> SigningKey:
        return load_or_create(self._path("site-{site}.key"))

    def public_key(self) -> bytes:
        return bytes(self.signing_key().verify_key)

    def _child(self, op: str, **fields) -> dict:
        """``coordinator.site_tls`` in a child process on this node: its JSON answer to
        ``op`` about the TLS key file (ValueError: its refusal). A child, so that the
        agent's own process never loads ``cryptography``."""
        from agora import IMPORT_ROOT

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(IMPORT_ROOT), env.get("PYTHONPATH")) if p)
        req = {"op": op, "key": str(self._path(TLS_KEY)), "site": self.site, **fields}
        r = subprocess.run(python_module("agora.coordinator.site_tls"), env=env,
                           input=json.dumps(req), capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"site {self.site}: the TLS key helper failed "
                               f"(exit {r.returncode}): {r.stderr.strip()[-2000:]}")
        out = json.loads(r.stdout)
        if "error" in out:
            raise ValueError(out["error"])
        return out

    def certificate(self) -> bytes | None:
        """The stored certificate, when it is for this node's TLS key and signed by ``ca``
        (None: TLS off, none yet, or it no longer fits: ask for one)."""
        path = self._path(TLS_CERT)
        if self.ca is None or not path.is_file():
            return None
        pem = path.read_bytes()
        return pem if self._fits_cached(pem) else None

    def _fits_cached(self, pem: bytes) -> bool:
        """``_fits``, its answer kept for ``FITS_TTL_S`` per key, CA and certificate."""
        key_path = self._path(TLS_KEY)
        seen = (str(key_path), key_path.read_bytes() if key_path.is_file() else b"",
                self.ca, pem)
        now = time.monotonic()
        hit = _fits_seen.get(seen)
        if hit is None or now - hit[1] >= FITS_TTL_S:
            if len(_fits_seen) > 64:
                _fits_seen.clear()
            hit = _fits_seen[seen] = (self._fits(pem), now)
        return hit[0]

    def _fits(self, pem: bytes) -> bool:
        """Whether ``pem`` is a certificate for this node's TLS key, signed by ``ca`` and
        valid for more than a day yet (``site_tls.fits``)."""
        return self._child("fits", ca=self.ca.decode("latin-1"),
                           cert=pem.decode("latin-1"))["fits"]

    def tls_request(self) -> bytes:
        """A certificate signing request (PEM) for this node's TLS key, the key made first
        when missing (``site_tls.request``)."""
        return self._child("request")["csr"].encode("ascii")

    def install(self, cert_pem: bytes) -> None:
        """Keep the certificate the operator's CA issued for ``tls_request``; ValueError
        when it is not for this node's key or not signed by ``ca``."""
        if not self._fits_cached(cert_pem):
            raise ValueError(f"site {self.site}: the certificate is not for this node's TLS "
                             f"key or not signed by the group's CA")
        self._path(TLS_CERT).write_bytes(cert_pem)

    def tls_pem(self) -> tuple[bytes, bytes, bytes] | None:
        """(CA, certificate, key) PEMs for gRPC, once a certificate is installed."""
        cert = self.certificate()
        if cert is None:
            return None
        return self.ca, cert, self._path(TLS_KEY).read_bytes()

    def build(self, site: str, pem: tuple[bytes, bytes, bytes] | None = None):
        """(server, channel) gRPC credentials of the site's peer links (mutual TLS), from
        ``pem`` (``tls_pem``'s answer; None: asked for now)."""
        import grpc

        ca, cert, key = pem or self.tls_pem()
        return (grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                            require_client_auth=True),
                grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                             certificate_chain=cert))
