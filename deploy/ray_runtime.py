"""The Ray runtime Agora runs on: a local one, a local multi-node one (one Ray node per site,
``ray.cluster_utils.Cluster``, as tests and demos use) or an existing cluster -- each with the
sites' and nodes' custom resources that pin agents and work (:func:`site_resource`,
``agents.cluster.node_runner.node_resource``). Used by ``deploy.launch.bring_up``."""

from __future__ import annotations

import logging
import math
import os
import re

log = logging.getLogger(__name__)

SITE_RESOURCE_PREFIX = "agora-site-"
_SITE_NAME = re.compile(r"[A-Za-z0-9._-]+")

ENV_PASSED = ("AGORA_PROFILE_DIR", "AGORA_TRACE", "AGORA_MEMTRACE", "AGORA_MALLOC_TRIM_S",
              "MALLOC_ARENA_MAX")
"""variables of the launcher's environment that Ray's workers inherit when set"""


def site_resource(site_name: str) -> str:
    """The Ray custom resource that marks a node as one of site ``site_name``'s:
    ``agora-site-<name>``. A site agent actor asks for one unit of it."""
    if not isinstance(site_name, str) or not _SITE_NAME.fullmatch(site_name):
        raise ValueError(f"site name {site_name!r} cannot name a Ray resource "
                         f"({SITE_RESOURCE_PREFIX}<name>); expected only letters, digits, "
                         f"'.', '_' and '-'")
    return SITE_RESOURCE_PREFIX + site_name


def site_of_resource(resource: str) -> str | None:
    """The site a resource name marks (inverse of :func:`site_resource`), or None when
    ``resource`` is no site resource."""
    if isinstance(resource, str) and resource.startswith(SITE_RESOURCE_PREFIX):
        name = resource[len(SITE_RESOURCE_PREFIX):]
        if _SITE_NAME.fullmatch(name):
            return name
    return None


def node_resources(cluster, site: str | None = None) -> dict:
    """Ray resources of a local Ray node carrying ``site``'s nodes (every site's when None):
    the site resource, one ``agora-node-<node>`` per Agora node, and its CPUs, memory and
    gpus (logical: what the cluster file says the nodes have)."""
    from agora.agents.cluster.node_runner import node_resource

    sites = [s for s in cluster.sites if site is None or s.name == site]
    nodes = [n for s in sites for n in s.nodes]
    custom = {site_resource(s.name): 1 for s in sites}
    custom.update({node_resource(n.name): 1 for n in nodes})
    return {"resources": custom,
            "num_cpus": max(1, math.ceil(sum(n.cpu for n in nodes) / 1000)),
            "num_gpus": sum(n.gpus for n in nodes),
            "memory": max(1, sum(n.mem for n in nodes)) * 2 ** 20}


TASK_EVENTS_KEPT = 10_000
"""Ray tasks whose events the local Ray's GCS keeps (Ray's own: 100,000): each run of an
instance is a Ray task, and the GCS held ~4 KB a task until that bound (+50 MiB at 12,000
tasks; +19 MiB with 2,000 kept; a soak of agora up: +31 KB a job, ~10 task events a job)."""


def system_config(rc) -> dict:
    """The local Ray's settings for ``rc`` (the config's ``ray`` section). Ray kills a
    worker idle for 1 s once a node has more than its CPUs' worth; short instances of
    fractional CPUs, a few at a time, then start a fresh worker (a Python start, a GCS
    record, a log file) every few runs: 13 workers for 36 runs of 0.2 s in bursts on a 1-CPU
    node, 2 with 60 s (measured 2026-12-03); a soak of agora up saw a worker start every ~3
    runs, and 3 over 1,133 jobs with 60 s -- which kept 21 idle workers (~2 GB) where 1 s
    kept 6 (``ray.idle_worker_s``). A Ray cluster agora up joins keeps its own settings
    (docs/deploying.md)."""
    return {"idle_worker_killing_time_threshold_ms": int(rc.idle_worker_s * 1000),
            "task_events_max_num_task_in_gcs": TASK_EVENTS_KEPT,
            "worker_niceness": rc.worker_niceness, **NODE_HEALTH_CHECKS}


NODE_HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_timeout_ms": 3000,
                      "health_check_failure_threshold": 5}
"""How the local Ray's GCS checks its raylets: a dead raylet is a dead node after ~8 s
(Ray's defaults -- every 3 s, 10 s timeout, 5 failures -- took ~16 s; measured 2026-12-04 on a
local multi-node Ray, a worker node's raylet SIGKILLed), and the site agents stop offering its
resources then (``agents/cluster/ray_nodes.py``). A live raylet must miss five checks of 3 s
in a row to be taken for dead. A Ray cluster agora up joins keeps its own settings
(``RAY_health_check_period_ms`` etc. where its head starts; docs/deploying.md)."""


def runtime_env() -> dict:
    """The Ray job's runtime environment: Agora importable in every worker, one math thread,
    ``ENV_PASSED`` passed on, and every worker ending once its raylet is gone (Ray's idle
    workers outlived it: ``agents.process.end_with_raylet``)."""
    from agora import IMPORT_ROOT

    env = {"env_vars": {"PYTHONPATH": str(IMPORT_ROOT), "OMP_NUM_THREADS": "1"},
           "worker_process_setup_hook": "agora.agents.process.end_with_raylet"}
    for var in ENV_PASSED:
        if os.environ.get(var):
            env["env_vars"][var] = os.environ[var]
    return env


def sites_unplaced(have: dict, sites: list[str]) -> list[str]:
    """The sites of ``sites`` whose resource no live Ray node carries (``have``: the live
    nodes' resources, ``ray.cluster_resources()``)."""

    return [s for s in sites if site_resource(s) not in have]


def check_joined(have: dict, address: str, sites: list[str], nodes, *,
                 resumed: bool = False) -> None:
    """A Ray cluster agora up joins, whose live nodes carry the resources ``have``. A site
    no live Ray node carries has nowhere for its agent: at a first start (a configuration
    error, most likely) refused (ValueError, one line); when a schedule is ``resumed`` (a
    restart after its Ray node died) logged -- its agent starts once a live Ray node
    carries the site (``system_watch.start_waiting``); meanwhile the replicas find the site
    lapsed and place its work elsewhere, and the other sites serve (restarts refused on it
    left every site without service: a probe). An Agora node of ``nodes`` none carries (its
    Ray node dead or not started yet) is logged and starts down: its runner waits for a Ray
    node with its resource, and its site's agent reports it down at once and up once the
    runner answers. One dead Ray node
    refused the whole start, and a keeper spent its restarts on it (a probe)."""
    from agora.agents.cluster.node_runner import node_resource

    missing = [site_resource(s) for s in sites_unplaced(have, sites)]
    if missing and not resumed:
        more = f" (and {len(missing) - 1} more site(s))" if len(missing) > 1 else ""
        raise ValueError(f"ray.address {address}: no live Ray node carries the resource "
                         f"{missing[0]!r}{more}, so its site's agent has nowhere to run; start "
                         f"a node of that site with --resources '{{\"{missing[0]}\": 1}}' "
                         f"(docs/deploying.md)")
    for r in missing:
        log.warning("ray.address %s: no live Ray node carries %r: that site's agent is not "
                    "started yet; the replicas find the site lapsed and place its work "
                    "elsewhere; its agent starts once a Ray node started with --resources "
                    "'{\"%s\": 1}' joins (docs/deploying.md)", address, r, r)
    for n in nodes:
        if node_resource(n.name) not in have:
            log.warning("ray.address %s: no live Ray node carries node %s (resource %r): it "
                        "starts down and takes no work until a Ray node started with "
                        "--resources '{\"%s\": 1}' joins (docs/deploying.md)", address,
                        n.name, node_resource(n.name), node_resource(n.name))


def start_ray(cfg, cluster, *, live: bool = False, resumed: bool = False):
    """A Ray runtime with each site's and each node's custom resource (live: and the nodes'
    CPUs, memory and gpus, so that Ray holds what the coordinator placed); returns a local
    multi-node Cluster object (to shut down) or None. ``resumed``: a schedule is resumed
    (``check_joined``)."""
    import ray

    sites = list(cluster.site_names)
    env = runtime_env()
    rc = cfg.ray
    if rc.address:
        ray.init(address=rc.address, namespace="agora", runtime_env=env,
                 log_to_driver=False)
        check_joined(ray.cluster_resources(), rc.address, sites, cluster.nodes if live else [],
                     resumed=resumed)
        return None
    if rc.multi_node:
        from ray.cluster_utils import Cluster

        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": rc.dashboard,
            **({"dashboard_port": dashboard_port()} if rc.dashboard else {}),
            "_system_config": system_config(rc)})
        for s in sites:
            res = node_resources(cluster, s)
            if live:
                c.add_node(**res)
            else:
                c.add_node(num_cpus=0, resources=res["resources"])
        c.wait_for_nodes()
        _note_dashboard(ray.init(address=c.address, namespace="agora", runtime_env=env,
                                 log_to_driver=False))
        return c
    res = node_resources(cluster)
    ncpu = rc.num_cpus or (max(res["num_cpus"], os.cpu_count() or 1) if live
                           else os.cpu_count())
    _note_dashboard(ray.init(address="local", num_cpus=ncpu,
                             num_gpus=res["num_gpus"] if live else None, namespace="agora",
                             runtime_env=env, resources=res["resources"],
                             include_dashboard=rc.dashboard, log_to_driver=False,
                             **({"dashboard_port": dashboard_port()} if rc.dashboard else {}),
                             _system_config=system_config(rc)))
    return None


DASHBOARD_PORT = 8265
"""Ray's own dashboard port, taken when it is free."""


def dashboard_port(preferred: int = DASHBOARD_PORT, host: str = "127.0.0.1") -> int:
    """``preferred`` when nothing listens there, else a free port: the local Ray's dashboard
    on Ray's fixed 8265 failed the whole start while another Ray on the machine held it
    (a second ``agora up`` from another folder, a Ray of one's own)."""
    import socket

    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError(f"no free port on {host} for Ray's dashboard")


_dashboard: dict[str, str | None] = {"url": None}


def _note_dashboard(context) -> None:
    url = getattr(context, "dashboard_url", None)
    _dashboard["url"] = (url if not url or url.startswith("http") else f"http://{url}")


def dashboard_url() -> str | None:
    """The Ray dashboard of the Ray this process started (None: off or not known)."""
    return _dashboard["url"]


def session_processes(marker: str) -> list[tuple[int, bytes]]:
    """(pid, start time) of every process whose command line holds ``marker`` (a Ray
    session's folder: its gcs, raylets, dashboard, log monitor) and of all their
    descendants -- Ray's per-node agents and workers rename themselves (``ray::...``), so
    only their parentage ties them to the session. Linux's /proc; [] elsewhere."""
    from agora.agents.process import descendants, proc_files, process_table

    table = process_table()
    me = os.getpid()
    table.pop(me, None)                 # never this process, nor what runs under it
    roots = [pid for pid, cmd in proc_files("cmdline") or ()
             if pid in table and marker.encode() in cmd]
    return [(p, table[p][2]) for p in sorted(descendants(roots, table))]


def kill_leftovers(procs: list[tuple[int, bytes]]) -> int:
    """SIGKILL those of ``procs`` (``session_processes`` taken before Ray's shutdown) that
    still run -- the same process (its start time), not a later one given the pid; how
    many. A probe: Ray's DashboardAgent and RuntimeEnvAgent processes (~870 MB) outlived
    ``agora down`` in 2 of 5 stops, until the next ``agora up``."""
    import signal

    from agora.agents.process import stat_fields

    killed = 0
    for pid, start in procs:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = stat_fields(f.read())
            if fields[19] != start or fields[0] == b"Z":
                continue
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except (OSError, IndexError):
            continue
    return killed


def started_session(ray_cluster) -> str | None:
    """The session folder of the Ray this process started (a local ``Cluster``, or
    ``ray.init`` of a local Ray); None when it joined a Ray cluster it did not start."""
    try:
        if ray_cluster is not None:
            return ray_cluster.head_node.get_session_dir_path()
        import ray._private.worker as worker

        node = worker._global_node
        if node is not None and node.head:
            return node.get_session_dir_path()
    except Exception:  # noqa: BLE001 - Ray's internals moved: no clean-up, as before
        pass
    return None
