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


class ReadCost:
    """What each client's read-only queries cost one replica, against a budget: ``per_s``
    seconds of query time a second, in bursts of up to ``burst_s`` (default: one second's
    worth). A query is charged after it ran (its cost is known only then), so a client may
    go into debt by one query; while in debt its queries are refused. ``clock``: seconds,
    monotonic."""

    def __init__(self, per_s: float, burst_s: float | None = None, clock=time.monotonic,
                 max_clients: int = 100_000) -> None:
        if per_s <= 0:
            raise ValueError(f"per_s: {per_s}; expected > 0")
        self.per_s, self.clock = per_s, clock
        self.burst_s = per_s if burst_s is None else burst_s
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}   # client -> (seconds left, at)

    def _left(self, client_id: str) -> float:
        now = self.clock()
        left, at = self._buckets.get(client_id, (self.burst_s, now))
        return min(self.burst_s, left + (now - at) * self.per_s)

    def allowed(self, client_id: str) -> bool:
        """Whether ``client_id`` may have a query answered now (it is not in debt)."""
        return self._left(client_id) > 0

    def charge(self, client_id: str, seconds: float) -> None:
        """``client_id``'s query took ``seconds`` of this replica's time."""
        left = self._left(client_id) - seconds
        if client_id not in self._buckets and len(self._buckets) >= self.max_clients:
            self._buckets.clear()       # only clients of the key file get here
        self._buckets[client_id] = (left, self.clock())
