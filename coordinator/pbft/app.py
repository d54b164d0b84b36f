"""The replicated application: what PBFT orders requests for.

``execute`` must be deterministic (same state, same arguments, same result and next state on
every replica); ``query`` must not change state and must answer what ``execute`` of the same
op would (read-only requests fall back to the ordered path when replicas disagree).
"""

from __future__ import annotations

import json
from typing import Protocol


class App(Protocol):
    def execute(self, client_id: str, op: bytes, seq: int) -> bytes:
        """Apply ``op`` of ``client_id``, ordered at sequence number ``seq``; its result."""

    def query(self, client_id: str, op: bytes) -> bytes:
        """Answer read-only ``op`` from the current state, changing nothing."""

    def snapshot(self) -> bytes:
        """The whole state, deterministically encoded."""

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with one ``snapshot`` returned."""

    # Optional (``auth.ClientKeys.attach``): an app may govern some clients' keys by its
    # ordered commands. ``governs(client_id)``: whether it may; ``member_key(client_id)``:
    # the key its state gives the client now (b"": removed; None: the key file decides).


class KVApp:
    """A tiny deterministic key-value store with counters, for tests and the simulator.

    Ops (UTF-8): ``set K V`` -> ``ok``; ``get K`` -> the value or empty; ``add K N`` -> the
    new integer value; ``noop`` -> ``ok``. Anything else -> ``error``."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def execute(self, client_id: str, op: bytes, seq: int) -> bytes:
        parts = op.decode("utf-8", "replace").split(" ")
        if parts[0] == "set" and len(parts) == 3:
            self.data[parts[1]] = parts[2]
            return b"ok"
        if parts[0] == "add" and len(parts) == 3 and _is_int(parts[2]):
            value = int(self.data.get(parts[1], "0")) if _is_int(self.data.get(parts[1], "0")) else 0
            self.data[parts[1]] = str(value + int(parts[2]))
            return self.data[parts[1]].encode()
        if parts[0] == "noop":
            return b"ok"
        return self.query(client_id, op)

    def query(self, client_id: str, op: bytes) -> bytes:
        parts = op.decode("utf-8", "replace").split(" ")
        if parts[0] == "get" and len(parts) == 2:
            return self.data.get(parts[1], "").encode()
        return b"error"

    def snapshot(self) -> bytes:
        return json.dumps(self.data, sort_keys=True, separators=(",", ":")).encode()

    def restore(self, snapshot: bytes) -> None:
        self.data = {str(k): str(v) for k, v in json.loads(snapshot or b"{}").items()}


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit() and len(text) < 30
