"""One site's agent as a Ray actor, pinned to its site's nodes: the autonomous loop
(``runtime.AgentRuntime``) with its three seams -- peer codes over gRPC (``peers``), the
coordinator as its clearinghouse, and its executor.

The actor starts itself (it calls its own ``start`` from its constructor), so a restarted
actor (Ray's ``max_restarts``) comes back on its own: it opens its peer server on a fresh
port, registers it under a new epoch, rebuilds its view from the committed schedule, and
reconciles it with its executor. Nothing outside it calls it in the course of a run; the
launcher only asks for ``info`` and, at the end, ``stop``.

What it is given is plain data handed over by the launcher through Ray (``AgentSpec``): the
cluster, the acting policy's arrays, and two factories -- the clearinghouse's
(``build(cluster)``, e.g. ``coordinator.clearinghouse.ClearinghouseSpec``, built here in the
agent's own process) and the executor's (``build(cluster, site, wake)``). It imports no torch:
a site agent needs inference only (``agents.step.policy.NumpyPolicy``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import grpc
import ray

from agora.agents import metrics as M
from agora.agents.cluster.peers import SERVER_OPTIONS, GrpcExchange
from agora.agents.cluster.process_memory import memory_mib, traced_memory, trim_every
from agora.agents.cluster.registry import REGISTRY_NAME
from agora.agents.cluster.runtime import AgentRuntime
from agora.agents.domain import Cluster
from agora.agents.process import exit_with_parent, in_ray_worker
from agora.agents.step.codes import code_bytes
from agora.agents.step.observe import Observer
from agora.agents.step.policy import NumpyPolicy
from agora.protos.agora.v1 import agent_pb2_grpc
from agora.protos.undecodable import RefuseUndecodable

log = logging.getLogger(__name__)

RESTART_AFTER_S = 5.0
"""seconds an agent whose start failed waits before it exits (Ray starts it again): its
callers get the error first, and a start that fails at once does not loop hot"""


@dataclass(frozen=True)
class AgentSpec:
    """Everything one site agent is given (picklable; Ray carries it to the agent's node)."""

    site: str
    cluster: Cluster
    weights: dict
    """the acting policy's arrays (``NumpyPolicy``)"""
    policy_config: dict
    clearinghouse: Any
    """a factory: ``build(cluster)`` -> the site's clearinghouse"""
    executor: Any
    """a factory: ``build(cluster, site index, wake)`` -> the site's executor"""
    namespace: str = "agora"
    host: str | None = None
    """address the peer server binds; None: the node's IP address (Ray's)"""
    metrics_host: str | None = None
    """serve Prometheus metrics on this interface (None: no endpoint)"""
    credentials: Any = None
    """(server credentials factory, channel credentials factory) for peer TLS, or None"""
    register_s: float = 15.0
    """seconds between re-registrations with the registry (a restarted registry recovers)"""
    trainer: Any = None
    """a factory: ``build(site)`` -> a Flower client ``handle(message bytes) -> (reply bytes,
    was it a training round)`` over the site's own learner (federation); None: no training
    here"""


class SiteAgentActor:
    """Wrapped by ``ray.remote`` as ``RaySiteAgent`` (the launcher sets its options)."""

    def __init__(self, spec: AgentSpec) -> None:
        if in_ray_worker():
            exit_with_parent()          # its raylet gone, it speaks for a dead node: ends
        self.spec = spec
        self.sites = list(spec.cluster.site_names)
        self.index = self.sites.index(spec.site)
        self.policy = NumpyPolicy(spec.weights, spec.policy_config)
        self.identity = getattr(spec.clearinghouse, "identity", None)
        """the site's own keys, made and kept on this node (None: handed over through the
        spec); its public key is made here, at once, for the operator to admit"""
        self._public_key = self.identity.public_key() if self.identity is not None else None
        self._certified = asyncio.Event()
        self.epoch = time.time_ns()
        self.runtime: AgentRuntime | None = None
        self._starting: asyncio.Task | None = None
        self.address = ""
        self.metrics_port = None
        self._fl = None
        self._profile = None
        if (mt := os.environ.get("AGORA_MEMTRACE")) and (
                mt == "1" or spec.site in mt.split(",")):   # what its memory holds (bench)
            import tracemalloc
            tracemalloc.start(1)
        if os.environ.get("AGORA_PROFILE_DIR"):     # where an agent's time goes (bench)
            import cProfile
            self._profile = cProfile.Profile(time.process_time)
            self._profile.enable()
        ray.get_runtime_context().current_actor.start.remote()

    # ---- start-up (also after every restart) ------------------------------------------
    async def start(self) -> dict:
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
            self._starting.add_done_callback(self._started)
        await asyncio.shield(self._starting)
        return {"site": self.spec.site, "address": self.address, "epoch": self.epoch}

    async def _start(self) -> None:
        spec = self.spec
        self.registry = ray.get_actor(REGISTRY_NAME, namespace=spec.namespace)
        server_creds = channel_creds = None
        clearinghouse = spec.clearinghouse
        if self.identity is not None and self.identity.ca is not None:
            # mutual TLS with a key made here: wait for the operator's CA to certify it
            while (pem := self.identity.tls_pem()) is None:
                self._certified.clear()
                await self._certified.wait()
            server_creds, channel_creds = self.identity.build(spec.site, pem)
            clearinghouse = dataclasses.replace(clearinghouse, tls_pem=pem)
        elif spec.credentials is not None:
            server_creds, channel_creds = spec.credentials.build(spec.site)
        observer = Observer(spec.cluster, self.policy.k, self.policy.peers,
                            graph=self.policy.graph)
        self.exchange = GrpcExchange(
            site=spec.site, sites=self.sites, code_dim=self.policy.code_dim,
            code_bytes=code_bytes(self.policy.code_dim, self.policy.bits),
            resolve=self._resolve, epoch=self.epoch, credentials=channel_creds,
            on_code=lambda sender, rnd: self.runtime and self.runtime.wake(),
            listen=observer.listening)   # the sites whose codes the step attends over
        # a stream a listening peer, a few more while one reconnects: one peer held 1,446
        # open (a review)
        self.server = grpc.aio.server(interceptors=[RefuseUndecodable()],
                                      options=SERVER_OPTIONS,
                                      maximum_concurrent_rpcs=4 * len(self.sites) + 32)
        agent_pb2_grpc.add_PeerExchangeServicer_to_server(self.exchange.service, self.server)
        host = spec.host or ray.util.get_node_ip_address()
        port = (self.server.add_secure_port(f"{host}:0", server_creds) if server_creds
                else self.server.add_insecure_port(f"{host}:0"))
        await self.server.start()
        self.address = f"{host}:{port}"
        if spec.metrics_host:
            self.metrics_port = M.start_metrics_server(spec.metrics_host, 0)
        await self._register()
        self.exchange.links.start()
        executor = spec.executor.build(spec.cluster, self.index,
                                       lambda: self.runtime and self.runtime.wake())
        self.runtime = AgentRuntime(site=self.index, name=spec.site, cluster=spec.cluster,
                                    policy=self.policy, exchange=self.exchange,
                                    clearinghouse=clearinghouse.build(spec.cluster),
                                    executor=executor, metrics=_Metrics(), observer=observer)
        removed = getattr(self.runtime.agent.clearinghouse, "removed_sites", None)
        if removed is not None:
            self.exchange.exclude(removed)
        if hasattr(self.runtime.agent.clearinghouse, "lost_track"):
            # before it starts: an update that does not apply while the executor recovers
            # was tried again and again, nobody listening (a review)
            self.runtime.agent.clearinghouse.lost_track = self._lost_track
        await self.runtime.start()
        self._reregister = asyncio.ensure_future(self._keep_registered())
        if trim_s := os.environ.get("AGORA_MALLOC_TRIM_S"):     # a memory benchmark's knob
            self._trim = asyncio.ensure_future(trim_every(float(trim_s)))
        log.info("site %s serving peers at %s (epoch %d)", spec.site, self.address, self.epoch)

    def _started(self, fut: asyncio.Future) -> None:
        """A start that failed (the coordinator refused or did not answer for minutes, a
        runner call raised): the callers waiting on it get the error, and the agent exits
        ``RESTART_AFTER_S`` later so that Ray starts it again. It stayed alive doing
        nothing, for good -- its heartbeats already beating, so its site never lapsed
        while the work placed there was never reported (a review)."""
        if fut.cancelled() or fut.exception() is None:
            return
        log.critical("site %s: the agent could not start (%s); it starts again in %g s",
                     self.spec.site, fut.exception(), RESTART_AFTER_S)
        asyncio.get_running_loop().call_later(RESTART_AFTER_S, self._exit_to_restart)

    def _exit_to_restart(self) -> None:
        logging.shutdown()
        os._exit(75)

    def _lost_track(self, why: str) -> None:
        """The schedule cannot be followed from this agent's view any more (it fell behind
        past history the coordinator compacted away): exit, and Ray restarts the agent
        (``max_restarts``), which reads the ledger afresh and finds its work still running
        at its runners -- the path of any restarted agent."""
        log.critical("site %s: %s; the agent restarts to read the schedule again",
                     self.spec.site, why)
        self._exit_to_restart()

    async def _register(self) -> None:
        await self.registry.register.remote(self.spec.site, self.address, self.epoch, {
            "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
            "metrics_port": self.metrics_port})

    async def _keep_registered(self) -> None:
        while True:
            await asyncio.sleep(self.spec.register_s)
            try:
                await self._register()
            except Exception as e:  # noqa: BLE001 - the registry may be restarting
                log.info("site %s: registry unreachable (%s)", self.spec.site, e)

    async def _resolve(self, peer: str) -> str | None:
        return await self.registry.lookup.remote(peer)

    # ---- introspection -------------------------------------------------------------------
    async def wait_connected(self, timeout_s: float = 30.0, absent=()) -> tuple[int, int]:
        """Until the streams to every site that listens to this one, but the ``absent``
        ones (removed: no agent), are open: (how many are, how many there are)."""
        await self.start()
        return await self.exchange.links.wait_connected(timeout_s, absent)

    async def identity_request(self) -> dict | None:
        """What the operator needs to admit this site and certify its TLS key, all public:
        the site's public key, and (mutual TLS, no certificate yet) a certificate request
        and the Ray node it runs on. None: keys were handed over."""
        if self.identity is None:
            return None
        csr = (self.identity.tls_request() if self.identity.ca is not None
               and self.identity.certificate() is None else None)
        return {"site": self.spec.site, "key": self._public_key, "csr": csr,
                "node_id": ray.get_runtime_context().get_node_id()}

    async def install_certificate(self, cert_pem: bytes) -> None:
        """Keep the certificate the operator's CA issued for this node's TLS key (checked:
        for this key, by the group's CA), and go on starting."""
        self.identity.install(cert_pem)
        self._certified.set()

    async def info(self) -> dict:
        await self.start()
        rt, ch = self.runtime, self.runtime.agent.clearinghouse
        lat = sorted(rt.latencies)
        return {"site": self.spec.site, "address": self.address, "epoch": self.epoch,
                "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "niceness": os.getpriority(os.PRIO_PROCESS, 0),
                "resources": ray.get_runtime_context().get_assigned_resources(),
                "metrics_port": self.metrics_port,
                "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "pss_mib": (mem := memory_mib()).get("pss"),
                "anon_mib": mem.get("anon"),
                "traced": traced_memory(),
                "torch_loaded": "torch" in sys.modules,
                "version": ch.version, "round": ch.round.round, "updates": ch.updates,
                "messages_sent": ch.sent,
                "codes_sent": rt.agent.sent, "codes_suppressed": rt.agent.suppressed,
                "peer": {"received": self.exchange.service.received,
                         "refused": self.exchange.service.refused,
                         "connected": len(self.exchange.links.connected),
                         "reconnects": self.exchange.links.reconnects,
                         "bytes_out": self.exchange.links.bytes_out},
                "think_ms_p50": 1000 * lat[len(lat) // 2] if lat else 0.0,
                "last_step_failure": rt.last_failure,
                **rt.counts}

    async def ledger_states(self) -> dict:
        """Every task's instance states as this agent's view holds them (for checking that
        it equals the coordinator's ledger)."""
        await self.start()
        ch = self.runtime.agent.clearinghouse
        return {"version": ch.version,
                "tasks": {f"{k[0]}/{k[1]}": bytes(ts.states).hex()
                          for k, ts in ch.ledger.tasks.items()}}

    async def trace(self) -> list:
        """The runtime's trace (AGORA_TRACE set), and the clearinghouse's replies."""
        await self.start()
        return list(self.runtime.trace or []) + list(
            self.runtime.agent.clearinghouse.trace or [])

    async def records(self) -> list:
        """The executor's record of every run (replay's simulated executor)."""
        await self.start()
        return list(getattr(self.runtime.agent.executor, "record", []))

    async def stop(self) -> None:
        if self._starting is None:
            return
        await self._starting
        self._reregister.cancel()
        executor = self.runtime.agent.executor
        await self.runtime.close()
        if hasattr(executor, "close"):
            executor.close()
        await self.exchange.links.close()
        await self.server.stop(grace=None)
        if self.metrics_port is not None:
            M.stop_metrics_server(self.metrics_port)
        if self._profile is not None:
            self._profile.disable()
            self._profile.dump_stats(os.path.join(os.environ["AGORA_PROFILE_DIR"],
                                                  f"agent-{self.spec.site}.prof"))

    # ---- federation (Flower rounds between episodes) ------------------------------------
    def fl_handle(self, data: bytes) -> bytes | None:
        """One Flower message (train / evaluate, Flower's protobuf bytes) to this site's
        Flower client over its own learner (``spec.trainer``); the reply as bytes. Training
        is where torch comes in: the client is built on the first Flower message, never for
        acting."""
        if self.spec.trainer is None:
            raise RuntimeError(f"site {self.spec.site}: this agent was started without a "
                               f"trainer (federation.enabled: false)")
        if self._fl is None:
            self._fl = self.spec.trainer.build(self.spec.site)
        reply, trained = self._fl(data)
        if trained:
            M.FEDERATED_ROUNDS.inc()
        return reply

    def set_policy(self, weights: dict, config: dict) -> str:
        """Act with new weights (the federation's aggregate); returns their digest."""
        import hashlib

        self.policy = NumpyPolicy(weights, config)
        if self.runtime is not None:
            self.runtime.agent.policy = self.policy
        return hashlib.sha256(b"".join(weights[k].tobytes() for k in sorted(weights))
                              ).hexdigest()[:16]


class _Metrics:
    """The agent's Prometheus series (``agents.metrics``)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def decided(self, site: str, offers: int, latency: list[float]) -> None:
        M.DECISIONS.labels(site=site).inc()
        for x in latency:
            M.DECISION_LATENCY.labels(site=site).observe(x)

    def counted(self, site: str, agent, exchange) -> None:
        """Raise the message and wire-byte series by what the agent's step (codes sent,
        suppressed) and its exchange (bytes in and out) counted since the last call (the
        series were declared and served, but nothing counted into them: a probe)."""
        now = {"sent": agent.sent, "suppressed": agent.suppressed}
        wire = getattr(exchange, "wire", None)
        if wire is not None:
            now["in"], now["out"] = wire()
        for what, value in now.items():
            step = value - self._seen.get((site, what), 0)
            if step <= 0:
                continue
            self._seen[(site, what)] = value
            if what == "sent":
                M.MESSAGES_SENT.labels(site=site).inc(step)
            elif what == "suppressed":
                M.MESSAGES_SUPPRESSED.labels(site=site).inc(step)
            else:
                M.wire_bytes(what, site=site).inc(step)


RaySiteAgent = ray.remote(SiteAgentActor)
"""``SiteAgentActor`` as a Ray actor class; the launcher sets its options (resources,
restarts, cpus) with ``.options(...)``."""
