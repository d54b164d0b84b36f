"""The site agent of the cluster engine: a Ray actor hosting the learned policy of one site,
its peer-message gRPC server, and its signing key.

A round has two phases, each one actor call from the driver (``agents.cluster.driver``):

1. ``prepare(obs)``: run the trigger and, if the agent is uncertain, send its code to every
   peer over gRPC and wait for their acknowledgements.
2. ``bid(round)``: score the window attending over the codes received, and return the
   site's part of the round -- its ended instances and its bids -- signed with the site's
   Ed25519 key (``coordinator.site_round``). The driver carries every site's signed part to
   the coordinator in the round's one ordered command (``Round``); each replica checks each
   signature, so the driver can drop a part but not forge or alter one.

The actor is restartable (Ray ``max_restarts``): ``__init__`` only loads weights; the first
call after a (re)start opens the gRPC server on a fresh port, registers it under a new
epoch, and reads the site's running allocations back from the coordinator's committed
schedule -- the agent keeps no scheduling state of its own that a restart could lose.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from pathlib import Path

import grpc
import ray

from agents import metrics as M
from agents.cluster.brain import Mailbox, SiteBrain, SiteObs
from agents.cluster.peers import PeerLinks, PeerService
from agents.cluster.registry import REGISTRY_NAME
from agents.learn.codec import code_bytes
from protos.agora.v1 import agent_pb2_grpc

log = logging.getLogger(__name__)


class SiteAgent:
    """Wrapped by ``ray.remote`` in ``actor_class`` (options are the launcher's)."""

    def __init__(self, spec: dict) -> None:
        import torch

        torch.set_num_threads(1)
        from agents.learn.checkpoint import load_agents

        self.spec = spec
        self.site: str = spec["site"]
        self.sites: list[str] = spec["sites"]
        self.index = self.sites.index(self.site)
        agents, _ = load_agents(spec["checkpoint"])
        if agents.n_sites != len(self.sites):
            raise ValueError(f"checkpoint {spec['checkpoint']} has {agents.n_sites} sites; "
                             f"the run has {len(self.sites)}")
        self.agents = agents
        self.brain = SiteBrain(agents, self.index)
        self.mailbox = Mailbox(len(self.sites), agents.cfg.code_dim)
        self.code_bytes = code_bytes(agents.cfg.code_dim, agents.cfg.bits)
        self.epoch = time.time_ns()
        self._started = False
        self._obs: SiteObs | None = None
        self._t_obs = time.perf_counter()
        self.counts = {"rounds": 0, "batches": 0, "codes_sent": 0, "codes_suppressed": 0, "bids": 0,
                       "completions": 0, "failures": 0}
        self.recovered: int | None = None
        self._fl = None
        """(learner, ClientApp, Context), built at the first Flower message"""

    # ---- start-up (also after every restart) -------------------------------------------
    async def _ensure_started(self) -> None:
        if self._started:
            return
        from coordinator.client import CoordinatorClient
        from coordinator.config import load_config
        from coordinator.server import load_keys

        spec = self.spec
        self.server = grpc.aio.server()
        self.peer_service = PeerService(self.site, self.sites, self.mailbox, self.code_bytes)
        agent_pb2_grpc.add_PeerExchangeServicer_to_server(self.peer_service, self.server)
        creds = None
        host = spec.get("host") or ray.util.get_node_ip_address()
        if spec.get("certs"):
            from deploy.certs import channel_credentials, server_credentials
            certs = Path(spec["certs"])
            port = self.server.add_secure_port(f"{host}:0",
                                               server_credentials(certs, f"site-{self.site}"))
            creds = channel_credentials(certs, f"site-{self.site}")
        else:
            port = self.server.add_insecure_port(f"{host}:0")
        await self.server.start()
        self.address = f"{host}:{port}"
        self.registry = ray.get_actor(REGISTRY_NAME, namespace=spec.get("namespace"))
        self.links = PeerLinks(self.site, [s for s in self.sites if s != self.site],
                               self._resolve, credentials=creds)
        config = load_config(spec["coordinator_config"])
        keys = load_keys(Path(spec["keys"]))
        ids = [f"site:{self.site}"]
        self.client_id = f"site:{self.site}"
        self.seed = keys.client_signing[self.client_id]
        tls_id = f"site-{self.site}" if config.tls_enabled else None
        self.clients = [CoordinatorClient(config, keys, cid, tls_identity=tls_id)
                        for cid in ids]
        self.metrics_port = None
        if spec.get("metrics_host"):
            from agents.metrics import start_metrics_server
            self.metrics_port = start_metrics_server(spec["metrics_host"], 0)
        await self.registry.register.remote(self.site, self.address, self.epoch,
                                            {"pid": os.getpid(), "node_id":
                                             ray.get_runtime_context().get_node_id(),
                                             "metrics_port": self.metrics_port})
        # what is in flight here, from the committed schedule (nothing kept locally)
        sched = await self.clients[0].schedule(site=self.site)
        self.recovered = len(sched.schedule.allocations)
        self._started = True
        log.info("site %s serving peers at %s (epoch %d); %d allocations committed here",
                 self.site, self.address, self.epoch, self.recovered)

    async def _resolve(self, peer: str) -> str | None:
        return await self.registry.lookup.remote(peer)

    # ---- the two phases of a round ------------------------------------------------------
    async def prepare(self, obs: SiteObs) -> dict:
        await self._ensure_started()
        t0 = self._t_obs = time.perf_counter()
        self._obs = obs
        code = self.brain.trigger(obs, self.mailbox)
        acked = 0
        if obs.mask.any():
            if code is None:
                self.counts["codes_suppressed"] += 1
                M.MESSAGES_SUPPRESSED.labels(site=self.site).inc()
            else:
                acked = await self.links.broadcast(obs.round, code, self.epoch)
                self.counts["codes_sent"] += 1
                M.MESSAGES_SENT.labels(site=self.site).inc()
                M.wire_bytes("out", site=self.site).inc(self.code_bytes * acked)
        return {"site": self.site, "sent": code is not None, "acked": acked,
                "active": bool(obs.mask.any()), "wire_bytes": self.code_bytes if code is not
                None else 0, "prepare_s": time.perf_counter() - t0}

    async def bid(self, round: int) -> dict:
        """This site's signed part of the round (``coordinator.site_round``): its ended
        instances and its bids, for the driver to carry to the coordinator in the round's
        one ordered command. The driver cannot alter it; every replica checks the
        signature."""
        from coordinator.site_round import sign
        from protos.agora.v1 import coordinator_pb2 as pb

        await self._ensure_started()
        obs = self._obs
        if obs is None or obs.round != round:
            # a restart lost the observation between the phases: nothing this round (its
            # ended instances come back: the driver reports what it has not seen committed)
            return {"site": self.site, "bids": 0, "signed": None, "lost_observation": True}
        bids = self.brain.bids(obs, self.mailbox)
        self.counts["rounds"] += 1
        rep = pb.SiteRound(site=self.site, round=round, bids=[
            pb.Bid(job_id=j, task_id=t, instances=n, price=p) for j, t, n, p in bids])
        for job, task, b, e, outcome in obs.completions:
            if outcome == "completed":
                rep.completions.add(job_id=job, task_id=task, instance_begin=b,
                                    instance_end=e, site=self.site)
                self.counts["completions"] += e - b
            else:
                rep.failures.add(job_id=job, task_id=task, instance_begin=b, instance_end=e,
                                 site=self.site, reason="instance failed at the site")
                self.counts["failures"] += e - b
        if not bids and not obs.completions:
            return {"site": self.site, "bids": 0, "signed": None}
        if bids:
            self.counts["batches"] += 1
            self.counts["bids"] += len(bids)
            M.DECISIONS.labels(site=self.site).inc()
            M.DECISION_LATENCY.labels(site=self.site).observe(time.perf_counter() - self._t_obs)
        signed = sign(self.seed, self.client_id, rep)
        return {"site": self.site, "bids": len(bids), "signed": signed.SerializeToString()}

    # ---- federation (Flower rounds between episodes) ------------------------------------
    def fl_handle(self, data: bytes) -> bytes | None:
        """One Flower message (train / evaluate, Flower's protobuf bytes) to this site's
        ``ClientApp`` over its own PPO learner; the reply as bytes. Blocks the actor while
        it trains: rounds run between episodes, when no round is in flight."""
        from flwr.app import Context, RecordDict

        from federation.actor_grid import from_bytes, to_bytes
        from federation.client_app import make_client_app

        if self._fl is None:
            from agents.learn.loop import TrainConfig
            from federation.ppo_learner import PPOSiteLearner

            learner = PPOSiteLearner(self.site, TrainConfig.from_dict(self.spec["learner"]))
            ctx = Context(run_id=1, node_id=0, node_config={"site": self.site},
                          state=RecordDict(), run_config={})
            self._fl = (learner, make_client_app(learner), ctx)
        msg = from_bytes(data)
        reply = self._fl[1](msg, self._fl[2])
        if msg.metadata.message_type.startswith("train"):
            M.FEDERATED_ROUNDS.inc()
        return to_bytes(reply)

    def set_policy(self, weights: list) -> str:
        """Load the federation's aggregated weights into the acting policy; returns their
        digest (sites compare it to see they act with the same model)."""
        import hashlib

        from agents.learn.networks import get_weights, set_weights

        set_weights(self.agents.modules, weights)
        return hashlib.sha256(b"".join(w.tobytes() for w in get_weights(
            self.agents.modules))).hexdigest()[:16]

    # ---- introspection -------------------------------------------------------------------
    async def info(self) -> dict:
        await self._ensure_started()
        return {"site": self.site, "address": self.address, "epoch": self.epoch,
                "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "resources": ray.get_runtime_context().get_assigned_resources(),
                "recovered_allocations": self.recovered,
                "metrics_port": self.metrics_port,
                "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peer": {"received": self.peer_service.received,
                         "refused": self.peer_service.refused,
                         "bytes_in": self.peer_service.bytes_in,
                         "bytes_out": self.links.bytes_out,
                         "unreachable": self.links.unreachable,
                         "reconnects": self.links.reconnects},
                **self.counts}

    async def stop(self) -> None:
        if self._started:
            await self.links.close()
            for c in self.clients:
                await c.close()
            await self.server.stop(grace=None)
            self._started = False


RaySiteAgent = ray.remote(SiteAgent)
"""``SiteAgent`` as a Ray actor class; the launcher sets its options (resources, restarts,
cpus) with ``.options(...)``."""
