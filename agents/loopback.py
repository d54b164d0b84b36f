"""Loopback names, for the HTTP endpoints that answer only requests addressed to one when
they listen on loopback (the web view, the metrics): a page elsewhere that rebinds its own
name to 127.0.0.1 (DNS rebinding) sends its own name in ``Host`` and is refused."""

from __future__ import annotations

LOOPBACK = ("127.0.0.1", "localhost", "::1")
"""The addresses an endpoint listens on when it is loopback-bound."""
_NAMES = frozenset(h for name in LOOPBACK for h in (name, f"[{name}]"))


def loopback_host(host: str) -> bool:
    """Whether the ``Host`` header ``host`` (name or [address], then an optional :port)
    names a loopback address, in any case."""
    name = host if host.endswith("]") else host.rsplit(":", 1)[0]
    return name.lower() in _NAMES
