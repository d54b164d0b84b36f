"""A coordinator group on this machine: n ``agora coordinator`` processes on loopback ports,
with their key file and configuration written to one folder. The gRPC tests and the
throughput benchmark both start their replicas this way.

    g = LocalGroup(tmp, n=4, clients=["site:a", "operator"], cluster="cluster.yaml",
                   batch_size=16)
    with g.serving():        # started and serving; stopped after the block
        ...

Keys are random and the key file is private (0600); ``key_seed`` derives them from a seed
instead (tests and benchmarks only: anyone with the seed has the keys); ``keep_keys`` reuses
the key file already in the folder (a resumed service).

``config`` keywords are the coordinator YAML's fields (``coordinator/config.py``); the
replica addresses, ``f`` (= (n − 1) // 3), ``data_dir`` and ``keys_file`` are filled in.

``host`` is the address the replicas bind and are dialled at (default loopback; a
non-loopback address lets agents on other nodes reach them). ``metrics=True`` gives every replica a Prometheus endpoint on an ephemeral port
(``metrics_port: 0``): ``g.metrics_port(i)`` waits for the port the replica wrote,
``g.scrape(i)`` reads its metrics (``agents/metrics.scrape``). ``tls_dir=DIR`` writes a CA
and certificates with ``deploy/certs.ensure_all`` into DIR where missing (``replica-<i>``,
``client``, and ``site-<s>`` for every client ``site:<s>`` or ``site:<s>/<k>``) and turns
on mutual TLS
(``tls: {enabled: true, certs_dir: DIR}``): the replicas, ``g.client(...)`` and
``g.channel(i)`` all use it.
"""

from __future__ import annotations

import contextlib
import errno
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora import IMPORT_ROOT as ROOT  # the replicas run in it: they import this same Agora
from agora.agents.process import bound_to_parent
from agora.coordinator.client import CoordinatorClient
from agora.coordinator.config import load_config
from agora.coordinator.pbft.keys import generate_keys
from agora.coordinator.private_file import write_private
from agora.coordinator.transport import channel_options, client_channel_credentials


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports of ``host`` free right now (all bound at once, then released),
    drawn below the kernel's ephemeral range where it leaves room: a port the kernel hands
    out to any connection or ``bind(0)`` could be taken between this pick and the replica's
    bind (a review: beside a second test worker, whose connections and Ray processes draw
    from that range); a draw there meets only other explicit picks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # the name once (a misspelt one fails here, not after a lookup per port tried)
    addr = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)[0][4][0]
    low = _ephemeral_low()
    rng = random.SystemRandom()
    socks: list[socket.socket] = []
    try:
        for _ in range(64 * n):
            if len(socks) == n or low - LOW_PORT < 1000:
                break
            s = socket.socket(family)
            try:
                s.bind((addr, rng.randrange(LOW_PORT, low)))
            except OSError as e:
                s.close()
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
            socks.append(s)
        while len(socks) < n:                # no room below the range: the kernel's pick
            s = socket.socket(family)
            socks.append(s)
            s.bind((addr, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


LOW_PORT = 24000
"""The lowest port ``free_ports`` draws: under it, Ray's worker ports (10002-19999) and a
band (20000-23999) left to the fixed ports of benchmarks and their smoke tests."""


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux: 32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class LocalGroup:
    def __init__(self, tmp: Path, *, n: int, clients: list[str], cluster: str,
                 key_seed: bytes | None = None, keep_keys: bool = False,
                 tls_dir: Path | str | None = None, metrics: bool = False,
                 host: str = "127.0.0.1", tls_sites: list[str] | None = None,
                 **config) -> None:
        self.tmp, self.n = tmp, n
        self.keys = self._keys(tmp / "keys.yaml", n, clients, key_seed, keep_keys)
        write_private(tmp / "keys.yaml", yaml.safe_dump(self.keys.to_dict()))
        cfg = {"replicas": [f"{_bracket(host)}:{p}" for p in free_ports(n, host)],
               "f": (n - 1) // 3,
               "data_dir": "data", "keys_file": "keys.yaml", "cluster": cluster}
        if metrics:
            cfg["metrics_port"] = 0
        self.tls_dir = None
        if tls_dir is not None:
            from agora.deploy.certs import ensure_all
            self.tls_dir = Path(tls_dir).resolve()
            sites = tls_sites if tls_sites is not None else list(dict.fromkeys(
                c.split(":", 1)[1].split("/")[0] for c in clients if c.startswith("site:")))
            ensure_all(self.tls_dir, sites, replicas=n,
                       hosts=tuple(dict.fromkeys(("localhost", "127.0.0.1", host))))
            cfg["tls"] = {"enabled": True, "certs_dir": str(self.tls_dir)}
        cfg.update(config)
        (tmp / "coordinator.yaml").write_text(yaml.safe_dump(cfg))
        self.config = load_config(tmp / "coordinator.yaml")
        self.procs: dict[int, subprocess.Popen] = {}
        self._log_from: dict[int, int] = {}
        """replica -> where its log stood when it was last started"""

    @staticmethod
    def _keys(path: Path, n: int, clients: list[str], seed: bytes | None, keep: bool):
        """Random keys (``seed``: derived from it, for tests and benchmarks only); with
        ``keep``, the key file already at ``path`` when it holds this group and these clients
        (a resumed service keeps its keys: the replicas' logs are signed with them)."""
        if keep and path.is_file():
            from agora.coordinator.server import load_keys

            old = load_keys(path)
            want = set(clients) | {f"replica:{i}" for i in range(n)}
            if old.n == n and set(old.client_signing) == want:
                return old
        return generate_keys(n, clients, seed=seed)

    def log(self, i: int) -> Path:
        return self.tmp / f"replica-{i}.log"

    def start(self, i: int, byzantine: str | None = None) -> None:
        """Start replica ``i``; ``byzantine``: a fault-harness behaviour (fault tests)."""
        self.config.metrics_port_file(i).unlink(missing_ok=True)   # a killed run's
        extra = ["--byzantine", byzantine] if byzantine else []
        with open(self.log(i), "ab") as log:  # bound: a killed parent leaves no replica
            self._log_from[i] = log.tell()
            self.procs[i] = subprocess.Popen(bound_to_parent(
                [sys.executable, "-m", "agora.deploy.cli_coordinator", "coordinator",
                 "--config", str(self.tmp / "coordinator.yaml"), "--replica", str(i),
                 "--log-level", "WARNING", *extra]),
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def start_all(self, byzantine: dict[int, str] | None = None) -> None:
        for i in range(self.n):
            self.start(i, (byzantine or {}).get(i))

    @contextlib.contextmanager
    def serving(self, byzantine: dict[int, str] | None = None):
        """Every replica started and serving for the ``with`` block; all stopped after it
        (also when starting failed). A replica that could not listen (a port picked free
        was taken before it bound: another process picking ports at once) is tried twice
        more, the group on fresh ports, as ``agora up`` does."""
        try:
            for attempt in range(3):
                try:
                    self.start_all(byzantine)
                    for i in range(self.n):
                        self.wait_serving(i)
                    break
                except AssertionError:
                    if attempt == 2 or not self.could_not_listen():
                        raise
                    self.stop()
                    self._fresh_ports()
            yield self
        finally:
            self.stop()

    def could_not_listen(self) -> bool:
        """Did a replica say, since it was last started, that it could not listen (its
        port taken: what fresh ports mend, unlike a damaged log or a bad config)?"""
        return any("cannot listen" in self._since_start(i) for i in range(self.n))

    def _since_start(self, i: int) -> str:
        """What replica ``i`` logged since it was last started (all of it if the log is
        shorter now than it was then)."""
        with open(self.log(i), "rb") as f:
            data = f.read()
        start = self._log_from.get(i, 0)
        return data[start if start <= len(data) else 0:].decode(errors="replace")

    def _fresh_ports(self) -> None:
        """The group's replicas on newly picked ports, in its config file too."""
        path = self.tmp / "coordinator.yaml"
        cfg = yaml.safe_load(path.read_text())
        hosts = [a.rsplit(":", 1)[0] for a in cfg["replicas"]]
        ports = free_ports(len(hosts), hosts[0].strip("[]"))
        cfg["replicas"] = [f"{h}:{p}" for h, p in zip(hosts, ports)]
        path.write_text(yaml.safe_dump(cfg))
        self.config = load_config(path)

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM every live replica (SIGCONT first, in case one was paused), then SIGKILL
        whatever has not exited after 10 s."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    def client(self, cid: str, keys=None, timeout_s: float = 15.0,
               **kw) -> CoordinatorClient:
        """A client of the group (TLS as configured); ``kw``: CoordinatorClient's
        ``credentials`` / ``tls_identity``."""
        return CoordinatorClient(self.config, keys or self.keys, cid, timeout_s=timeout_s,
                                 **kw)

    def status_request(self, client_id: str = "operator", replica: int = 0):
        """A GetStatus request signed by ``client_id`` for replica ``replica``
        (``coordinator/read_auth.py``)."""
        from agora.coordinator.read_auth import sign_read
        from nacl.signing import SigningKey
        from agora.protos.agora.v1 import coordinator_pb2 as pb

        return pb.StatusRequest(auth=sign_read(SigningKey(self.keys.client_signing[client_id]),
                                               client_id, "GetStatus", replica=replica))

    def channel(self, i: int) -> grpc.Channel:
        """A blocking channel to replica ``i``: mutual TLS with the ``client`` certificate
        when the group has TLS, plaintext otherwise."""
        creds = client_channel_credentials(self.config)
        if creds is None:
            return grpc.insecure_channel(self.config.replicas[i])
        return grpc.secure_channel(self.config.replicas[i], creds,
                                   options=channel_options(self.config))

    def metrics_port(self, i: int, timeout: float = 30.0) -> int:
        """The metrics port replica ``i`` bound (it writes it once listening)."""
        path = self.config.metrics_port_file(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = path.read_text(encoding="utf-8").strip()
                if text:
                    return int(text)
            except FileNotFoundError:
                pass
            if i in self.procs and self.procs[i].poll() is not None:
                raise AssertionError(self.log(i).read_text())
            time.sleep(0.1)
        raise AssertionError(f"replica {i} wrote no metrics port to {path}")

    def metrics_url(self, i: int) -> str:
        return f"http://{self.config.metrics_host_of(i)}:{self.metrics_port(i)}/metrics"

    def scrape(self, i: int) -> dict[str, float]:
        """Replica ``i``'s metrics (``agents.metrics.scrape``)."""
        from agora.agents.metrics import scrape
        return scrape(self.metrics_url(i))

    def wait_serving(self, i: int, timeout: float = 60.0) -> None:
        """Until replica ``i``'s process says it serves (a line of its log naming its pid,
        since it was started) and its health service says SERVING; fails with its log if the
        process exits or ``timeout`` passes. Both: another process on its address answered
        the health check for it while it failed to listen (a review)."""
        deadline = time.monotonic() + timeout
        said = f"replica {i} serving on "
        pid = f" as pid {self.procs[i].pid} "
        while time.monotonic() < deadline:
            if self.procs[i].poll() is not None:
                raise AssertionError(self.log(i).read_text())
            if not any(said in line and pid in line for line in self._since_start(i)
                       .splitlines()):
                time.sleep(0.1)
                continue
            with self.channel(i) as ch:
                try:
                    r = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(service="agora.v1.Coordinator"),
                        timeout=1.0)
                    if r.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
            time.sleep(0.2)
        raise AssertionError(f"replica {i} did not start serving")
