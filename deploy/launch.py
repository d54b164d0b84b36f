"""Bringing Agora up on Ray: the coordinator group (3f+1 replica processes with their SQLite
logs, supervised: a replica that dies is started again and catches up from its log and its
peers), a Ray runtime (local, local multi-node, or an existing cluster), the registry of peer
addresses, and one ``SiteAgentActor`` per site pinned to the site's Ray custom resource
(``deploy.ray_runtime.site_resource``).

Each agent is handed what it needs as plain data through Ray (``AgentSpec``): the cluster,
the acting policy's arrays (no torch in the agent), its clearinghouse (the coordinator's
configuration and the site's own client keys, never a path on the head node) and its
executor's factory. From then on the agents act on their own; the launcher holds handles only
to stop them and to ask for their figures.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from agora.deploy.cluster_record import check_or_record, rules
from agora.deploy.loop_thread import LoopThread
from agora.deploy.site_admission import admit_sites, site_key_dir
from agora.deploy.system_watch import watch

log = logging.getLogger("agora.launch")

SERVED = "served"
"""A file in ``out`` that ``agora up`` writes once its service serves: the schedule has
begun (``ray_runtime.check_joined``'s ``resumed``)."""


START_GRACE_S = 120.0
"""``agora up``'s ``site_start_grace_s`` unless its configuration's ``coordinator`` says:
how long a resumed schedule waits for a site's agent to come back before its work is placed
elsewhere (``coordinator.config``)."""


class ReplicaDidNotStart(RuntimeError):
    """A replica of the group did not serve; the message names it, its last line and its
    log (``agora up`` prints it as it is, without the exception's name: a probe)."""


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
    runners: dict = field(default_factory=dict)
    """node name -> its runner (live); stopped with the system, killing what they run"""
    supervisor: threading.Thread | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    replica_restarts: int = 0
    admitted: dict = field(default_factory=dict)
    """site -> the public key this process admitted for it (``admit_sites``)"""
    agent_host: str | None = None
    """the address the agents' peer servers bind (None: their Ray node's)"""
    make_agent: Callable[[str], tuple] | None = None
    """site -> (its agent's actor, its spec's object ref): starts a site's agent"""
    waiting: list[str] = field(default_factory=list)
    """sites of a joined Ray cluster whose agent waits for a live Ray node carrying the
    site's resource (``system_watch.start_waiting``)"""
    fresh: set[str] = field(default_factory=set)
    """sites whose agent this process started after its start and whose key it has not
    admitted yet: admitted as at start (``admit_sites``)"""

    def close(self) -> None:
        """Stop everything: the replicas, the agents, then the runners (killing what they
        run) and Ray."""
        import ray

        self.stopping.set()
        sup = self.supervisor
        if sup is not None and sup is not threading.current_thread():
            # a Ray call of its in flight as Ray stops connected this process to Ray again,
            # and Ray's own shutdown then refused to remove the head node (the suite, once)
            sup.join(timeout=15)
        try:
            # the replicas first: from now on nothing is committed. An agent that stopped
            # first went silent while the others ran on, so the replicas lapsed its site
            # and placed again what it had run -- work that had completed ran twice (a
            # probe). What ends from here on is reported by the runners at the next start.
            self.group.stop()
            if ray.is_initialized():
                try:
                    stop_agents(placed_agents(self.actors, self.sites))
                except Exception:  # noqa: BLE001 - best effort on the way out
                    log.debug("stopping the agents failed", exc_info=True)
        finally:
            stop_started(self.group, self.ray_cluster, self.runners, self.loop, self.operator)


def placed_agents(actors: list, sites: list[str], carried=None) -> list:
    """The agents of ``actors`` (of ``sites``, in the same order) whose site's resource a
    live Ray node carries (``carried()``: the live nodes' resources, default
    ``ray.cluster_resources``; all of them when it cannot be read). The others are held
    pending by Ray -- asking them to stop waited ``stop_agents``' straggler grace for
    nothing -- and end with this process, their owner."""
    import ray

    from agora.deploy.ray_runtime import sites_unplaced

    try:
        unplaced = set(sites_unplaced((carried or ray.cluster_resources)(), sites))
    except Exception:  # noqa: BLE001 - the GCS away: ask them all
        return list(actors)
    return [a for a, s in zip(actors, sites) if s not in unplaced]


def stop_agents(actors: list, timeout_s: float = 20.0, straggler_s: float = 3.0) -> int:
    """Ask every agent to stop (best effort on the way out) and wait ``timeout_s`` at most;
    once one has answered, the others get ``straggler_s`` more. All stop at once, so an agent
    that stays silent that long after its peers is one that cannot answer (its node is gone
    and Ray holds it pending) -- before, ``down`` after a lost node waited the full timeout
    for it. Returns how many answered."""
    import ray

    pending = [a.stop.remote() for a in actors]
    deadline = time.monotonic() + timeout_s
    answered = 0
    while pending:
        wait = deadline - time.monotonic()
        if wait <= 0:
            break
        ready, pending = ray.wait(pending, num_returns=1, timeout=wait)
        if not ready:
            break
        if not answered:                    # the first answer: the others get straggler_s
            deadline = min(deadline, time.monotonic() + straggler_s)
        for ref in ready:
            try:
                ray.get(ref)
            except Exception:  # noqa: BLE001 - an agent that failed to stop still stopped trying
                pass
        answered += len(ready)
    return answered


def replica_host(cfg) -> str:
    """Where the replicas listen (``UpConfig.replica_host``)."""
    if cfg.replica_host is not None:
        return cfg.replica_host
    if cfg.ray.address is None:
        return "127.0.0.1"
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def start_group(cfg, cluster, cluster_spec: str, out: Path, *,
                byzantine: dict[int, str] | None = None, keep: bool = False):
    """The coordinator group under ``out/coordinator``, serving. ``keep`` (the live service):
    the state there is resumed (the replicas replay their logs); else a fresh state."""
    from agora.deploy.local_group import LocalGroup

    # the sites make their own keys on their nodes; the operator admits them (bring_up)
    ids = ["operator"]
    cdir = out / "coordinator"
    if cdir.exists() and not keep:
        # a replay starts its own coordinator group: a previous run's logs would be
        # replayed by the new replicas and its jobs clash with this run's ids
        log.warning("removing the previous run's coordinator state in %s", cdir)
        shutil.rmtree(cdir)
    cdir.mkdir(parents=True, exist_ok=True)
    cdir.chmod(0o700)        # the replicas' logs hold the whole schedule: the operator's
    state_rules = None
    if keep:                 # resumed only on the cluster (and rules) it began with
        state_rules = rules(dict(cfg.coordinator), cdir) if cfg is not None else None
        check_or_record(cdir, cluster, cluster_spec, state_rules)
    extra: dict = {"require_run": True} if keep else {}
    if cfg.tls.enabled:
        extra["tls_dir"] = Path(cfg.tls.certs_dir)
    if cfg.metrics.enabled:
        extra["metrics"] = True
    overrides = {"round_timeout_s": cfg.round_timeout_s, **dict(cfg.coordinator),
                 **(state_rules or {})}      # a resumed state's own rules
    if keep:     # the agents start well after the replicas (Ray first): see the field
        overrides.setdefault("site_start_grace_s", START_GRACE_S)
    for attempt in range(2):
        # random keys, private to this folder; a resumed service keeps its own
        group = LocalGroup(cdir, n=cfg.replicas, clients=ids, keep_keys=keep,
                           cluster=cluster_spec, host=replica_host(cfg),
                           tls_sites=[], **extra, **overrides)   # sites certify their own
        group.start_all(byzantine)
        i = 0
        try:
            for i in range(cfg.replicas):
                group.wait_serving(i)
            return group
        except AssertionError as e:
            group.stop()
            last = (str(e).strip().splitlines() or ["(nothing logged)"])[-1]
            # a port picked free was taken before the replica bound it (Ray starts many
            # processes): once more on fresh ports; else (a damaged log, a bad config:
            # fresh ports cannot help -- a probe saw the retry first) give up at once, with
            # the replica's last line and where its log is (a probe: the whole log, its
            # config's JSON first, as the error)
            if attempt or not group.could_not_listen():
                raise ReplicaDidNotStart(f"replica {i} did not start: {last} (its log: "
                                   f"{group.log(i)})") from None
            log.warning("a replica did not start (%s); once more on fresh ports", last)
    raise AssertionError("unreachable")


def bring_up(cfg, cluster, cluster_spec: str, out: Path, *, weights: dict,
             policy_config: dict, executor_spec, byzantine: dict[int, str] | None = None,
             trainers: dict | None = None, live: bool = False,
             after_ray: Callable[[], None] | None = None) -> System:
    """Start the replicas, Ray, the registry and the site agents; returns once every agent
    has its ledger and a stream open to every peer. ``byzantine`` (fault tests): replica
    index -> a ``coordinator.pbft.byzantine`` behaviour it runs; ``trainers``: site -> its
    Flower client factory (federation). ``live``: the coordinator state under ``out`` is
    resumed, jobs must say what to run, and every node gets its runner (work runs under
    ``out/runs``); ``after_ray``: called once Ray is started (``agora up`` puts its signal
    handlers back in place of Ray's)."""
    import ray

    from agora.agents.cluster import registry
    from agora.agents.cluster.replay_clock import clock_keeper
    from agora.agents.cluster.site_actor import AgentSpec, RaySiteAgent
    from agora.coordinator.clearinghouse import ClearinghouseSpec
    from agora.coordinator.site_key import NodeIdentity
    from agora.deploy.ray_runtime import start_ray
    from agora.deploy.ray_runtime import site_resource

    sites = list(cluster.site_names)
    # begun = served once: a refused first start leaves the replicas' data behind, and the
    # next start took it for a restart (a re-probe)
    resumed = live and (Path(out) / SERVED).is_file()
    group = start_group(cfg, cluster, cluster_spec, out, byzantine=byzantine, keep=live)
    ray_cluster = None
    try:
        ray_cluster = start_ray(cfg, cluster, live=live, resumed=resumed)
        if after_ray is not None:
            after_ray()
    except BaseException:
        stop_started(group, ray_cluster, {}, None)
        raise
    runners: dict = {}
    loop = operator = None
    try:
        if live:
            from agora.agents.cluster.runner_fleet import start_runners

            # warm up to 4 Ray workers per node (its cores): a cold worker costs seconds
            runners = start_runners({n.name: min(4, math.ceil(n.cpu / 1000))
                                     for n in cluster.nodes}, str(out / "runs"), "agora",
                                    run_as=cfg.run_as, keep_runs=cfg.keep_runs,
                                    niceness=cfg.instance_niceness)
        loop = LoopThread()
        operator = group.client("operator", timeout_s=60.0)
        reg = registry.get_or_create(namespace="agora")
        # the replay clock is read by simulated executors alone: none in a live service
        clock = None if live else clock_keeper("agora")
        config = group.config.to_dict()
        public = group.keys.public().to_dict()
        ca = (Path(cfg.tls.certs_dir) / "ca.crt").read_bytes() if cfg.tls.enabled else None
        gone: list[str] = []
        waiting: list[str] = []       # sites whose agent waits for a live Ray node
        if live:       # a resumed schedule may hold sites the operator removed: no agent for them
            try:
                removed = {e.site for e in loop.run(operator.ledger(), timeout=120).sites
                           if e.removed}
            except Exception as e:  # noqa: BLE001 - as before: an agent for every site
                log.warning("could not read which sites were removed (%s): starting an agent "
                            "for every site", e)
                removed = set()
            unplaced: set[str] = set()
            if cfg.ray.address:   # a joined cluster's site with no live node: no agent now
                from agora.deploy.ray_runtime import sites_unplaced

                unplaced = set(sites_unplaced(ray.cluster_resources(), sites))
            sites, gone = agent_sites(sites, removed | unplaced)
            waiting = [s for s in gone if s in unplaced and s not in removed]
            for s in gone:
                if s in waiting:
                    continue                # said once already (ray_runtime.check_joined)
                log.warning("site %s was removed by the operator (agora site remove): its "
                            "agent is not started and its nodes take no work; to bring it "
                            "back, admit its key again (agora site admit %s --key ...) and "
                            "restart agora up (it stays in the cluster file: the schedule "
                            "resumes only on the cluster it began with)", s, s)

        def make_agent(s: str) -> tuple:
            spec = AgentSpec(
                site=s, cluster=cluster, weights=weights, policy_config=policy_config,
                clearinghouse=ClearinghouseSpec(
                    config=config, keys=public, client_id=f"site:{s}", identity=NodeIdentity(
                        site=s, key_dir=str(site_key_dir(cfg, out)), ca=ca)),
                executor=executor_spec, namespace="agora",
                host=None if cfg.ray.address else "127.0.0.1",
                metrics_host=cfg.metrics.host if cfg.metrics.enabled else None,
                trainer=(trainers or {}).get(s))
            # held for the run: a restarted actor is built again from this object (Ray frees
            # an argument nobody holds, and the restart would then fail)
            ref = ray.put(spec)
            return RaySiteAgent.options(
                name=f"agent-{s}", resources={site_resource(s): 0.01},
                num_cpus=cfg.ray.agent_num_cpus, max_restarts=cfg.ray.agent_max_restarts,
                max_task_retries=cfg.ray.agent_max_task_retries).remote(ref), ref

        actors, refs = [], []
        for s in sites:
            actor, ref = make_agent(s)
            actors.append(actor)
            refs.append(ref)
    except BaseException:      # e.g. Ctrl-C while agents start: leave nothing behind
        stop_started(group, ray_cluster, runners, loop, operator)
        raise
    system = System(group, loop, operator, actors, sites, ray_cluster, registry=reg,
                    clock=clock, specs=refs, runners=runners,
                    agent_host=None if cfg.ray.address else "127.0.0.1",
                    make_agent=make_agent, waiting=waiting)
    try:
        admit_sites(system, timeout_s=120, initial=True)
    except BaseException:
        system.close()
        raise
    system.supervisor = threading.Thread(target=watch, args=(system,), daemon=True)
    system.supervisor.start()
    try:
        links = ray.get([a.wait_connected.remote(absent=tuple(gone)) for a in actors],
                        timeout=300)
        if any(n < want for n, want in links):
            log.warning("some agents opened fewer peer streams than sites listen to them "
                        "(open/wanted): %s", [f"{n}/{want}" for n, want in links])
    except BaseException:
        system.close()
        raise
    return system


def stop_started(group, ray_cluster, runners: dict, loop: LoopThread | None,
                 operator=None) -> None:
    """Stop what ``bring_up`` starts but the agents, in order (``System.close``, and
    ``bring_up`` itself when it is cut short before its ``System`` exists): the runners
    (killing what they run), the operator's client and its loop, the replicas, Ray."""
    import ray

    try:
        if runners and ray.is_initialized():
            from agora.agents.cluster.runner_fleet import stop_runners

            stop_runners(list(runners), "agora")
    except Exception:  # noqa: BLE001 - the rest must stop all the same, and whatever cut
        # bring_up short (a Ctrl-C) must not be hidden behind this
        log.warning("stopping the node runners failed", exc_info=True)
    finally:
        if loop is not None:
            if operator is not None:
                try:
                    loop.run(operator.close(), timeout=10)
                except Exception:  # noqa: BLE001
                    pass
            loop.close()
        group.stop()
        from agora.deploy.ray_runtime import kill_leftovers, session_processes, started_session

        session = started_session(ray_cluster) if ray.is_initialized() else None
        ours = session_processes(session) if session else []
        if ray.is_initialized():
            ray.shutdown()
        if ray_cluster is not None:
            ray_cluster.shutdown()
        if ours:
            time.sleep(0.5)               # what Ray stops itself goes first
            n = kill_leftovers(ours)
            if n:
                log.info("killed %d process(es) of the Ray session %s left after its "
                         "shutdown", n, session)


def agent_sites(sites: list[str], removed: set[str]) -> tuple[list[str], list[str]]:
    """(the sites whose agents start, the removed ones that get none), in cluster order. A
    removed site's agent waited 180 s to be admitted and then failed the whole start (a
    probe: ``agora up`` after ``agora site remove`` could not start again)."""
    return [s for s in sites if s not in removed], [s for s in sites if s in removed]
