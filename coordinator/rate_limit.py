"""Per-client admission rate at one replica: a token bucket per client id (and, with the
same class, per peer replica: ``peer_envelopes_per_s``).

Checked after a request's signature verifies (so nobody can spend another client's budget
with forged requests) and before it is ordered; a refusal costs the replica a dictionary
lookup. Not replicated state: each replica admits on its own, as it does for every other
pre-ordering check, and a correct client's requests reach f+1 correct replicas anyway.
"""

from __future__ import annotations

import time


class ClientRate:
    """At most ``per_s`` requests a second per client, in bursts of up to ``burst``
    (default: one second's worth). ``clock``: seconds, monotonic (tests pass their own)."""

    def __init__(self, per_s: float, burst: float | None = None, clock=time.monotonic,
                 max_clients: int = 100_000) -> None:
        if per_s <= 0:
            raise ValueError(f"per_s: {per_s}; expected > 0")
        self.per_s = per_s
        self.burst = max(1.0, per_s if burst is None else burst)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}   # client -> (tokens, at)

    def take(self, client_id: str) -> bool:
        """True, and one token spent, when ``client_id`` may send a request now."""
        return self.take_many(client_id, 1) == 1

    def take_many(self, client_id: str, n: int) -> int:
        """How many of ``n`` items ``client_id`` may send now (their tokens spent)."""
        now = self.clock()
        tokens, at = self._buckets.get(client_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_s)
        k = min(n, int(tokens + 1e-9))      # (refills are floats: 9.999... is 10)
        if k <= 0:
            self._buckets[client_id] = (tokens, now)
            return 0
        if client_id not in self._buckets and len(self._buckets) >= self.max_clients:
            # only clients of the key file get here; bound the table anyway
            self._buckets.clear()
        self._buckets[client_id] = (tokens - k, now)
        return k
