"""One coordinator replica as a process: its host (``replica_host.py``: the sans-IO PBFT
``Replica`` with the replicated schedule, ``ScheduleState``, as its application) served by a
grpc.aio server.

    server = await serve(config, index, keys)    # starts listening on config.replicas[index]
    await server.stop()

Served on the replica's address: the services of ``coordinator/service.py`` (the peer
stream, the coordinator's client RPCs, the watch stream, status, heartbeats) and
``grpc.health.v1.Health`` (SERVING for "" and every service while the replica runs).

Metrics (``metrics_port`` in the config; ``agents/metrics.py``): the replica serves
Prometheus text at ``http://<metrics host>:<port>/metrics`` and writes the port it bound to
``<data_dir>/replica-<i>.metrics-port`` (removed on a clean stop). Counted from what the PBFT
core already exposes, after every pump round (``ReplicaMetrics``): ``agora_commits_total``
(sequence numbers executed: growth of ``last_executed``, state transfer included),
``agora_view_changes_total`` (new views installed: the replica becomes active in a higher
view), ``agora_view``, ``agora_replica_wire_bytes_total`` (serialized PeerBatch bytes in and
out on the peer links) and ``agora_requests_total`` (client requests by RPC and outcome).

TLS (``tls`` in the config): the server requires a client certificate signed by the
configured CA (mutual TLS), and the peer links present the replica's own certificate
(``transport.py``). Without it, everything is plaintext.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agora.coordinator.config import CoordinatorConfig
from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.pbft.storage import CorruptLog, SqliteStorage, old_format_problem
from agora.coordinator.replica_host import ReplicaHost
from agora.coordinator.private_file import check_private
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.service import CoordinatorService, PeerService
from agora.coordinator.transport import CHANNEL_OPTIONS, server_credentials
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from agora.protos.undecodable import RefuseUndecodable

log = logging.getLogger(__name__)

SERVICES = ("agora.v1.Coordinator", "agora.v1.Peer")


def load_keys(path: Path) -> KeySet:
    """The key file at ``path``; ValueError naming it when it cannot be read or is not one
    (a regular file of YAML text holding the mapping ``agora keys`` writes), or when it is
    not private (``check_private``: others may read it, or another user owns it)."""
    from agora.agents.workloads.textfile import read_text

    expected = "the key file `agora keys` writes (YAML: n, replicas, clients, mac_keys)"
    try:
        data = yaml.safe_load(read_text(str(path), expected))
    except yaml.YAMLError:
        data = None
    except RecursionError:      # yaml's composer recurses per level (a review: a traceback)
        raise ValueError(f"{path}: nested too deeply; expected {expected}") from None
    except ValueError as e:       # cannot be read, not a regular file, not UTF-8, too big
        raise ValueError(f"{e}; write one with `agora keys`") from None
    if not isinstance(data, dict) or "n" not in data or "replicas" not in data:
        raise ValueError(f"{path}: not a key file; expected {expected}")
    try:
        keys = KeySet.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    # told after what it is: a file that is no key file is named so, whatever its mode
    check_private(path, "the group's key file (every replica's and client's secrets)",
                  "make new keys with `agora keys --force` (every replica and client then "
                  "needs the new file), or chmod 600 it if you know no one else read it")
    return keys


async def serve(config: CoordinatorConfig, index: int, keys: KeySet | None = None, *,
                storage=None, app: ScheduleState | None = None,
                grace_s: float = 0.5, byzantine: str | None = None) -> Server:
    """Start replica ``index`` of ``config`` on its address; returns the running Server.
    ``byzantine``: the fault harness's behaviour name (``coordinator.pbft.byzantine``), for
    fault tests only: the replica then misbehaves in everything it sends."""
    if not 0 <= index < config.n:
        raise ValueError(f"--replica: got {index}; expected 0..{config.n - 1}")
    if keys is None:
        keys = load_keys(config.path(config.keys_file))
    if app is None:
        app = ScheduleState.for_config(config)
    if storage is None:
        db = config.database(index)
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            storage = SqliteStorage(db, synchronous=config.sqlite_synchronous)
        except sqlite3.DatabaseError as e:
            raise ValueError(_unreadable_log(db, e)) from None
        problem = old_format_problem(storage)
        if problem is not None:
            storage.close()
            raise ValueError(problem)
    behaviour = None
    if byzantine is not None:
        from agora.coordinator.pbft.byzantine import BEHAVIOURS
        usable = sorted(set(BEHAVIOURS) - {"replay"})
        if byzantine not in usable:
            raise ValueError(f"--byzantine: {byzantine!r}; expected one of {usable} (replay "
                             f"rewrites incoming traffic, which the server does not hook)")
        behaviour = BEHAVIOURS[byzantine](seed=index)
    try:
        host = ReplicaHost(config=config, index=index, keys=keys, app=app, storage=storage,
                           byzantine=behaviour)
    except sqlite3.DatabaseError as e:      # a page deeper in the file is damaged
        raise ValueError(_unreadable_log(config.database(index), e)) from None
    except CorruptLog as e:                 # rows no replica writes
        raise ValueError(_unreadable_log(config.database(index), e, "damaged or altered"))\
            from None
    # No SO_REUSEPORT (gRPC sets it by default): a second process on a replica's port fails
    # to listen instead of being handed half of its clients (a review: two test groups on
    # one port each executed the other's requests).
    server = grpc.aio.server(options=CHANNEL_OPTIONS + [("grpc.so_reuseport", 0)],
                             interceptors=[RefuseUndecodable()])
    rpc.add_PeerServicer_to_server(PeerService(host), server)
    service = CoordinatorService(host)
    rpc.add_CoordinatorServicer_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = config.replicas[index]
    creds = server_credentials(config, index)
    try:
        bound = (server.add_insecure_port(address) if creds is None
                 else server.add_secure_port(address, creds))
    except RuntimeError:        # gRPC's "Failed to bind": a traceback reached the user
        bound = 0
    if bound == 0:
        raise OSError(f"replica {index}: cannot listen on {address}: another process "
                      f"listens there (a replica of another group?), or the address is not "
                      f"this host's; the line above gives the system's reason")
    metrics_port = None
    if host.metrics is not None:
        from agora.agents.metrics import start_metrics_server
        metrics_port = start_metrics_server(config.metrics_host_of(index),
                                            config.metrics_port_of(index))
        write_metrics_port(config.metrics_port_file(index), metrics_port)
        log.info("replica %d: metrics on http://%s:%d/metrics", index,
                 config.metrics_host_of(index), metrics_port)
    await server.start()
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host.start()
    log.info("replica %d of %d serving on %s%s", index, config.n, address,
             " (mutual TLS)" if creds is not None else "")
    return Server(server=server, host=host, health=health_servicer, grace_s=grace_s,
                  metrics_port=metrics_port, service=service)


def _unreadable_log(db: Path, e: Exception,
                   what: str = "not a readable SQLite database") -> str:
    return (f"{db}: the replica's log is {what} ({e}); move it aside "
            f"(mv {db} {db}.damaged) and start this replica again: it starts empty and "
            f"catches up from its peers (state transfer), as long as 2f+1 others run")


def write_metrics_port(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` atomically (a reader sees the old file or the whole new
    one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n", encoding="utf-8")
    tmp.replace(path)


class Server:
    """A running replica: ``await stop()`` shuts it down gracefully. ``metrics_port``: the
    port of its metrics endpoint, or None."""

    def __init__(self, *, server: grpc.aio.Server, host: ReplicaHost, health,
                 grace_s: float, metrics_port: int | None = None,
                 service: CoordinatorService | None = None) -> None:
        self.server, self.host, self.health, self.grace_s = server, host, health, grace_s
        self.metrics_port = metrics_port
        self.service = service
        """its ``agora.v1.Coordinator`` servicer"""

    async def stop(self) -> None:
        for name in ("", *SERVICES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.host.close()
        await self.server.stop(self.grace_s)
        if self.metrics_port is not None:
            from agora.agents.metrics import stop_metrics_server
            stop_metrics_server(self.metrics_port)
            self.host.config.metrics_port_file(self.host.index).unlink(missing_ok=True)

    async def wait(self) -> None:
        await self.server.wait_for_termination()
