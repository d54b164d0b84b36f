"""Mutual TLS of a coordinator group: the ``tls`` section of its YAML
(``coordinator/config.py``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """Mutual TLS of a coordinator group (the ``tls`` section of the YAML).

    With ``enabled``, replica i serves gRPC with ``cert``/``key`` and requires every caller
    (clients and the other replicas) to present a certificate signed by ``ca``; it presents
    the same certificate on its links to the other replicas, and checks theirs against
    ``ca``. Clients (``CoordinatorClient``, ``agora status``/``schedule``) present
    ``client_cert``/``client_key``. Paths are relative to the config file's folder; ``cert``
    and ``key`` may contain ``{replica}`` (the replica's index). Each path left out defaults
    to the layout ``agora certs --out CERTS_DIR`` writes (``deploy/certs.py``):
    ``CERTS_DIR/ca.crt``, ``CERTS_DIR/replica-{replica}.crt|key``, ``CERTS_DIR/client.crt|key``.
    Without ``enabled`` (or without the section) every link is plaintext, as before."""

    enabled: bool = False
    certs_dir: str | None = None
    """Folder written by ``agora certs``: the default of every path below."""
    ca: str | None = None
    """The CA certificate every peer's certificate must be signed by."""
    cert: str | None = None
    """Replica certificate (PEM); ``{replica}`` is replaced by the replica's index."""
    key: str | None = None
    """Replica private key (PEM); ``{replica}`` as in ``cert``."""
    client_cert: str | None = None
    """Certificate clients of the group present."""
    client_key: str | None = None
    server_name: str | None = None
    """Name checked against the replicas' certificates instead of the host of their address
    (gRPC's ``ssl_target_name_override``); None: the address's host."""

    _DEFAULTS = {"ca": "ca.crt", "cert": "replica-{replica}.crt",
                 "key": "replica-{replica}.key", "client_cert": "client.crt",
                 "client_key": "client.key"}

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        for name in self._DEFAULTS:
            if getattr(self, name) is None and self.certs_dir is None:
                raise ValueError(f"tls.{name}: missing; expected a path, or tls.certs_dir "
                                 f"(the folder `agora certs --out` wrote)")

    def file(self, name: str, replica: int | None = None) -> str:
        """The configured path of ``name`` (ca, cert, key, client_cert, client_key), with
        ``{replica}`` filled in, not yet relative to the config file."""
        value = getattr(self, name)
        if value is None:
            value = str(Path(self.certs_dir) / self._DEFAULTS[name])
        return value.replace("{replica}", str(replica)) if replica is not None else value



def read_tls(v: Any, bad) -> TlsConfig | None:
    """The ``tls`` section of a coordinator YAML (None: no section); ``bad(field, problem,
    expected)`` makes the error that names the file and line."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise bad("tls", f"got {v!r}", "a mapping with enabled, certs_dir, ca, cert, key, ...")
    known = {f.name for f in fields(TlsConfig)}
    kw: dict[str, Any] = {}
    for k, x in v.items():
        if k not in known:
            raise bad(f"tls.{k}", "unknown field", f"one of {', '.join(sorted(known))}")
        if k == "enabled":
            if not isinstance(x, bool):
                raise bad("tls.enabled", f"got {x!r}", "true or false")
        elif x is not None and (not isinstance(x, str) or not x):
            raise bad(f"tls.{k}", f"got {x!r}", "a non-empty path string, or null")
        kw[k] = x
    try:
        return TlsConfig(**kw)
    except ValueError as e:
        field, _, problem = str(e).partition(": ")
        raise bad(field, problem or str(e)) from None
