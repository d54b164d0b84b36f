"""Prometheus metrics of an Agora process (site agents, coordinator replicas), on one
per-process registry, served over HTTP in the Prometheus text format.

    from agora.agents import metrics
    port = metrics.start_metrics_server("127.0.0.1", 0)     # 0: an ephemeral port
    metrics.COMMITS.labels(replica="0").inc()
    s = metrics.scrape(f"http://127.0.0.1:{port}/metrics")
    s['agora_commits_total{replica="0"}']                     # 1.0
    metrics.total(s, "agora_commits_total", replica=0)       # the sum over matching samples

Metrics (all on ``REGISTRY``; counters are exposed with the ``_total`` suffix):

- ``agora_decisions_total`` (counter; site): decisions a site agent took;
- ``agora_decision_latency_seconds`` (histogram; site; buckets 1 ms .. 5 s,
  ``LATENCY_BUCKETS``): time to take one decision;
- ``agora_commits_total`` (counter; replica): PBFT sequence numbers a replica executed;
- ``agora_view_changes_total`` (counter; replica): new views a replica installed;
- ``agora_messages_sent_total`` (counter; site): messages a site agent sent to its peers;
- ``agora_messages_suppressed_total`` (counter; site): messages its trigger held back;
- ``agora_agent_wire_bytes_total`` (counter; site, direction) and
  ``agora_replica_wire_bytes_total`` (counter; replica, direction): bytes on the wire of a
  site agent or a replica, direction "in" or "out" (``wire_bytes`` binds one);
- ``agora_federated_rounds_total`` (counter): federated rounds completed;
- ``agora_requests_total`` (counter; replica, rpc, outcome): client requests a replica
  handled, outcome ok, refused or timeout;
- ``agora_view`` (gauge; replica): the replica's current view.

The registry is separate from ``prometheus_client``'s global one, so nothing else a library
registers there (process and platform collectors) is served; counters carry no
``_created`` series and no label is ever empty. The HTTP endpoint is plain HTTP
without authentication: bind it to loopback or a management network.
"""

from __future__ import annotations

import re
import socket
import threading
import urllib.request
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, make_wsgi_app)
from prometheus_client.parser import text_string_to_metric_families

from agora.agents.loopback import LOOPBACK, loopback_host

disable_created_metrics()      # no <name>_created timestamp series beside every counter
REGISTRY = CollectorRegistry(auto_describe=True)
"""The one registry of this process; ``start_metrics_server`` serves it."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Histogram buckets in seconds: 1 ms to 5 s, about 2.5x apart (+Inf is added)."""

DECISIONS = Counter("agora_decisions", "Decisions taken by a site agent.", ["site"],
                    registry=REGISTRY)
DECISION_LATENCY = Histogram("agora_decision_latency_seconds",
                             "Seconds a site agent took for one decision.", ["site"],
                             buckets=LATENCY_BUCKETS, registry=REGISTRY)
COMMITS = Counter("agora_commits", "PBFT sequence numbers executed by a coordinator replica "
                  "(state transfer included).", ["replica"], registry=REGISTRY)
VIEW_CHANGES = Counter("agora_view_changes", "New views installed by a coordinator replica.",
                       ["replica"], registry=REGISTRY)
MESSAGES_SENT = Counter("agora_messages_sent", "Messages a site agent sent to its peers.",
                        ["site"], registry=REGISTRY)
MESSAGES_SUPPRESSED = Counter("agora_messages_suppressed",
                              "Messages a site agent's trigger decided not to send.", ["site"],
                              registry=REGISTRY)
AGENT_WIRE_BYTES = Counter("agora_agent_wire_bytes", "Bytes a site agent sent (direction=out) "
                           "or received (in) on the wire.", ["site", "direction"],
                           registry=REGISTRY)
REPLICA_WIRE_BYTES = Counter("agora_replica_wire_bytes", "Bytes a coordinator replica sent "
                             "(direction=out) or received (in) on the wire.",
                             ["replica", "direction"], registry=REGISTRY)
FEDERATED_ROUNDS = Counter("agora_federated_rounds", "Federated learning rounds completed.",
                           registry=REGISTRY)
REQUESTS = Counter("agora_requests", "Client requests handled by a coordinator replica, by "
                   "RPC and outcome (ok, refused, timeout).", ["replica", "rpc", "outcome"],
                   registry=REGISTRY)
VIEW = Gauge("agora_view", "The current PBFT view of a coordinator replica.", ["replica"],
             registry=REGISTRY)


def wire_bytes(direction: str, *, site: str | None = None, replica: int | str | None = None):
    """The wire-bytes child for ``direction`` ('in' or 'out') of one site agent
    (``agora_agent_wire_bytes_total``) or one replica (``agora_replica_wire_bytes_total``);
    bind it once, then ``.inc(n)``."""
    if direction not in ("in", "out"):
        raise ValueError(f"direction: got {direction!r}; expected 'in' or 'out'")
    if (site is None) == (replica is None):
        raise ValueError("wire_bytes: give exactly one of site= and replica=")
    if site is not None:
        return AGENT_WIRE_BYTES.labels(site=str(site), direction=direction)
    return REPLICA_WIRE_BYTES.labels(replica=str(replica), direction=direction)


_servers: dict[int, object] = {}
_servers_lock = threading.Lock()

IDLE_S = 10.0
"""Seconds a metrics connection may send nothing before it is closed (each holds a thread:
800 idle connections held 806 threads of a replica, for good -- a probe)."""


class _Quiet(WSGIRequestHandler):
    timeout = IDLE_S

    def log_message(self, format, *args) -> None:
        pass


def _loopback_only(app):
    """``app`` answering only requests addressed to a loopback name (a page elsewhere that
    rebinds its own name to 127.0.0.1 read the counters -- a probe); one without a Host
    header (HTTP/1.0) is no browser's."""
    def guarded(environ, start_response):
        host = environ.get("HTTP_HOST", "")
        if host and not loopback_host(host):
            start_response("421 Misdirected Request", [("Content-Type", "text/plain")])
            return [b"these metrics answer on their loopback address only\n"]
        return app(environ, start_response)
    return guarded


def _serve(host: str, port: int):
    """prometheus_client's threaded WSGI server, with idle connections timed out and, bound
    to loopback, loopback names only."""
    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    app = make_wsgi_app(REGISTRY)
    if host in LOOPBACK:
        app = _loopback_only(app)
    server = make_server(host, port, app, Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True,
                     name=f"agora-metrics-{server.server_address[1]}").start()
    return server


def start_metrics_server(host: str = "127.0.0.1", port: int = 0) -> int:
    """Serve ``REGISTRY`` at ``http://host:port/metrics`` (any path answers) from a daemon
    thread; ``port`` 0 picks a free port. Returns the port actually bound."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"metrics port: got {port!r}; expected 0..65535 (0: any free port)")
    try:
        server = _serve(host, port)
    except OSError as e:
        raise OSError(f"metrics: cannot listen on {host}:{port} ({e.strerror or e})") from None
    bound = server.server_address[1]
    with _servers_lock:
        _servers[bound] = server
    return bound


def stop_metrics_server(port: int | None = None) -> None:
    """Shut down the server ``start_metrics_server`` started on ``port`` (None: every one
    this process started). The metrics themselves keep counting."""
    with _servers_lock:
        if port is None:
            servers = list(_servers.values())
            _servers.clear()
        else:
            one = _servers.pop(port, None)
            servers = [one] if one is not None else []
    for s in servers:
        s.shutdown()
        s.server_close()


def sample_key(name: str, labels: dict[str, str]) -> str:
    """``name{a="x",b="y"}`` with labels sorted by name, or ``name`` without labels: the keys
    of ``scrape``'s dictionary."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def parse(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, keyed as ``sample_key`` writes them
    (other exporters may add ``<name>_created`` series; Agora's do not)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[sample_key(s.name, s.labels)] = float(s.value)
    return out


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """GET ``url`` (e.g. ``http://127.0.0.1:9100/metrics``) and parse it (``parse``)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return parse(r.read().decode("utf-8"))


_KEY = re.compile(r"^([^{]+)(?:\{(.*)\})?$")


def total(samples: dict[str, float], name: str, **labels: str | int) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0.0 if none), e.g.
    ``total(s, "agora_commits_total", replica=2)``."""
    want = {k: str(v) for k, v in labels.items()}
    out = 0.0
    for key, value in samples.items():
        m = _KEY.match(key)
        if m is None or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == _escape(v) for k, v in want.items()):
            out += value
    return out
