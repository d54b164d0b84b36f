"""Configuration of a coordinator deployment: where the replicas listen, the PBFT
parameters, and the files they read. One YAML file serves every replica and every client
(``deploy/configs/coordinator-local.yaml``); ``load_config`` reads it and says which file,
which field, and what was expected when something is wrong.

``require_run`` (default false) makes the replicas refuse every job with a task that has no
``run`` (the command its instances execute): set it for a live deployment whose sites run
real processes; leave it off for simulation and replay, whose tasks only have durations.

Optional sections: ``metrics_port`` (and ``metrics_host``) turn on each replica's Prometheus
endpoint (``agents/metrics.py``); ``tls`` turns on mutual TLS for the replicas' gRPC server,
their peer links and the clients (``TlsConfig``; certificates from ``agora certs``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from agora.agents.workloads.errors import InputError
from agora.agents.workloads.yamlmarks import field_line, load_yaml
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.tls_config import TlsConfig, read_tls


@dataclass(frozen=True, kw_only=True)
class CoordinatorConfig:
    """A coordinator group of n = 3f+1 replicas."""

    replicas: tuple[str, ...]
    """gRPC address host:port of replica i, for i = 0..n-1."""
    f: int = 1
    """Byzantine replicas tolerated; len(replicas) must be 3f+1."""
    batch_size: int = 16
    """Most client requests the primary puts in one pre-prepare, >= 1."""
    batch_timeout_s: float = 0.002
    """Seconds the primary waits for a batch to fill, >= 0 (0: send at once)."""
    checkpoint_interval: int = 64
    """A checkpoint every this many sequence numbers, >= 1."""
    watermark_window: int = 256
    """Sequence numbers accepted above the stable checkpoint; a multiple of
    checkpoint_interval."""
    max_outstanding: int = 8
    """Batches the primary may have in flight, >= 1."""
    view_change_timeout_s: float = 1.0
    """Seconds a backup waits for a request to execute before it starts a view change, > 0."""
    peer_batch_max: int = 256
    """Most PBFT envelopes the transport packs into one gRPC message to a peer, >= 1."""
    request_timeout_s: float = 10.0
    """Seconds a replica's request handler waits for the request to execute, > 0."""
    round_timeout_s: float = 2.0
    """Seconds a round may wait, after its first decision, for the other expected sites;
    then this replica votes to close it (f+1 votes close it), > 0. Typical 0.5-5 s: above a
    site agent's reaction time under load, well below a task's duration."""
    round_grace_s: float = 0.0
    """Seconds a round waits for its remaining expected sites once more than half of them
    have decided; then this replica votes to close it (``round_keeper.py``), >= 0. 0 (the
    default): wait for every expected site, up to ``round_timeout_s``. Set it above the
    spread of the agents' reaction times in a healthy round, so a steadily slower site is
    not left out. Measured on one 2-core machine at 16 sites it did not lower the decision
    latency (docs/benchmarks.md): there the agents were late together, not one at a time."""
    max_request_bytes: int = 4 * 1024 * 1024
    """Largest client request (its signed envelope's bytes) a replica takes; a larger one is
    refused with RESOURCE_EXHAUSTED before it is parsed, 1 to 16 MiB (a pre-prepare carries
    its requests whole, and a message between replicas holds at most 64 MiB). 4 MiB holds
    1,000 jobs (what ``agora submit`` sends per request) many times over."""
    client_requests_per_s: float = 1000.0
    """Requests a second one client may send to one replica (a token bucket holding one
    second's worth); more are refused with RESOURCE_EXHAUSTED after the signature check and
    never ordered, > 0. A site agent sends a few a second."""
    client_read_seconds_per_s: float = 0.05
    """Seconds of this replica's time one client's queries (read-only, or ordered) may take
    a second, on average (a bucket holding one second's worth; the query that empties it is
    answered); past it the client's queries are refused with RESOURCE_EXHAUSTED until it is
    back under -- the operator's never, > 0. Charged by what each answer took, not by count:
    a site's 1,000 whole-ledger queries a second, within its request rate, stalled a group of
    four on one 2-core machine (review). A site agent reads the ledger once when it starts
    (tens of milliseconds at 10,000 instances), then watches."""
    peer_envelopes_per_s: float = 20_000.0
    """PBFT messages a second one peer replica may send this one (a token bucket holding one
    second's worth); the rest of a flood is dropped before parsing and counted
    (``service.peer_rate_limited``), > 0. Correct replicas send a few hundred to a few
    thousand a second, and at most ~5,000 at once when a lagging peer catches up; what a
    correct peer loses to the bound it sends again (retransmission)."""
    site_timeout_s: float = 10.0
    """Seconds without a heartbeat after which this replica votes a site lapsed (when the
    site runs instances or a round waits for it), > 0. Site agents heartbeat every second or
    so; a restarted agent is back well within this."""
    site_start_grace_s: float = 0.0
    """Seconds after this replica starts during which a site it has not heard from yet is
    not voted lapsed (then ``site_timeout_s`` applies as usual), >= 0. ``agora up`` sets it:
    the replicas start before Ray and the agents, and a schedule resumed with work running
    lapsed every site 10 s later -- before its agent could report what ended while the
    service stopped, which then ran again (a probe)."""
    sqlite_synchronous: str = "NORMAL"
    """SQLite ``synchronous`` of the replicas' WAL: NORMAL (the default) or FULL (or EXTRA).

    What each survives. The failure the coordinator must survive is a replica *process*
    dying (SIGKILL, OOM, a crash): with WAL, a commit under NORMAL is in the WAL file in the
    OS page cache when ``COMMIT`` returns, so a killed process loses nothing and restarts
    with every vote it sent. NORMAL skips the fsync per commit (about 10 ms on the benchmark
    machine's disk, the largest single cost of a commit), so the last commits can be lost
    only if the *machine* loses power (or its kernel crashes) before the OS writes them back.
    FULL fsyncs the WAL on every group commit and survives power loss too.

    Why NORMAL is the default. A replica that lost its last votes in a power loss may, after
    restarting, vote differently for a (view, sequence number) it already voted on: to the
    others it is then indistinguishable from one Byzantine replica, and PBFT stays safe with
    up to f of those (counted together with any other faulty replicas). So NORMAL is safe
    as long as at most f replicas can lose power at once: replicas on machines in separate
    power/failure domains, which is what a deployment meant to tolerate f faults needs
    anyway. Choose FULL when more than f replicas share a power domain (several replicas
    per machine or rack, as in coordinator-local.yaml) and power loss must not cost safety,
    or when the f budget should be kept entirely for Byzantine faults. The host commits on a
    writer thread under FULL/EXTRA (the fsync off the event loop), inline under NORMAL;
    either way nothing is sent before what it depends on is committed.
    bench/results/coordinator.md has the throughput of both."""
    data_dir: str = "out/coordinator"
    """Folder of the replicas' SQLite databases (replica-<i>.sqlite)."""
    keys_file: str = "out/coordinator/keys.yaml"
    """Key set written by ``agora keys`` (replica and client keys, MAC keys)."""
    cluster: str = "default"
    """The fixed cluster the schedule covers: 'default' or a cluster YAML (load_cluster)."""
    require_run: bool = False
    """Refuse a job any of whose tasks has no ``run`` (``submit.no_run``, naming
    ``jobs[i].tasks[k].run``): true for a live Agora, where each instance executes a
    command; false (the default) also admits tasks without one (simulation and replay).
    Part of the replicated state machine's rules: every replica must have the same."""
    retain_finished_jobs: int = 10_000
    """Finished jobs (completed, failed, unschedulable, cancelled) the replicated schedule
    keeps, newest admitted first, with their allocations and instance changes; older ones
    are compacted away so that a long-running coordinator stays bounded
    (``coordinator/compaction.py``; a tenth more may wait for the next scan), >= 0. Every
    unfinished job is kept. 0: keep every job for good. Part of the replicated state
    machine's rules: every replica must have the same."""
    max_unfinished_jobs_per_site: int = 10_000
    """Unfinished jobs (pending, or still running an instance) one site may have: a site's
    client submitting past it is refused (``submit.site_quota``, naming the limit), so that
    an admitted site cannot grow every replica's and agent's state without bound with work
    nobody bids on (a review); the operator's submissions for a site are never refused by
    it (they count towards it). >= 0; 0: no bound. Part of the replicated state machine's
    rules: every replica must have the same."""
    metrics_port: int | tuple[int | None, ...] | None = None
    """Prometheus endpoint of each replica (``agents/metrics.py``; plain HTTP, ``/metrics``).
    None (the default): no endpoint and no counting. An integer p: replica i listens on
    p + i, except p = 0, which gives every replica an ephemeral port. A list of n entries
    (port, 0 or null): replica i's own. The port actually bound is logged and written to
    ``<data_dir>/replica-<i>.metrics-port`` (``metrics_port_file``) while the replica runs."""
    metrics_host: str | None = None
    """Interface of the metrics endpoint; None: the host of the replica's own address."""
    tls: TlsConfig | None = None
    """Mutual TLS (``TlsConfig``); None or ``enabled: false``: plaintext gRPC."""
    source: str = "<memory>"
    """The file this was read from; relative paths above are relative to its folder."""

    def __post_init__(self) -> None:
        n = len(self.replicas)
        if n != 3 * self.f + 1:
            raise ValueError(f"replicas: {n} addresses for f = {self.f}; expected 3f+1 = "
                             f"{3 * self.f + 1}")
        twice = sorted({a for a in self.replicas if self.replicas.count(a) > 1})
        if twice:     # a probe: accepted, and agora status said all was well
            raise ValueError(f"replicas: {twice[0]} is named {self.replicas.count(twice[0])} "
                             f"times; expected one address per replica")
        if self.sqlite_synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"sqlite_synchronous: got {self.sqlite_synchronous!r}; expected "
                             f"FULL, NORMAL or EXTRA")
        self.pbft()  # its own checks
        if isinstance(self.metrics_port, tuple) and len(self.metrics_port) != n:
            raise ValueError(f"metrics_port: {len(self.metrics_port)} ports for {n} replicas; "
                             f"expected one per replica (or a single base port)")

    @property
    def n(self) -> int:
        return len(self.replicas)

    def pbft(self) -> PbftConfig:
        return PbftConfig(n=self.n, checkpoint_interval=self.checkpoint_interval,
                          watermark_window=self.watermark_window, batch_size=self.batch_size,
                          batch_timeout=self.batch_timeout_s,
                          max_outstanding=self.max_outstanding,
                          batch_bytes=max(BATCH_BYTES, self.max_request_bytes),
                          view_change_timeout=self.view_change_timeout_s)

    def load_cluster(self):
        """The cluster the replicas schedule (``agents.domain.Cluster``)."""
        from agora.agents.workloads.loader import load_cluster

        spec = self.cluster
        return load_cluster(str(self.path(spec)) if spec != "default" else "default")

    def path(self, value: str) -> Path:
        """A configured path, relative to the config file's folder."""
        p = Path(value)
        if p.is_absolute() or self.source == "<memory>":
            return p
        return Path(self.source).parent / p

    def database(self, replica: int) -> Path:
        return self.path(self.data_dir) / f"replica-{replica}.sqlite"

    def metrics_port_of(self, replica: int) -> int | None:
        """Replica ``replica``'s metrics port: None (off), 0 (ephemeral) or a port."""
        p = self.metrics_port
        if p is None:
            return None
        if isinstance(p, tuple):
            return p[replica]
        return 0 if p == 0 else p + replica

    def metrics_host_of(self, replica: int) -> str:
        if self.metrics_host is not None:
            return self.metrics_host
        return self.replicas[replica].rsplit(":", 1)[0].strip("[]")

    def metrics_port_file(self, replica: int) -> Path:
        """Where a running replica writes the metrics port it bound."""
        return self.path(self.data_dir) / f"replica-{replica}.metrics-port"

    @property
    def tls_enabled(self) -> bool:
        return self.tls is not None and self.tls.enabled

    def tls_path(self, name: str, replica: int | None = None) -> Path:
        """A TLS file (``TlsConfig.file``) relative to the config file's folder."""
        return self.path(self.tls.file(name, replica))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["replicas"] = list(self.replicas)
        if isinstance(self.metrics_port, tuple):
            d["metrics_port"] = list(self.metrics_port)
        return d


BATCH_BYTES = 8 * 1024 * 1024
"""Most bytes of requests the primary puts in one pre-prepare (a larger request goes alone)."""
MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""The largest ``max_request_bytes`` allowed."""
_POSITIVE_INT = ("batch_size", "checkpoint_interval", "watermark_window",
                 "max_outstanding", "peer_batch_max", "max_request_bytes")
_NONNEG_INT = ("retain_finished_jobs", "max_unfinished_jobs_per_site")
_NONNEG_FLOAT = ("batch_timeout_s", "round_grace_s", "site_start_grace_s")
_POSITIVE_FLOAT = ("view_change_timeout_s", "request_timeout_s", "round_timeout_s",
                   "site_timeout_s", "client_requests_per_s", "peer_envelopes_per_s",
                   "client_read_seconds_per_s")
_STR = ("data_dir", "keys_file", "cluster", "sqlite_synchronous")
_BOOL = ("require_run",)


def config_from_dict(data: Any, source: str = "<memory>") -> CoordinatorConfig:
    def bad(field: str | None, problem: str, expected: str | None = None) -> InputError:
        return InputError(path=source, line=field_line(data, field), field=field,
                          problem=problem, expected=expected)

    if not isinstance(data, dict):
        raise bad(None, f"got {type(data).__name__}", "a mapping of configuration fields")
    known = {f.name for f in fields(CoordinatorConfig)} - {"source"}
    if "client_mac_keys" in data or "replica_keys" in data:
        # a probe: the keys file given as --config listed every field as a Python list
        key = "client_mac_keys" if "client_mac_keys" in data else "replica_keys"
        raise bad(key, "this is a coordinator keys file, not a configuration",
                  "an agora up configuration or a coordinator YAML (whose keys_file names "
                  "this file)")
    for k in data:
        if k not in known:
            raise bad(str(k), "unknown field", f"one of {', '.join(sorted(known))}")
    if "replicas" not in data:
        raise bad("replicas", "missing", "a list of host:port addresses, 3f+1 of them")
    reps = data["replicas"]
    if not isinstance(reps, list) or not reps:
        raise bad("replicas", f"got {reps!r}", "a non-empty list of host:port addresses")
    for i, r in enumerate(reps):
        port = r.rsplit(":", 1)[1] if isinstance(r, str) and ":" in r else ""
        # ASCII digits 1..65535: gRPC dialled 99999 as 34463, another program's port, and
        # str.isdigit takes other scripts' digits (a review)
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise bad(f"replicas[{i}]", f"got {r!r}", "an address host:port, the port "
                                                      "1..65535")
    kw: dict[str, Any] = {"replicas": tuple(reps), "source": source}
    for k, v in data.items():
        if k == "replicas":
            continue
        if k == "metrics_port":
            kw[k] = _metrics_port(v, len(reps), bad)
            continue
        if k == "metrics_host":
            if v is not None and (not isinstance(v, str) or not v):
                raise bad(k, f"got {v!r}", "a host name or address, or null")
            kw[k] = v
            continue
        if k == "tls":
            kw[k] = read_tls(v, bad)
            continue
        if k in _POSITIVE_INT + _NONNEG_INT or k == "f":
            low = 0 if k == "f" or k in _NONNEG_INT else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise bad(k, f"got {v!r}", f"an integer >= {low}")
            if k == "max_request_bytes" and v > MAX_REQUEST_BYTES:
                raise bad(k, f"got {v!r}", f"at most {MAX_REQUEST_BYTES} (16 MiB): a "
                          "pre-prepare carries requests whole and a message between "
                          "replicas holds at most 64 MiB")
        elif k in _NONNEG_FLOAT + _POSITIVE_FLOAT:
            # finite: NaN passed v < 0 (a review: a replica ran with request_timeout_s NaN,
            # every vote failing "cannot convert float NaN to integer"), and .inf hung them
            if not isinstance(v, (int, float)) or isinstance(v, bool) or \
                    not 0 <= v < float("inf") or (k in _POSITIVE_FLOAT and v == 0):
                raise bad(k, f"got {v!r}", "a finite number of seconds " +
                          ("> 0" if k in _POSITIVE_FLOAT else ">= 0"))
            v = float(v)
        elif k in _STR and (not isinstance(v, str) or not v):
            raise bad(k, f"got {v!r}", "a non-empty string")
        elif k in _BOOL and not isinstance(v, bool):
            raise bad(k, f"got {v!r}", "true or false")
        kw[k] = v
    try:
        return CoordinatorConfig(**kw)
    except ValueError as e:
        field, _, problem = str(e).partition(": ")
        raise bad(field.removeprefix("PbftConfig."), problem or str(e)) from None


def _port(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535


def _metrics_port(v: Any, n: int, bad) -> int | tuple[int | None, ...] | None:
    if v is None:
        return None
    if isinstance(v, list):
        if len(v) != n:
            raise bad("metrics_port", f"{len(v)} entries for {n} replicas",
                      "one port (or null) per replica")
        for i, p in enumerate(v):
            if p is not None and not _port(p):
                raise bad(f"metrics_port[{i}]", f"got {p!r}", "a port 0..65535 or null")
        return tuple(v)
    if not _port(v) or (v and v + n - 1 > 65535):
        raise bad("metrics_port", f"got {v!r}",
                  "null (off), 0 (ephemeral), a base port (replica i: base + i) or a list")
    return v


def load_config(path: str | Path) -> CoordinatorConfig:
    """Read a coordinator YAML file (see deploy/configs/coordinator-local.yaml)."""
    path = str(path)
    return config_from_dict(load_yaml(path), path)
