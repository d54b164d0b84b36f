"""Bringing Agora up on Ray: the coordinator group (3f+1 replica processes with their SQLite
logs, supervised: a replica that dies is started again and catches up from its log and its
peers), a Ray runtime (local, local multi-node, or an existing cluster), the registry of peer
addresses, and one ``SiteAgentActor`` per site pinned to the site's Ray custom resource
(``deploy.up_config.site_resource``).

Each agent is handed what it needs as plain data through Ray (``AgentSpec``): the cluster,
the acting policy's arrays (no torch in the agent), its clearinghouse (the coordinator's
configuration and the site's own client keys, never a path on the head node) and its
executor's factory. From then on the agents act on their own; the launcher holds handles only
to stop them and to ask for their figures.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("agora.launch")


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` blocks for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro):
        """Start ``coro`` on the loop; returns its concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@dataclass
class System:
    """The running parts; ``close()`` stops them all."""

    group: object
    loop: LoopThread
    operator: object
    """the operator's coordinator client (``CoordinatorClient``), used on ``loop``"""
    actors: list
    sites: list[str]
    ray_cluster: object | None = None
    registry: object | None = None
    """named actors' handles are held: a named actor without an owner's handle dies"""
    clock: object | None = None
    specs: list = field(default_factory=list)
    """the agents' specs in Ray's object store (kept alive for restarts)"""
    supervisor: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    replica_restarts: int = 0

    def close(self) -> None:
        import ray

        self.stopping.set()
        try:
            if ray.is_initialized():
                try:
                    ray.get([a.stop.remote() for a in self.actors], timeout=20)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
        finally:
            try:
                self.loop.run(self.operator.close(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
            self.loop.close()
            self.group.stop()
            if ray.is_initialized():
                ray.shutdown()
            if self.ray_cluster is not None:
                self.ray_cluster.shutdown()


def _supervise(system: System, period_s: float = 0.5, backoff_s: float = 5.0) -> None:
    """Start again any replica process that exited while the system runs, ``backoff_s``
    after it was seen dead (a crash loop is not restarted in a tight loop; meanwhile the
    other 2f+1 replicas go on, changing view if it was the primary)."""
    g = system.group
    dead_since: dict[int, float] = {}
    while not system.stopping.wait(period_s):
        for i, p in list(g.procs.items()):
            if p.poll() is None or system.stopping.is_set():
                dead_since.pop(i, None)
                continue
            t = dead_since.setdefault(i, time.monotonic())
            if time.monotonic() - t >= backoff_s:
                log.warning("replica %d exited (%s); starting it again", i, p.returncode)
                g.start(i)
                dead_since.pop(i, None)
                system.replica_restarts += 1


def start_ray(cfg, sites: list[str]):
    """A Ray runtime with one custom resource per site; returns a local multi-node Cluster
    object (to shut down) or None."""
    import ray

    from deploy.up_config import site_resource

    env = {"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent),
                        "OMP_NUM_THREADS": "1"}}
    for var in ("AGORA_PROFILE_DIR", "AGORA_TRACE"):
        if os.environ.get(var):
            env["env_vars"][var] = os.environ[var]
    rc = cfg.ray
    if rc.address:
        ray.init(address=rc.address, namespace="agora", runtime_env=env,
                 log_to_driver=False)
        missing = [s for s in sites if site_resource(s) not in ray.cluster_resources()]
        if missing:
            raise RuntimeError(f"the Ray cluster at {rc.address} has no resource for sites "
                               f"{missing}; start each site's nodes with --resources "
                               f"'{{\"{site_resource(missing[0])}\": 1}}' (README, "
                               f"'Deploying on a Ray cluster')")
        return None
    if rc.multi_node:
        from ray.cluster_utils import Cluster

        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for s in sites:
            c.add_node(num_cpus=0, resources={site_resource(s): 1})
        c.wait_for_nodes()
        ray.init(address=c.address, namespace="agora", runtime_env=env, log_to_driver=False)
        return c
    ray.init(num_cpus=rc.num_cpus or os.cpu_count(), namespace="agora", runtime_env=env,
             resources={site_resource(s): 1 for s in sites}, include_dashboard=False,
             log_to_driver=False)
    return None


def start_group(cfg, cluster, cluster_spec: str, out: Path, *,
                byzantine: dict[int, str] | None = None):
    """The coordinator group (a fresh state under ``out/coordinator``), serving."""
    from coordinator.local_group import LocalGroup

    ids = ["operator"] + [f"site:{s}" for s in cluster.site_names]
    cdir = out / "coordinator"
    if cdir.exists():
        # a replay starts its own coordinator group: a previous run's logs would be
        # replayed by the new replicas and its jobs clash with this run's ids
        log.warning("removing the previous run's coordinator state in %s", cdir)
        shutil.rmtree(cdir)
    cdir.mkdir(parents=True, exist_ok=True)
    extra: dict = {}
    if cfg.tls.enabled:
        extra["tls_dir"] = Path(cfg.tls.certs_dir)
    if cfg.metrics.enabled:
        extra["metrics"] = True
    overrides = {"round_timeout_s": cfg.round_timeout_s, **dict(cfg.coordinator)}
    for attempt in range(2):
        group = LocalGroup(cdir, n=cfg.replicas, clients=ids,
                           key_seed=f"agora-up-{cfg.seed}".encode(), cluster=cluster_spec,
                           **extra, **overrides)
        group.start_all(byzantine)
        try:
            for i in range(cfg.replicas):
                group.wait_serving(i)
            return group
        except AssertionError as e:
            group.stop()
            # e.g. a port picked free was taken before the replica bound it (Ray starts many
            # processes): try once more with fresh ports, then give up with the replica's log
            if attempt:
                raise
            log.warning("a replica did not start (%s); once more on fresh ports",
                        str(e).strip().splitlines()[-1:] or "")
    raise AssertionError("unreachable")


def bring_up(cfg, cluster, cluster_spec: str, out: Path, *, weights: dict,
             policy_config: dict, executor_spec, byzantine: dict[int, str] | None = None,
             trainers: dict | None = None) -> System:
    """Start the replicas, Ray, the registry and the site agents; returns once every agent
    has its ledger and a stream open to every peer. ``byzantine`` (fault tests): replica
    index -> a ``coordinator.pbft.byzantine`` behaviour it runs; ``trainers``: site -> its
    Flower client factory (federation)."""
    import ray

    from agents.cluster import registry
    from agents.cluster.replay_clock import clock_keeper
    from agents.cluster.site_actor import AgentSpec, RaySiteAgent
    from coordinator.clearinghouse import ClearinghouseSpec
    from deploy.up_config import site_resource

    sites = list(cluster.site_names)
    group = start_group(cfg, cluster, cluster_spec, out, byzantine=byzantine)
    try:
        ray_cluster = start_ray(cfg, sites)
    except BaseException:
        group.stop()
        raise
    loop = LoopThread()
    operator = group.client("operator", timeout_s=60.0)
    reg = registry.get_or_create(namespace="agora")
    clock = clock_keeper("agora")
    config = group.config.to_dict()
    actors, refs = [], []
    for i, s in enumerate(sites):
        cid = f"site:{s}"
        spec = AgentSpec(
            site=s, cluster=cluster, weights=weights, policy_config=policy_config,
            clearinghouse=ClearinghouseSpec(
                config=config, keys=group.keys.for_client(cid).to_dict(), client_id=cid,
                tls_identity=f"site-{s}" if cfg.tls.enabled else None),
            executor=executor_spec, namespace="agora",
            host=None if cfg.ray.address else "127.0.0.1",
            metrics_host=cfg.metrics.host if cfg.metrics.enabled else None,
            credentials=_peer_credentials(cfg, sites), trainer=(trainers or {}).get(s))
        # held for the run: a restarted actor is built again from this object (Ray frees an
        # argument nobody holds, and the restart would then fail)
        refs.append(ray.put(spec))
        actors.append(RaySiteAgent.options(
            name=f"agent-{s}", resources={site_resource(s): 0.01},
            num_cpus=cfg.ray.agent_num_cpus, max_restarts=cfg.ray.agent_max_restarts,
            max_task_retries=cfg.ray.agent_max_task_retries).remote(refs[-1]))
    system = System(group, loop, operator, actors, sites, ray_cluster, registry=reg,
                    clock=clock, specs=refs)
    system.supervisor = threading.Thread(target=_supervise, args=(system,), daemon=True)
    system.supervisor.start()
    try:
        connected = ray.get([a.wait_connected.remote() for a in actors], timeout=300)
        if min(connected, default=0) < len(sites) - 1:
            log.warning("some agents opened fewer peer streams than peers: %s", connected)
    except BaseException:
        system.close()
        raise
    return system


def _peer_credentials(cfg, sites: list[str]):
    if not cfg.tls.enabled:
        return None
    from deploy.certs import PeerCredentials

    return PeerCredentials(str(cfg.tls.certs_dir), sites)
