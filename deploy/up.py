"""``agora up``: the cluster engine end to end on a Ray cluster (a local one by default).

Starts the coordinator group (3f+1 replica processes with their SQLite logs, supervised:
a replica that dies is started again and catches up from its log and its peers), a Ray
runtime (local, local multi-node, or an existing cluster), the registry, and one
``SiteAgent`` actor per site pinned to the site's Ray custom resource
(``deploy.up_config.site_resource``); then replays the workload through them
(``agents.cluster.driver``) and prints the simulation engine's metrics table plus the
system figures. Everything it writes goes under the configuration's ``out`` folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("agora.up")


@dataclass
class System:
    """The running parts; ``close()`` stops them all."""

    group: object
    loop: object
    operator: object
    actors: list
    sites: list[str]
    ray_cluster: object | None = None
    registry: object | None = None
    """the registry actor's handle (held: a named actor without an owner's handle dies)"""
    supervisor: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    replica_restarts: int = 0

    def close(self) -> None:
        import ray

        self.stopping.set()
        try:
            if ray.is_initialized():
                for a in self.actors:
                    try:
                        ray.get(a.stop.remote(), timeout=10)
                    except Exception:  # noqa: BLE001 - best effort on the way out
                        pass
        finally:
            try:
                self.loop.run(self.operator.client.close(), timeout=10)
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
    rc = cfg.ray
    if rc.address:
        ray.init(address=rc.address, namespace="agora", runtime_env=env,
                 log_to_driver=False)
        missing = [s for s in sites if site_resource(s) not in ray.cluster_resources()]
        if missing:
            raise RuntimeError(f"the Ray cluster at {rc.address} has no resource for sites "
                               f"{missing}; start each site's nodes with --resources "
                               f"'{{\"{site_resource(missing[0])}\": 1}}' (deploy/DEPLOY.md)")
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


def bring_up(cfg, cluster, cluster_spec: str, out: Path, *,
             byzantine: dict[int, str] | None = None, agent_cfg=None) -> System:
    """Start the replicas, Ray, the registry and the site agents. ``byzantine`` (fault
    tests): replica index -> a ``coordinator.pbft.byzantine`` behaviour it runs."""
    import ray

    from agents.cluster import registry
    from agents.cluster.driver import LoopThread, Operator
    from agents.cluster.site_actor import RaySiteAgent
    from coordinator.local_group import LocalGroup
    from deploy.up_config import site_resource

    sites = list(cluster.site_names)
    ids = ["operator"] + [f"site:{s}" for s in sites]
    cdir = out / "coordinator"
    if cdir.exists():
        # a run starts its own coordinator group: a previous run's logs would be replayed
        # by the new replicas and its jobs clash with this run's ids
        log.warning("removing the previous run's coordinator state in %s", cdir)
        shutil.rmtree(cdir)
    cdir.mkdir(parents=True, exist_ok=True)
    tls_dir = Path(cfg.tls.certs_dir) if cfg.tls.enabled else None
    extra = {}
    if tls_dir is not None:
        extra["tls_dir"] = tls_dir
    if cfg.metrics.enabled:
        extra["metrics"] = True
    for attempt in range(2):
        group = LocalGroup(cdir, n=cfg.replicas, clients=ids,
                           key_seed=f"agora-up-{cfg.seed}".encode(), cluster=cluster_spec,
                           **extra, **dict(cfg.coordinator))
        group.start_all(byzantine)
        try:
            for i in range(cfg.replicas):
                group.wait_serving(i)
            break
        except AssertionError as e:
            group.stop()
            # e.g. a port picked free was taken before the replica bound it (Ray starts many
            # processes): try once more with fresh ports, then give up with the replica's log
            if attempt:
                raise
            log.warning("a replica did not start (%s); once more on fresh ports",
                        str(e).strip().splitlines()[-1:] or "")
    try:
        ray_cluster = start_ray(cfg, sites)
    except BaseException:
        group.stop()
        raise
    loop = LoopThread()
    operator = Operator(group.client("operator", timeout_s=60.0))
    reg = registry.get_or_create(namespace="agora")
    ckpt = str(Path(cfg.policy).resolve())
    actors = []
    for i, s in enumerate(sites):
        spec = {"site": s, "sites": sites, "checkpoint": ckpt,
                "coordinator_config": str(cdir / "coordinator.yaml"),
                "keys": str(cdir / "keys.yaml"),
                "namespace": "agora",
                # on one machine loopback; on a real cluster the node's address
                "host": None if cfg.ray.address else "127.0.0.1",
                "metrics_host": cfg.metrics.host if cfg.metrics.enabled else None,
                "certs": str(tls_dir) if tls_dir is not None else None}
        if cfg.federation.enabled:
            from federation.actor_grid import learner_config
            spec["learner"] = learner_config(cfg.scenario(), agent_cfg, cfg.seed, i)
        actors.append(RaySiteAgent.options(
            name=f"agent-{s}", resources={site_resource(s): 0.01},
            num_cpus=cfg.ray.agent_num_cpus, max_restarts=cfg.ray.agent_max_restarts,
            max_task_retries=cfg.ray.agent_max_task_retries).remote(spec))
    system = System(group, loop, operator, actors, sites, ray_cluster, registry=reg)
    system.supervisor = threading.Thread(target=_supervise, args=(system,), daemon=True)
    system.supervisor.start()
    try:
        ray.get([a.info.remote() for a in actors], timeout=300)
    except BaseException:
        system.close()
        raise
    return system


def run_episode(system: System, cluster, wl, *, seed: int, k: int, live_speed: float | None,
                call_timeout_s: float, on_round=None, record_attempts: bool = False):
    """Replay ``wl`` once through the running system; ``on_round(policy)`` is called after
    every committed round (the fault tests inject their faults there)."""
    from agents.cluster.driver import ClusterPolicy
    from agents.cluster.world import ClusterWorld
    from agents.sim.config import SimConfig

    world = ClusterWorld(cluster, wl, SimConfig(seed=seed, record_attempts=record_attempts))
    t_wall = time.perf_counter()
    t_sim = wl.jobs[0].arrival if wl.jobs else 0.0

    def hook(p) -> None:
        if live_speed:        # --live: keep the world's clock at live_speed x wall time
            ahead = (p.sim.now - t_sim) / live_speed - (time.perf_counter() - t_wall)
            if ahead > 0:
                time.sleep(ahead)
        if on_round is not None:
            on_round(p)

    pol = ClusterPolicy(system.actors, system.operator, system.loop, k,
                        call_timeout_s=call_timeout_s, on_round=hook)
    t0 = time.perf_counter()
    res = world.run(pol)
    pol.finish()
    return res, pol, time.perf_counter() - t0, world


def episode_workload(wl, ep: int, start_s: float):
    """Episode ``ep``'s copy of ``wl`` for a coordinator that already holds the earlier
    episodes: job ids prefixed ``e<ep>/`` (ids are unique per coordinator) and arrivals
    (and deadlines) moved to start at ``start_s`` (its clock never goes back)."""
    from dataclasses import replace

    if ep == 0 or not wl.jobs:
        return wl
    shift = start_s - wl.jobs[0].arrival
    jobs = tuple(replace(j, id=f"e{ep}/{j.id}", arrival=j.arrival + shift,
                         deadline=None if j.deadline is None else j.deadline + shift)
                 for j in wl.jobs)
    return replace(wl, jobs=jobs, source=f"{wl.source} (episode {ep}, +{shift:.0f} s)")


def system_figures(system: System, pol, wall_s: float) -> dict:
    import ray

    from coordinator.client import agreed_status

    lat = np.array(pol.latencies) * 1000 if pol.latencies else np.zeros(1)
    infos = ray.get([a.info.remote() for a in system.actors], timeout=60)
    st = system.loop.run(system.operator.client.status(), timeout=30)
    agreed = agreed_status(st, system.operator.client.f)
    views = [s.view for s in st if not isinstance(s, str)]
    return {
        "wall_s": round(wall_s, 2),
        "decision_latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "decision_latency_ms_p99": round(float(np.percentile(lat, 99)), 2),
        "phase_ms_p50": dict(zip(("prepare", "bid", "tick"), (
            round(float(x), 1) for x in np.percentile(np.array(pol.phases) * 1000, 50, axis=0)
        ))) if pol.phases else {},
        "allocations_committed": pol.stats["allocations"],
        "allocations_per_s": round(pol.stats["allocations"] / max(wall_s, 1e-9), 1),
        "rounds": pol.stats["rounds"],
        "codes_sent": pol.stats["codes_sent"],
        "codes_suppressed": pol.stats["codes_suppressed"],
        "code_bytes_on_wire": pol.stats["code_bytes"],
        "bids": pol.stats["bids"], "round_rejections": pol.stats["round_rejections"],
        "view_changes": agreed.get("view", max(views, default=0)),
        "replica_restarts": system.replica_restarts,
        "agent_restarts": ray.get(system.registry.restarts.remote(), timeout=30),
        "agent_max_rss_mib": round(max(i["max_rss_mib"] for i in infos), 1),
        "agents": {i["site"]: {"node_id": i["node_id"][:12], "pid": i["pid"],
                               "address": i["address"]} for i in infos},
    }


def up(cfg, *, live: bool = False, progress: bool = True, echo=print) -> dict:
    """Run ``cfg`` (an ``UpConfig``); returns the result written to ``out/result.json``."""
    from agents.learn.checkpoint import load_agents
    from agents.sim.report import markdown_table, metrics_table

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cluster, wl = cfg.scenario().build(cfg.seed)
    if cluster.faults.outages:
        raise ValueError(f"{cfg.source}: cluster {cfg.cluster}: faults.outages is not supported "
                         f"by the cluster engine yet (the coordinator has no node-down "
                         f"command); use a cluster without outages")
    agents, _ = load_agents(cfg.policy, cluster=cluster)
    cluster_spec = cfg.cluster if cfg.cluster == "default" else str(Path(cfg.cluster).resolve())
    echo(f"agora up: {len(cluster.sites)} sites, {cfg.replicas} replicas, "
         f"{len(wl.jobs)} jobs ({cfg.workload}), policy {cfg.policy}, seed {cfg.seed}")
    t_up = time.perf_counter()
    system = bring_up(cfg, cluster, cluster_spec, out, agent_cfg=agents.cfg)
    echo(f"up in {time.perf_counter() - t_up:.1f} s; coordinator config "
         f"{out / 'coordinator' / 'coordinator.yaml'} (agora status --config ...)")
    results = []
    try:
        clock = 0.0
        for ep in range(cfg.episodes):
            speed = cfg.live_speed if (live or cfg.mode == "live") else None
            wl_ep = episode_workload(wl, ep, clock + 1.0)
            res, pol, wall, world = run_episode(system, cluster, wl_ep, seed=cfg.seed + ep,
                                         k=agents.cfg.k, live_speed=speed,
                                         call_timeout_s=max(cfg.round_timeout_s, 60.0))
            clock = world.now
            figs = system_figures(system, pol, wall)
            results.append({"episode": ep, "metrics": res.metrics, "system": figs})
            echo(metrics_table(res.metrics))
            echo(markdown_table(["system", "value"], [[k, str(v)] for k, v in figs.items()
                                                       if k != "agents"]))
            if cfg.federation.enabled and ep < cfg.episodes - 1:
                results[-1]["federation"] = federate_between(system, agents, cfg, ep, echo)
    finally:
        system.close()
    result = {"config": cfg.to_dict(), "episodes": results,
              "total_wall_s": round(time.perf_counter() - t_up, 2)}
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    echo(f"wrote {out / 'result.json'} ({result['total_wall_s']} s in all)")
    return result


def federate_between(system: System, agents, cfg, ep: int, echo) -> dict:
    """Flower rounds over the site actors after episode ``ep``; the aggregated weights
    become every site's acting policy (and ``agents``', the driver's copy)."""
    from agents.learn.networks import get_weights, set_weights
    from federation.actor_grid import federate

    fc = cfg.federation
    names = [f"{type(m).__name__}.{n}" for m in agents.modules for n in m.state_dict()]
    t0 = time.perf_counter()
    final, info = federate(system.actors, system.sites, get_weights(agents.modules), names,
                           rounds=fc.rounds, local_steps=fc.local_steps,
                           strategy=fc.strategy, seed=cfg.seed + ep)
    set_weights(agents.modules, final)
    info["wall_s"] = round(time.perf_counter() - t0, 2)
    echo(f"federation after episode {ep}: {fc.rounds} {fc.strategy} round(s) of "
         f"{fc.local_steps} local steps per site in {info['wall_s']} s; "
         f"errors: {len(info['errors'])}")
    return info
