"""One entry point for clusters and workloads, picking the reader from the spec.

Clusters (:func:`load_cluster`): ``default`` (Agora's embedded
``agents/workloads/cluster-default.yaml``), a native ``.yaml``/``.yml`` file, or an Alibaba
node list ``.csv`` (recognised by its header), split into ``sites`` sites by ``split``.

Workloads (:func:`load_workload`): a native ``.jsonl`` file, an ``.swf`` file (options
``rigid``, ``mem_per_proc_mib``), an Alibaba pod list ``.csv`` (recognised by its header;
option ``qos_weights``), an Alibaba v2018 ``batch_task.csv`` of DAG jobs or the older v2017
one (recognised by its rows; options ``machine_mem_mib``, ``max_jobs``), a WfCommons workflow instance ``.json`` or a
folder of them (recognised by the top-level ``workflow`` and ``schemaVersion``; option
``arrival_gap_s``), or ``synthetic`` / ``synthetic:key=value,...`` which calls
``agents.workloads.synthetic.generate(cluster, seed=..., **params)`` (values are read as
int, float, true/false or else string; ``seed`` comes from the spec, else the ``seed``
option, else 0). Options whose value is None are ignored; any other option a reader does
not take is an error.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

from agora.agents.domain import Cluster, Workload
from agora.agents.workloads.alibaba import (NODE_HEADER, PLACEMENT_HEADER, POD_HEADER,
                                            read_alibaba_nodes, read_alibaba_pods)
from agora.agents.workloads.alibaba_dag import FIELDS as BATCH_FIELDS
from agora.agents.workloads.alibaba_dag import looks_like_batch_tasks, read_batch_tasks
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.native import read_cluster, read_jobs
from agora.agents.workloads.swf import read_swf
from agora.agents.workloads.wfcommons import NOT_INSTANCE, read_wfcommons

DEFAULT_CLUSTER = Path(__file__).parent / "cluster-default.yaml"

CLUSTER_KINDS = ("'default', a native cluster .yaml/.yml file, or an Alibaba node list .csv "
                 f"(header {','.join(NODE_HEADER)})")
WORKLOAD_KINDS = ("a native .jsonl jobs file, an .swf file, an Alibaba pod list .csv "
                  f"(header {','.join(POD_HEADER)}), an Alibaba v2018 batch_task.csv (rows "
                  f"{','.join(BATCH_FIELDS)}) or v2017 one (8 columns), a WfCommons "
                  f"workflow instance .json (WfFormat 1.0-1.6) or a folder of them, or "
                  f"synthetic[:key=value,...]")


def _first_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.readline(4096)
    except OSError as e:
        raise InputError(path=path, line=None, field=None,
                         problem=f"cannot read the file ({e.strerror or e})") from None
    return head.decode("utf-8-sig", errors="replace").strip()


def file_problem(path: str | Path, *, folder_ok: bool = False) -> str | None:
    """Why ``path`` is not a file one can open (None when it is one, or with ``folder_ok`` a
    folder): ``no such file``, ``not a file``, or, when even looking fails (a name too long, a
    folder this user may not enter), ``cannot read the file (...)`` -- where ``Path.is_file``
    would raise OSError."""
    p = Path(path)
    try:
        if p.is_file() or (folder_ok and p.is_dir()):
            return None
        return "no such file" if not p.exists() else "not a file"
    except OSError as e:
        return f"cannot read the file ({e.strerror or e})"


def is_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder one can look at (False when even looking fails)."""
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def _exists(spec: str, expected: str, folder_ok: bool = False) -> None:
    problem = file_problem(spec, folder_ok=folder_ok)
    if problem:
        raise InputError(path=spec, line=None, field=None, problem=problem, expected=expected)


def splits_into_sites(spec) -> bool:
    """Whether ``sites`` and ``split`` apply to cluster ``spec``: an Alibaba node-list CSV
    (a YAML cluster and 'default' name their own sites)."""
    return Path(str(spec)).suffix.lower() == ".csv"


def load_cluster(spec: str, *, sites: int = 8, split: str = "stratified") -> Cluster:
    """The cluster named by ``spec`` (see module doc); ``sites`` and ``split`` apply to an
    Alibaba node list only."""
    spec = str(spec)
    if spec == "default":
        return read_cluster(str(DEFAULT_CLUSTER))
    suffix = Path(spec).suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        raise InputError(path=spec, line=None, field=None, problem="unknown kind of cluster",
                         expected=CLUSTER_KINDS)
    _exists(spec, CLUSTER_KINDS)
    if suffix in (".yaml", ".yml"):
        return read_cluster(spec)
    header = tuple(c.strip() for c in _first_line(spec).split(","))
    if header != NODE_HEADER and not _near(header, NODE_HEADER):
        raise InputError(path=spec, line=1, field=None,
                         problem="a .csv without the Alibaba node list header",
                         expected=CLUSTER_KINDS)
    return read_alibaba_nodes(spec, sites, split)


def _near(header: tuple[str, ...], known: tuple[str, ...]) -> bool:
    """A header of that kind gone wrong (3 or more of its column names): read as that kind,
    whose reader names what is missing or unexpected (a probe: a pod list without two
    columns was read as a batch_task.csv, its header as data; a misspelt column was "neither
    header", 600 characters that named no column)."""
    return len(set(header) & set(known)) >= 3


_OPTIONS = {".jsonl": (), ".swf": ("rigid", "mem_per_proc_mib"), ".csv": ("qos_weights",),
            "batch_task.csv": ("machine_mem_mib", "max_jobs"), ".json": ("arrival_gap_s",)}


def load_workload(spec: str, cluster: Cluster, **options: Any) -> Workload:
    """The workload named by ``spec`` (see module doc), checked against ``cluster``."""
    spec = str(spec)
    if not spec.strip():                     # Path("") is "." -- the current folder
        raise InputError(path=repr(spec), line=None, field=None, problem="an empty name",
                         expected=WORKLOAD_KINDS)
    options = {k: v for k, v in options.items() if v is not None}
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return _synthetic(spec, cluster, options)
    folder = is_folder(spec)                 # a folder of WfCommons instances
    suffix = ".json" if folder else Path(spec).suffix.lower()
    if suffix not in _OPTIONS:
        raise InputError(path=spec, line=None, field=None, problem="unknown kind of workload",
                         expected=WORKLOAD_KINDS)
    _exists(spec, WORKLOAD_KINDS, folder_ok=folder)
    kind = suffix
    if suffix == ".csv":
        first = _first_line(spec)
        header = tuple(c.strip() for c in first.split(","))
        if header == PLACEMENT_HEADER:
            raise InputError(path=spec, line=1, field=None,
                             problem=f"a pod list without times ({','.join(header)}: one of "
                                     f"the placement-only variants, as "
                                     f"openb_pod_list_multigpu50.csv)",
                             expected="a pod list with creation, deletion and scheduled times "
                                      "to replay (placement-only lists are read by python -m "
                                      "bench.gpu_fragmentation)")
        if header != POD_HEADER and not _near(header, POD_HEADER):
            if not looks_like_batch_tasks(first):
                raise InputError(path=spec, line=1, field=None,
                                 problem="a .csv with neither the Alibaba pod list header "
                                         "nor the columns of a batch_task.csv (9 of the "
                                         "v2018 trace, 8 of v2017)",
                                 expected=WORKLOAD_KINDS)
            kind = "batch_task.csv"
    for k in options:
        if k not in _OPTIONS[kind]:
            raise InputError(path=spec, line=None, field=k,
                             problem=f"option {k!r} does not apply to {kind} files",
                             expected=f"only {', '.join(_OPTIONS[kind]) or 'no options'}")
    if kind == ".jsonl":
        return read_jobs(spec, cluster)
    if kind == ".swf":
        return read_swf(spec, cluster, **options)
    if kind == "batch_task.csv":
        return read_batch_tasks(spec, cluster, **options)
    if kind == ".json":
        try:
            return read_wfcommons(spec, cluster, **options)
        except InputError as e:
            if e.problem != NOT_INSTANCE:
                raise
            raise InputError(path=e.path, line=None, field=None, problem=e.problem,
                             expected=WORKLOAD_KINDS) from None
    return read_alibaba_pods(spec, cluster, **options)


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def require_jobs(wl: Workload, spec: str, doing: str) -> None:
    """``wl`` (read from ``spec``) must hold a job for a command that will ``doing`` it: an
    empty workload is valid for ``agora up``, which takes jobs as they are submitted, but a
    run over it would measure nothing."""
    if not wl.jobs:
        raise InputError(path=str(spec), line=None, field=None,
                         problem=f"has no jobs, so there is nothing to {doing}",
                         expected="a workload with at least one job (docs/inputs.md)")


def parse_option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` (a reader's option: ``max_jobs=1000``) -> (name, value as int, float,
    bool or text); ValueError saying what is wrong."""
    name, eq, value = text.partition("=")
    name = name.strip()
    if not eq or not name.isidentifier() or not value.strip():
        raise ValueError(f"{text[:80]!r}; expected NAME=VALUE, e.g. max_jobs=1000 (the "
                         f"options of each kind: docs/inputs.md)")
    return name, _value(value.strip())


def _value(s: str) -> Any:
    if _INT.fullmatch(s):
        if len(s) > 100:
            raise ValueError(f"a number of {len(s):,} digits; expected at most 100 digits")
        return int(s)
    if _FLOAT.fullmatch(s):
        return float(s)
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return s


def parse_synthetic(spec: str) -> dict[str, Any]:
    """``synthetic:a=1,b=x`` -> {'a': 1, 'b': 'x'}."""
    params: dict[str, Any] = {}
    rest = spec[len("synthetic:"):] if spec.startswith("synthetic:") else ""
    for i, part in enumerate(p for p in rest.split(",") if p.strip()):
        key, eq, val = part.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier() or key in params:
            raise InputError(path=spec, line=None, field=f"synthetic[{i}]",
                             problem=f"found {part!r}" + (" (repeated)" if key in params else ""),
                             expected="synthetic:key=value,key=value with distinct names")
        try:
            params[key] = _value(val.strip())
        except ValueError as e:
            problem, _, expected = str(e).partition("; expected ")
            raise InputError(path=spec[:80], line=None, field=key, problem=problem,
                             expected=expected or "synthetic:key=value,key=value") from None
    return params


def _synthetic(spec: str, cluster: Cluster, options: dict[str, Any]) -> Workload:
    params = parse_synthetic(spec)
    seed = params.pop("seed", options.pop("seed", 0))
    for k, v in options.items():
        params.setdefault(k, v)
    try:
        synthetic = importlib.import_module("agora.agents.workloads.synthetic")
    except ModuleNotFoundError as e:
        if e.name != "agora.agents.workloads.synthetic":
            raise
        raise InputError(path=spec, line=None, field=None,
                         problem=f"the synthetic generator is not available ({e})",
                         expected=WORKLOAD_KINDS) from None
    accepted = inspect.signature(synthetic.generate).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        for k in params:
            if k not in accepted or k == "cluster":
                names = ", ".join(x for x in accepted if x != "cluster")
                raise InputError(path=spec, line=None, field=k,
                                 problem=f"unknown synthetic parameter {k!r}",
                                 expected=f"one of {names}")
    try:
        return synthetic.generate(cluster, seed=seed, **params)
    except InputError:
        raise
    except ValueError as e:  # the generator's own range checks
        raise InputError(path=spec, line=None, field=None, problem=str(e)) from None
