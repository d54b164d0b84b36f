"""The checks behind :func:`agora.deploy.up_config.load_up_config`: each field of an
``agora up`` file read with its own line, its type and range checked, paths resolved against
the file's folder, and the cluster loaded, so a bad value is reported before anything
starts (as an :class:`~agora.deploy.up_config.UpConfigError` naming file, line and field)."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Sequence

from agora.agents.limits import MAX_REPLICAS, MAX_SECONDS
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import file_problem, is_folder
from agora.agents.workloads.yamlmarks import (Where, at_key, describe, get_int, get_mapping,
                                              get_number, get_str)
from agora.deploy.ray_runtime import site_resource
from agora.deploy.up_config import (_CLUSTER_SUFFIXES, _COORDINATOR_PATHS,
                                    _COORDINATOR_SET_BY_UP, _WORKLOAD_SUFFIXES, COMMS, SPLITS,
                                    STRATEGIES, FederationSection, MetricsSection, RaySection,
                                    TlsSection, UpConfig, WebSection, state_folder)

def _names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name != "source")


def _bool(where: Where, v: Any) -> bool:
    if not isinstance(v, bool):
        raise where.error(f"found {describe(v)}", "true or false")
    return v


def _choice(where: Where, v: Any, choices: Sequence[str]) -> str:
    if not isinstance(v, str) or v not in choices:
        raise where.error(f"found {describe(v)}", " | ".join(choices))
    return v


def _int(where: Where, v: Any, ge: int, le: int = 10 ** 6) -> int:
    if isinstance(v, float):  # get_int would take 2.0; a count written 2.0 is a slip
        raise where.error(f"found {describe(v)}", f"a whole number >= {ge} and <= {le:,}")
    return get_int(where, v, ge=ge, le=le)


class _Reader:
    """Checks one mapping of the file: ``get(name, check)`` reads key ``name`` (when
    present) with its own line; absent keys keep the dataclass default."""

    def __init__(self, where: Where, data: Any, allowed: Sequence[str]) -> None:
        self.where = where
        self.data = {} if data is None else get_mapping(where, data, optional=allowed)
        self.values: dict[str, Any] = {}

    def at(self, name: str) -> Where:
        return at_key(self.where, self.data, name)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, check: Callable[[Where, Any], Any]) -> None:
        if name in self.data:
            self.values[name] = check(self.at(name), self.data[name])


def _resolve(where: Where, base: Path, s: str) -> Path:
    try:
        return (base / Path(s).expanduser()).resolve()
    except (OSError, ValueError, RuntimeError) as e:  # e.g. a NUL byte, a symlink loop
        raise where.error(f"found {describe(s)}, not a usable path ({e})",
                          "a path (relative to the config file's folder)") from None


def _path(base: Path) -> Callable[[Where, Any], Path]:
    def check(where: Where, v: Any) -> Path:
        s = get_str(where, v, "a path (relative to the config file's folder)")
        return _resolve(where, base, s)
    return check


def _folder(base: Path) -> Callable[[Where, Any], Path]:
    """A folder Agora writes into: a path that is not an existing file."""
    def check(where: Where, v: Any) -> Path:
        p = _path(base)(where, v)
        if p.exists() and not p.is_dir():
            raise where.error(f"{p} is a file", "a folder (it is made when missing)")
        return p
    return check


def _replicas(where: Where, v: Any) -> int:
    n = _int(where, v, 1, MAX_REPLICAS)
    if n < 4 or (n - 1) % 3:
        lo = max(4, 3 * ((n - 1) // 3) + 1)
        near = f"; the nearest are {lo} (f = {(lo - 1) // 3}) and {lo + 3}" if n > 4 else ""
        raise where.error(f"found {n}, not 3f+1 for any f >= 1",
                          f"4, 7, 10, ... (n = 3f+1 replicas tolerate f Byzantine ones){near}")
    return n


def _synthetic_check(where: Where, spec: str) -> None:
    from agora.agents.workloads import synthetic
    from agora.agents.workloads.loader import parse_synthetic

    try:
        params = parse_synthetic(spec)
    except InputError as e:
        raise where.error(f"found {spec!r}: {e.problem}", e.expected) from None
    accepted = [p for p in inspect.signature(synthetic.generate).parameters if p != "cluster"]
    for k in params:
        if k not in accepted:
            raise where.error(f"unknown synthetic parameter {k!r}",
                              f"synthetic:key=value,... with keys among {', '.join(accepted)}")
    check = getattr(synthetic, "_validate", None)
    if check is not None:
        try:
            check(params)
        except ValueError as e:
            raise where.error(f"found {spec!r}: {e}", "parameters in range") from None


def _must_be_file(where: Where, p: Path, missing: str, expected: str,
                  folder_ok: bool = False) -> None:
    """``missing`` at ``where`` unless ``p`` is a file (or with ``folder_ok`` a folder); a path
    that cannot even be looked at (a name too long, a folder this user may not enter) is
    named with the reason."""
    problem = file_problem(p, folder_ok=folder_ok)
    if problem is not None:
        raise where.error(missing if problem in ("no such file", "not a file")
                          else f"{p}: {problem}", expected)


def _workload(base: Path) -> Callable[[Where, Any], str]:
    def check(where: Where, v: Any) -> str:
        s = get_str(where, v, "synthetic[:key=value,...], a .jsonl, .swf, pod-list or "
                              "batch_task .csv, or a WfCommons .json or folder of them")
        if s == "synthetic" or s.startswith("synthetic:"):
            _synthetic_check(where, s)
            return s
        p = _resolve(where, base, s)
        folder = is_folder(p)            # a folder of WfCommons instances
        if p.suffix.lower() not in _WORKLOAD_SUFFIXES and not folder:
            raise where.error(f"found {s!r}, an unknown kind of workload",
                              "synthetic[:key=value,...], a jobs .jsonl, an .swf trace, an "
                              "Alibaba pod list .csv, an Alibaba batch_task .csv (v2018 or "
                              "v2017), or a WfCommons instance .json or a folder of them")
        _must_be_file(where, p, f"{p} is not a file", "an existing workload file (relative "
                      "paths are relative to the config file's folder)", folder_ok=folder)
        return str(p)
    return check


def _cluster(base: Path) -> Callable[[Where, Any], str]:
    def check(where: Where, v: Any) -> str:
        s = get_str(where, v, "'default', a cluster .yaml or an Alibaba node list .csv")
        if s == "default":
            return s
        p = _resolve(where, base, s)
        if p.suffix.lower() not in _CLUSTER_SUFFIXES:
            raise where.error(f"found {s!r}, an unknown kind of cluster",
                              "'default', a cluster .yaml/.yml or an Alibaba node list .csv")
        _must_be_file(where, p, f"{p} is not a file", "an existing cluster file (relative "
                      "paths are relative to the config file's folder)")
        return str(p)
    return check


def _policy(base: Path) -> Callable[[Where, Any], Path]:
    resolve = _path(base)

    def check(where: Where, v: Any) -> Path:
        p = resolve(where, v)
        _must_be_file(where, p, f"checkpoint {p} does not exist",
                      "a checkpoint written by agora train, e.g. "
                      "agents/learn/checkpoints/learned-synE.pt (relative paths are relative "
                      "to the config file's folder)")
        return p
    return check


def _section(where: Where, data: Any, cls, checks: dict[str, Callable]) -> Any:
    r = _Reader(where, data, _names(cls))
    for name, check in checks.items():
        r.get(name, check)
    return cls(**r.values), r


def _coordinator(base: Path, n: int, where: Where, data: Any) -> dict[str, Any]:
    from agora.coordinator.config import CoordinatorConfig, config_from_dict

    allowed = tuple(f.name for f in fields(CoordinatorConfig)
                    if f.name not in _COORDINATOR_SET_BY_UP)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise where.error(f"found {describe(data)}",
                          f"a mapping of coordinator fields among {', '.join(allowed)}")
    out: dict[str, Any] = {}
    for k, v in data.items():
        w = at_key(where, data, k)
        if k in _COORDINATOR_SET_BY_UP:
            raise w.error(f"{k!r} cannot be overridden: {_COORDINATOR_SET_BY_UP[k]}",
                          f"only {', '.join(allowed)}")
        if k not in allowed:
            raise w.error(f"unknown key {describe(k)}", f"only {', '.join(allowed)}")
        if k in _COORDINATOR_PATHS:
            v = str(_path(base)(w, v))
        out[k] = v
    try:  # the coordinator's own checks, on a group of n placeholder replicas
        checked = config_from_dict({"replicas": [f"127.0.0.1:{i + 1}" for i in range(n)],
                                    "f": (n - 1) // 3, **out}, where.path)
    except InputError as e:
        k = (e.field or "").split("[")[0].split(".")[0]
        w = at_key(where, data, k) if k in data else where.key(k) if k else where
        raise w.error(e.problem, e.expected) from None
    return {k: getattr(checked, k) for k in out}  # as the coordinator reads them


def read_up_config(where: Where, data: Any, base: Path) -> UpConfig:
    if isinstance(data, dict) and isinstance(data.get("sites"), list):
        # a probe: a cluster file given as --config read "field 'sites': found a list;
        # expected a whole number"
        raise at_key(where, data, "sites").error(
            "a list of sites: this is a cluster file, not an agora up configuration",
            "an agora up configuration (e.g. deploy/configs/up.yaml), whose 'cluster' "
            "names this file")
    top = _Reader(where, data, _names(UpConfig))
    top.get("seed", lambda w, v: _int(w, v, 0, 2 ** 63 - 1))
    top.get("cluster", _cluster(base))
    top.get("sites", lambda w, v: _int(w, v, 1))
    top.get("split", lambda w, v: _choice(w, v, SPLITS))
    top.get("workload", _workload(base))
    top.get("load", lambda w, v: None if v is None else get_number(w, v, gt=0, le=1e6))
    top.get("policy", _policy(base))
    top.get("replicas", _replicas)
    top.get("replica_host", lambda w, v: None if v is None else get_str(
        w, v, "null, or the host name or IP address the replicas bind and are dialled at"))
    top.get("site_key_dir",
            lambda w, v: None if v is None else _folder(state_folder(base))(w, v))
    top.get("run_as", lambda w, v: None if v is None else _run_as(w, v))
    top.get("instance_niceness", lambda w, v: get_int(w, v, ge=0, le=19))
    top.get("keep_runs", lambda w, v: _int(w, v, 0, 10 ** 9))
    top.get("restarts", lambda w, v: _int(w, v, 0, 1000))
    top.get("speed", lambda w, v: get_number(
        w, v, ge=1e-3, le=1e6, unit="workload seconds per wall-clock second"))
    top.get("episodes", lambda w, v: _int(w, v, 1))
    top.get("episode_timeout_s", lambda w, v: None if v is None else get_number(
        w, v, ge=1e-3, le=MAX_SECONDS, unit="seconds"))
    top.get("out", _folder(state_folder(base)))
    top.get("round_timeout_s", lambda w, v: get_number(w, v, ge=1e-3, le=MAX_SECONDS,
                                                       unit="seconds"))
    top.get("comm", lambda w, v: None if v is None else _choice(w, v, COMMS))
    top.get("peers", lambda w, v: None if v is None else _int(w, v, 1))
    n = top.values.get("replicas", UpConfig.replicas)
    if top.has("coordinator"):
        top.values["coordinator"] = _coordinator(base, n, top.at("coordinator"),
                                                 top.data["coordinator"])

    fed, fed_r = _section(top.at("federation"), top.data.get("federation"), FederationSection, {
        "enabled": _bool, "rounds": lambda w, v: _int(w, v, 1),
        "local_steps": lambda w, v: _int(w, v, 1, 10 ** 9),
        "strategy": lambda w, v: _choice(w, v, STRATEGIES)})
    ray, ray_r = _section(top.at("ray"), top.data.get("ray"), RaySection, {
        "address": lambda w, v: None if v is None else get_str(
            w, v, "null (start a local Ray), 'auto', or host:port / ray://host:port"),
        "num_cpus": lambda w, v: None if v is None else _int(w, v, 1),
        "agent_num_cpus": lambda w, v: get_number(w, v, ge=0, le=1024, unit="CPUs"),
        "agent_max_restarts": lambda w, v: _int(w, v, -1),
        "agent_max_task_retries": lambda w, v: _int(w, v, -1),
        "multi_node": _bool, "dashboard": _bool,
        "idle_worker_s": lambda w, v: get_number(w, v, ge=0.001, le=86_400, unit="seconds"),
        "worker_niceness": lambda w, v: get_int(w, v, ge=0, le=19)})
    metrics, _ = _section(top.at("metrics"), top.data.get("metrics"), MetricsSection, {
        "enabled": _bool, "host": lambda w, v: get_str(w, v, "a host name or IP address")})
    web, _ = _section(top.at("web"), top.data.get("web"), WebSection, {
        "enabled": _bool, "host": lambda w, v: get_str(w, v, "a host name or IP address"),
        "port": lambda w, v: get_int(w, v, ge=0, le=65535)})
    tls, _ = _section(top.at("tls"), top.data.get("tls"), TlsSection, {
        "enabled": _bool, "certs_dir": _folder(state_folder(base))})
    if "certs_dir" not in (top.data.get("tls") or {}):
        # each state folder has its own CA and certificates, unless told where they are
        out = top.values.get("out") or UpConfig.__dataclass_fields__["out"].default_factory()
        tls = TlsSection(enabled=tls.enabled, certs_dir=Path(out) / "certs")
    top.values.update(federation=fed, ray=ray, metrics=metrics, web=web, tls=tls)

    if ray.address is not None:
        given = top.data.get("ray") or {}
        for name, bad in (("multi_node", ray.multi_node), ("num_cpus", ray.num_cpus),
                          ("worker_niceness", "worker_niceness" in given)):
            if bad:
                raise ray_r.at(name).error(
                    f"{name} is set with address {ray.address!r}",
                    f"{name} only with address null (a local Ray that agora up starts)"
                    + ("; a cluster you start takes RAY_worker_niceness=0 in its nodes' "
                       "environment (docs/deploying.md)" if name == "worker_niceness" else ""))
    episodes = top.values.get("episodes", UpConfig.episodes)
    if fed.enabled and episodes < 2:
        raise fed_r.at("enabled").error(
            f"federation is enabled with episodes: {episodes}, so no round would run "
            f"(rounds run between episodes)", "episodes >= 2, or enabled: false")

    cfg = UpConfig(**top.values, source=where.path)
    if "policy" not in top.values:
        _must_be_file(top.at("policy"), cfg.policy,
                      f"the default checkpoint {cfg.policy} does not exist",
                      "a checkpoint written by agora train (set 'policy')")
    _check_cluster(top, cfg)
    return cfg


def _run_as(w, v) -> str:
    """A user this machine has and the runners may switch to (with a Ray cluster the user
    must exist on every node: a runner that lacks it fails each run saying so)."""
    from agora.agents.cluster.run_account import run_account

    name = get_str(w, v, "null, or the name of an unprivileged user, e.g. nobody")
    try:
        run_account(name, who="agora up")
    except ValueError as e:
        raise w.error(str(e),
                      "a user of this machine that agora up may switch to, or null")
    return name


def _check_cluster(top: _Reader, cfg: UpConfig) -> None:
    """Load the cluster now, so a bad one, or a site that cannot name a Ray resource, is
    reported before anything starts."""
    w = top.at("cluster")
    try:
        names = cfg.load_cluster().site_names
    except InputError as e:
        raise w.error(f"{cfg.cluster} cannot be used: {e}") from None
    except (OSError, ValueError) as e:
        raise w.error(f"{cfg.cluster} cannot be used ({type(e).__name__}: {e})") from None
    for s in names:
        try:
            site_resource(s)
        except ValueError as e:
            raise w.error(str(e)) from None


