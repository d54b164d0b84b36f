"""gRPC keepalive for the long-lived streams between Agora's processes (agent to agent,
agent to replica, replica to replica).

A stream to a host that vanished without closing its connections (no FIN: a power cut, a
partition, a frozen proxy) stays "open" while TCP retransmits into the void -- minutes --
and what is written on it goes nowhere. The channels ping their peer every ``PING_S``;
a ping unanswered for ``PING_TIMEOUT_S`` closes the connection, the stream breaks, and its
owner reopens it (at the peer's new address, if it moved).

gRPC 1.85 times a keepalive ping out after ``grpc.http2.ping_timeout_ms`` (60 s by default);
``grpc.keepalive_timeout_ms`` alone no longer bounds it: measured with a frozen proxy, a
stream was found broken after 69 s with only the latter set, after 14 s with both.
"""

from __future__ import annotations

PING_S = 10.0
"""How often a channel pings its peer."""
PING_TIMEOUT_S = 5.0
"""How long a ping may go unanswered before the connection is closed."""


def client_options(ping_s: float = PING_S, timeout_s: float = PING_TIMEOUT_S
                   ) -> list[tuple[str, int]]:
    """Channel options: ping every ``ping_s``, with calls or without, data or not; close the
    connection when a ping is unanswered for ``timeout_s``."""
    return [("grpc.keepalive_time_ms", int(ping_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(timeout_s * 1000)),
            ("grpc.http2.ping_timeout_ms", int(timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0)]


SERVER_OPTIONS = [("grpc.http2.min_ping_interval_without_data_ms", 1_000),
                  ("grpc.http2.max_ping_strikes", 0),
                  ("grpc.keepalive_permit_without_calls", 1)]
"""A server's side: it takes its clients' pings, however often (a server's defaults send
GOAWAY to a client that pings more often than every 5 minutes without data)."""
