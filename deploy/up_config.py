"""The configuration of ``agora up --config FILE``: one YAML file says what to run (cluster,
workload, policy checkpoint), how (simulated or live clock, episodes, federation rounds),
and where (a local Ray or a Ray cluster, the coordinator group, TLS, metrics, the output
folder). ``deploy/configs/local.yaml`` is the embedded default and documents every field;
``deploy/configs/cluster.yaml`` is the same for a running Ray cluster (``ray.address: auto``).

:func:`load_up_config` reads and checks the whole file before anything starts (each field's
check: ``deploy/up_config_read.py``). A problem is
an :class:`UpConfigError` naming the file, the line (from PyYAML's node marks) and the field,
and saying what would be right::

    local.yaml:21: field 'replicas': found 3, not 3f+1 for any f >= 1; expected 4, 7, 10, ...

Relative paths in the file are relative to the file's folder. A field the file leaves out
takes the default of ``local.yaml``, whose relative paths are relative to ``deploy/configs/``
(so the default ``policy`` is always the shipped ``agents/learn/checkpoints/learned-synE.pt``).
One exception keeps state out of an installed package: for the configurations shipped inside
an installed Agora (no checkout), ``out`` and ``certs_dir`` are relative to the current
folder as if it were the checkout (``agora up`` with no ``--config`` keeps its state in
``./out/agora``, as it does in a checkout) -- :func:`state_folder`.

Every site agent runs as a Ray actor that needs one unit of its site's custom resource,
``deploy.ray_runtime.site_resource`` (``agora-site-<name>``): only nodes started with that
resource (one node type / worker group per site in ``deploy/ray/`` and ``deploy/kuberay/``)
can host it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from agora.agents.workloads.alibaba import SPLITS  # noqa: F401 (re-exported)
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.yamlmarks import Where, describe, load_yaml
from agora.deploy.ray_runtime import site_resource

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
"""``deploy/configs/``: the folder the defaults' relative paths are relative to."""
DEFAULT_CONFIG = CONFIGS_DIR / "local.yaml"
"""The embedded default of ``agora up``."""

STRATEGIES = ("fedavg", "median", "trimmed")
COMMS = ("trigger", "always", "none")
"""The agents' message modes (``agents.learn.learned_policy.AgentConfig.comm``)."""
"""Flower strategies by name (``federation.server.STRATEGIES``; a test keeps both equal)."""

_CLUSTER_SUFFIXES = (".yaml", ".yml", ".csv")
_WORKLOAD_SUFFIXES = (".jsonl", ".swf", ".csv", ".json")
_COORDINATOR_SET_BY_UP = {
    "replicas": "the replica count is the top-level 'replicas' and their addresses are "
                "chosen by agora up",
    "f": "f follows from the top-level 'replicas' (n = 3f+1)",
    "cluster": "the coordinator schedules the top-level 'cluster'",
    "source": "it is not a configuration field",
    "tls": "the top-level 'tls' section sets mutual TLS for agents and replicas alike",
    "metrics_host": "the top-level 'metrics.host' sets it",
    "round_timeout_s": "the top-level 'round_timeout_s' sets it",
}
_COORDINATOR_PATHS = ("data_dir", "keys_file")


class UpConfigError(InputError):
    """A bad ``agora up`` configuration: names the file, the line, the field, what was found
    and what would be right. An :class:`InputError` (so a ``ValueError``): ``agora`` prints
    it on one line and exits with status 2."""

    def __reduce__(self):
        return (_rebuild, (self.path, self.line, self.field, self.problem, self.expected))


def _rebuild(path, line, field_, problem, expected) -> UpConfigError:
    return UpConfigError(path=path, line=line, field=field_, problem=problem,
                         expected=expected)


def _default_path(rel: str) -> Path:
    return (CONFIGS_DIR / rel).resolve()


def _default_state_path(rel: str) -> Path:
    return (state_folder(CONFIGS_DIR) / rel).resolve()


def state_folder(folder: Path, *, installed: bool | None = None) -> Path:
    """What the relative state paths (``out``, ``certs_dir``) of a config in ``folder`` are
    relative to: ``folder`` itself -- except for a folder inside an installed Agora (not a
    checkout: ``installed``, by default found out), where it is the same folder under the
    current one, as if the current folder were the checkout (so state never lands in
    site-packages)."""
    from agora import IMPORT_ROOT

    if installed is None:
        installed = not (IMPORT_ROOT / "setup.py").is_file()
    package = (IMPORT_ROOT / "agora").resolve()
    folder = folder.resolve()
    if installed and folder.is_relative_to(package):
        return Path.cwd().resolve() / folder.relative_to(package)
    return folder


@dataclass(frozen=True)
class FederationSection:
    """Flower rounds between episodes: every site trains ``local_steps`` on its own
    experience, then ``strategy`` aggregates the weights."""

    enabled: bool = False
    rounds: int = 1
    """rounds after each episode but the last, >= 1"""
    local_steps: int = 500
    """environment steps each site trains before a round, >= 1"""
    strategy: str = "fedavg"
    """fedavg | median | trimmed"""


@dataclass(frozen=True)
class RaySection:
    address: str | None = None
    """None: start a local Ray; 'auto': the Ray cluster this process runs in; or an address
    (host:6379, ray://host:10001)"""
    num_cpus: int | None = None
    """CPUs of the local Ray (None: all of the machine's); only with address None"""
    agent_num_cpus: float = 0.0
    """CPUs each site agent actor reserves, >= 0 (0: agents never wait for a free CPU)"""
    agent_max_restarts: int = -1
    """Ray restarts of a dead agent actor, >= -1 (-1: without limit)"""
    agent_max_task_retries: int = -1
    """retries of an agent call interrupted by a restart, >= -1 (-1: without limit)"""
    multi_node: bool = False
    """true: a local multi-node cluster (ray.cluster_utils.Cluster), one node per site
    carrying that site's resource; only with address None"""
    dashboard: bool = True
    """the local Ray's dashboard (``agora up`` prints its address); only with address None"""
    idle_worker_s: float = 60.0
    """seconds the local Ray keeps an idle worker beyond a node's CPUs (Ray's own: 1), > 0:
    longer spares short instances a fresh worker every few runs, at ~90 MB of memory an idle
    worker kept (docs/deploying.md); only with address None"""
    worker_niceness: int = 0
    """niceness of the local Ray's worker processes, 0..19: the site agents, the node
    runners, the registry (Ray's own, 15, put the agents behind the replicas and Ray's own
    processes on a shared machine: a 16-site replay's decision latency p50 ~336 ms against
    ~202 at 0, docs/benchmarks.md); what an instance runs is niced apart
    (``instance_niceness``); only with address None"""


@dataclass(frozen=True)
class MetricsSection:
    enabled: bool = True
    """each agent and replica serves Prometheus metrics"""
    host: str = "127.0.0.1"
    """interface the metrics servers listen on (0.0.0.0: every interface)"""


@dataclass(frozen=True)
class WebSection:
    enabled: bool = True
    """``agora up`` serves the live web view (deploy/webview.py) and prints its address"""
    host: str = "127.0.0.1"
    """interface it listens on (whoever reaches it sees the whole schedule: keep it on
    loopback, or behind a proxy of yours)"""
    port: int = 0
    """its port, 0..65535 (0: a free one, printed and kept in ready.json)"""


@dataclass(frozen=True)
class TlsSection:
    enabled: bool = True
    """mutual TLS on every gRPC server (agents, coordinator replicas); on by default, and
    ``agora up`` writes the certificates that are missing in ``certs_dir``"""
    certs_dir: Path = field(default_factory=lambda: _default_state_path("../../out/up/certs"))
    """(default: ``<out>/certs``) folder written by ``agora certs`` (ca.crt, site-<name>.crt/.key, replica-<i>.crt/.key,
    client.crt/.key)"""


@dataclass(frozen=True)
class UpConfig:
    """What ``agora up`` runs; fields as in ``deploy/configs/local.yaml``. Paths are
    absolute once loaded."""

    seed: int = 0
    """seed of the workload draw, the policy's draws and the faults, >= 0"""
    cluster: str = "default"
    """'default' (agents/workloads/cluster-default.yaml), a cluster YAML, or an Alibaba node
    list CSV (as ``Scenario.cluster``)"""
    sites: int = 8
    """sites an Alibaba node list is split into, >= 1"""
    split: str = "stratified"
    """how a node list is split: stratified | by-model | contiguous"""
    workload: str = "synthetic:jobs=200"
    """'synthetic[:key=value,...]', a jobs .jsonl, an .swf trace, an Alibaba pod list CSV,
    an Alibaba v2018 batch_task.csv of DAG jobs, or a WfCommons workflow instance .json or a
    folder of them (as ``Scenario.workload``)"""
    load: float | None = None
    """scale arrivals to this offered load (> 0); None keeps the workload's clock"""
    policy: Path = field(default_factory=lambda: _default_path(
        "../../agents/learn/checkpoints/learned-synE.pt"))
    """checkpoint of the site agents (written by ``agora train``)"""
    replicas: int = 4
    """coordinator replicas, n = 3f+1 with f >= 1"""
    replica_host: str | None = None
    """the address the replicas bind and everyone dials: None -- 127.0.0.1 with a local Ray,
    this machine's address (as Ray sees it) with ``ray.address`` (agents on other nodes
    reach it). The replicas run on the machine of ``agora up``; mutual TLS certificates
    written by it name this address too"""
    site_key_dir: Path | None = None
    """where each site's agent keeps the signing key it makes on its own node (a folder on
    that node, made 0700 when missing; the key file 0600): None -- ``<out>/site-keys``. The
    secret never leaves the node; ``agora up`` admits its public key by an ordered command"""
    instance_niceness: int = 15
    """niceness each instance's command runs at, 0..19 (it is raised to this as the command
    starts, never lowered): the work yields to the scheduler's own processes on a node"""
    run_as: str | None = None
    """the user the runners start every instance as (its uid, gid and home; no other
    groups): None -- the runners' own user, so a job reads what they read, its site's key
    among it (under agora up on one machine, every site's). Switching needs agora up (its
    runners) to run as root; the user must exist on every node (docs/security.md)"""
    keep_runs: int = 10_000
    """ended runs whose folders (their stdout, stderr and records) each node keeps once the
    committed schedule has their ends, >= 0; older ones are removed, oldest first, so that a
    node running for months keeps a bounded disk and a restarted runner reads only these.
    0: keep every one"""
    restarts: int = 5
    """times ``agora up`` starts its service again, from its state, after the service died
    without a stop asked (its Ray raylet died, the process was killed), at most this many in
    any hour, >= 0 (``deploy/supervise.py``). 0: the service runs in ``agora up``'s own
    process, and a death ends it"""
    coordinator: dict[str, Any] = field(default_factory=dict)
    """overrides of the coordinator's fields (``coordinator.config.CoordinatorConfig``),
    checked; data_dir and keys_file absolute"""
    speed: float = 500.0
    """replay: workload seconds per wall-clock second, > 0 (the simulated executors run on
    the wall clock sped up this much; 1 = real time)"""
    episodes: int = 1
    """runs of the workload, >= 1"""
    episode_timeout_s: float | None = None
    """replay: wall-clock seconds an episode may take before the run stops with an error
    saying how much is still pending, > 0; None: 20 × the workload's arrival span / speed,
    at least 600 (a backlog larger than that, e.g. 64 sites on 2 cores, needs more)"""
    federation: FederationSection = field(default_factory=FederationSection)
    ray: RaySection = field(default_factory=RaySection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    web: WebSection = field(default_factory=WebSection)
    tls: TlsSection = field(default_factory=TlsSection)
    out: Path = field(default_factory=lambda: _default_state_path("../../out/up"))
    """output folder"""
    comm: str | None = None
    """the agents' messages: trigger | always | none; None: as the checkpoint says (its
    ``AgentConfig.comm``)"""
    peers: int | None = None
    """sites each agent listens to at most, its nearest by link, >= 1; None: as the
    checkpoint says (``AgentConfig.peers``, 16 for checkpoints made before it existed)"""
    round_timeout_s: float = 2.0
    """seconds a round may wait for the sites after the first decision before the replicas
    vote to close it (the coordinator's ``round_timeout_s``), > 0"""
    source: str = "<defaults>"
    """the file this was read from"""

    @property
    def f(self) -> int:
        """Byzantine replicas tolerated: n = 3f+1."""
        return (self.replicas - 1) // 3

    def agent_config(self, checkpoint: dict) -> dict:
        """The agents' configuration: the checkpoint's (``policy_arrays``), with ``comm`` and
        ``peers`` where this file sets them."""
        over = {k: v for k, v in (("comm", self.comm), ("peers", self.peers)) if v is not None}
        return {**checkpoint, **over}

    def acting_policy(self) -> tuple[dict, dict]:
        """(weights, agents' configuration) of ``policy``, checked as ``site_policy_config``;
        a file that is no checkpoint is refused naming ``policy`` (a probe: only the file
        was named, not the field that set it)."""
        from agora.agents.learn.checkpoint import CheckpointMismatch, policy_arrays

        try:
            weights, checkpoint = policy_arrays(self.policy)
        except CheckpointMismatch as e:
            problem, _, expected = str(e).removeprefix(f"{self.policy}: ").partition(
                "; expected ")
            raise UpConfigError(path=self.source, line=None, field="policy",
                                problem=f"{self.policy}: {problem}",
                                expected=expected or "a checkpoint written by agora train"
                                ) from None
        return weights, self.site_policy_config(weights, checkpoint)

    def site_policy_config(self, weights: dict, checkpoint: dict) -> dict:
        """``agent_config``, checked by building once here the acting policy every site agent
        builds (``NumpyPolicy``): a checkpoint no site runs (comm 'global', or its weights
        under a ``comm`` override) is refused naming ``policy`` before anything starts."""
        from agora.agents.step.policy import NumpyPolicy

        config = self.agent_config(checkpoint)
        try:
            NumpyPolicy(weights, config)
        except ValueError as e:
            raise UpConfigError(path=self.source, line=None, field="policy",
                                problem=f"{self.policy}: {e}",
                                expected=f"a checkpoint a site agent runs (comm one of "
                                         f"{', '.join(NumpyPolicy.COMMS)})") from None
        return config

    def scenario(self):
        """The run's input as ``agents.sim.runner.Scenario`` (same meaning of cluster,
        workload, sites, split and load as ``agora simulate``)."""
        from agora.agents.sim.runner import Scenario

        return Scenario(cluster=self.cluster, workload=self.workload, sites=self.sites,
                        split=self.split, load=self.load)

    def load_cluster(self):
        """The cluster (``agents.domain.Cluster``) the config names."""
        from agora.agents.workloads.loader import load_cluster

        return load_cluster(self.cluster, sites=self.sites, split=self.split)

    def site_resources(self) -> dict[str, str]:
        """site name -> its Ray resource (``agora-site-<name>``), in the cluster's order."""
        return {s: site_resource(s) for s in self.load_cluster().site_names}

    def coordinator_config(self, addresses: Sequence[str]):
        """The coordinator group's ``CoordinatorConfig`` for replicas listening at
        ``addresses`` (n of them): f from ``replicas``, the cluster, the overrides, and the
        databases and key file under ``out/coordinator`` unless overridden; with
        ``metrics.enabled`` every replica serves metrics on ``metrics.host`` at an ephemeral
        port (unless ``coordinator.metrics_port`` says otherwise); with ``tls.enabled``,
        mutual TLS from ``tls.certs_dir``."""
        from agora.coordinator.config import CoordinatorConfig

        if len(addresses) != self.replicas:
            raise ValueError(f"{len(addresses)} replica addresses for replicas: "
                             f"{self.replicas}")
        kw: dict[str, Any] = {"data_dir": str(self.out / "coordinator"),
                              "keys_file": str(self.out / "coordinator" / "keys.yaml")}
        known = {f.name for f in fields(CoordinatorConfig)}
        if self.metrics.enabled and {"metrics_port", "metrics_host"} <= known:
            kw.update(metrics_port=0, metrics_host=self.metrics.host)  # ephemeral ports
        if self.tls.enabled and "tls" in known:
            from agora.coordinator.tls_config import TlsConfig

            kw["tls"] = TlsConfig(enabled=True, certs_dir=str(self.tls.certs_dir))
        kw.update(self.coordinator)
        return CoordinatorConfig(replicas=tuple(addresses), f=self.f, cluster=self.cluster,
                                 **kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (paths as strings), e.g. to record with results."""
        def plain(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return plain(asdict(self))


def up_config_from_dict(data: Any, source: str = "<memory>",
                        base_dir: str | Path | None = None) -> UpConfig:
    """Check plain values (or the marked values of :func:`load_yaml`, which carry lines) as
    an ``agora up`` configuration; relative paths are relative to ``base_dir`` (default: the
    current folder)."""
    from agora.deploy.up_config_read import read_up_config  # the checks of each field

    base = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        return read_up_config(Where(source, getattr(data, "line", None)), data, base.resolve())
    except UpConfigError:
        raise
    except InputError as e:
        raise UpConfigError(path=e.path, line=e.line, field=e.field, problem=e.problem,
                            expected=e.expected) from None


def load_up_config(path: str | Path = DEFAULT_CONFIG) -> UpConfig:
    """Read and check an ``agora up`` YAML file (see ``deploy/configs/local.yaml``).
    Raises :class:`UpConfigError` (file, line, field, what would be right)."""
    path = str(path)
    try:
        data = load_yaml(path)
    except InputError as e:
        if e.problem != "the file is empty":
            raise UpConfigError(path=e.path, line=e.line, field=e.field, problem=e.problem,
                                expected=e.expected) from None
        if b"#" not in Path(path).read_bytes():
            # a probe: a file of no bytes (a wrong or truncated file) started the 8-site
            # default cluster, as an empty jobs file is refused
            raise UpConfigError(path=path, line=None, field=None,
                                problem="the file is empty (a wrong or cut file?)",
                                expected="agora up fields (e.g. deploy/configs/up.yaml), "
                                         "or a comment line to run every default") from None
        data = None                         # nothing but comments: every default
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UpConfigError(path=path, line=getattr(data, "line", 1), field=None,
                            problem=f"found {describe(data)}",
                            expected="a mapping of agora up fields (deploy/configs/local.yaml)")
    return up_config_from_dict(data, path, Path(path).parent)
