"""Per-client budgets at one replica: a token bucket per client id -- requests a second
(``client_requests_per_s``), and, with the same class, PBFT messages a second per peer
replica (``peer_envelopes_per_s``) and seconds of query time a second per reader
(``client_read_seconds_per_s``: charged after each query, ``charge``).

Checked after a request's signature verifies (so nobody can spend another client's budget
with forged requests) and before it is ordered; a refusal costs the replica a dictionary
lookup. Not replicated state: each replica admits on its own, as it does for every other
pre-ordering check, and a correct client's requests reach f+1 correct replicas anyway.
"""

from __future__ import annotations

import time


class ClientRate:
    """At most ``per_s`` a second per client, in bursts of up to ``burst`` (default: one
    second's worth, at least 1). ``take_many`` spends tokens before the fact (requests);
    ``charge`` spends an amount known only after the fact (the seconds a query took), which
    may put the client into debt -- ``allowed`` is False until it is refilled. ``clock``:
    seconds, monotonic (tests pass their own)."""

    def __init__(self, per_s: float, burst: float | None = None, clock=time.monotonic,
                 max_clients: int = 100_000) -> None:
        if per_s <= 0:
            raise ValueError(f"per_s: {per_s}; expected > 0")
        self.per_s = per_s
        self.burst = max(1.0, per_s) if burst is None else burst
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}   # client -> (tokens, at)

    def _tokens(self, client_id: str) -> tuple[float, float]:
        """(tokens ``client_id`` holds now, refilled; now)."""
        now = self.clock()
        tokens, at = self._buckets.get(client_id, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.per_s), now

    def _keep(self, client_id: str, tokens: float, now: float) -> None:
        if client_id not in self._buckets and len(self._buckets) >= self.max_clients:
            # only clients of the key file get here; bound the table anyway
            self._buckets.clear()
        self._buckets[client_id] = (tokens, now)

    def take(self, client_id: str) -> bool:
        """True, and one token spent, when ``client_id`` may send a request now."""
        return self.take_many(client_id, 1) == 1

    def take_many(self, client_id: str, n: int) -> int:
        """How many of ``n`` items ``client_id`` may send now (their tokens spent)."""
        tokens, now = self._tokens(client_id)
        k = max(0, min(n, int(tokens + 1e-9)))      # (refills are floats: 9.999... is 10)
        self._keep(client_id, tokens - k, now)
        return k

    def allowed(self, client_id: str) -> bool:
        """Whether ``client_id`` holds any tokens now (it is not in debt: ``charge``)."""
        return self._tokens(client_id)[0] > 0

    def charge(self, client_id: str, amount: float) -> None:
        """``client_id`` spent ``amount`` (e.g. the seconds its query took), debt allowed."""
        tokens, now = self._tokens(client_id)
        self._keep(client_id, tokens - amount, now)
