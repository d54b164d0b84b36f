"""What the ``agora`` commands of the simulation engine share about their options: each
value checked when the command line is parsed (exit 2 naming the option: ``_number``,
``_whole``, ``_policies_arg``), the scenario options and their ``Scenario``, a transform that
cannot apply named by its options, the ``--config`` file's settings, and ``--out`` made before
a run."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from agora.agents.baselines import FAMILIES, choices, is_baseline, make_policy
from agora.agents.limits import MAX_TIME
from agora.agents.sim.config import MAX_SEED, SEED_TEXT
from agora.agents.workloads.alibaba import SPLITS
from agora.agents.workloads.transform import MAX_INFLATE
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import require_jobs
from agora.deploy.arg_types import _number, _whole

DEFAULT_SITES, DEFAULT_SPLIT = 8, "stratified"


# -- option values, checked when the command line is parsed (exit 2 naming the option) ----
# (``_number`` and ``_whole`` live in ``arg_types``: commands that must start light use them)

_seed = _whole(ge=0, le=MAX_SEED, text=SEED_TEXT)

MAX_SEEDS = 10_000
"""most seeds ``--seeds`` runs (0..N-1, one run of every policy each): a bound that keeps a
typo from asking for years of simulation or a list of seeds no memory holds"""
_seeds = _whole(ge=1, le=MAX_SEEDS)
_threshold = _number(ge=0, unit="0 sends every code; above 1 none")


def _policies_arg(text: str) -> list[str]:
    """``--policies``: comma-separated baselines, each once."""
    names = [p.strip() for p in text.split(",")]
    seen: dict[str, str] = {}
    for p in names:
        if not p:
            raise argparse.ArgumentTypeError(
                f"an empty name in {text!r}; expected comma-separated baselines "
                f"({choices()})")
        if not is_baseline(p):
            if p.partition(":")[0] in FAMILIES:
                try:
                    make_policy(p)            # a known family with a bad value: say why
                except ValueError as e:
                    raise argparse.ArgumentTypeError(str(e)) from None
            raise argparse.ArgumentTypeError(f"unknown policy {p!r}; expected comma-separated "
                                             f"baselines ({choices()})")
        key = _canonical(p)
        if key in seen:
            raise argparse.ArgumentTypeError(
                f"{p!r} is named twice (as {seen[key]!r} before it); expected each policy "
                f"once (a second run of a policy on the same seed would count as another "
                f"sample)")
        seen[key] = p
    return names


def _canonical(name: str) -> str:
    """One spelling of a policy: a family's value as a number (``srpt-cap:2``,
    ``srpt-cap:2.0`` and ``srpt-cap:02`` are one policy; a probe ran all three)."""
    family, _, value = name.partition(":")
    if family in FAMILIES:
        try:
            return f"{family}:{float(value)!r}"
        except ValueError:
            pass
    return name


def _scenario_args(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    g = p.add_argument_group("scenario")
    g.add_argument("--cluster", default="default",
                   help="'default' (8 mixed sites), a cluster YAML, or an Alibaba node-list CSV")
    g.add_argument("--workload", default="synthetic",
                   help="'synthetic[:jobs=400,load=0.85,...]', a jobs .jsonl, a .swf trace, "
                        "an Alibaba pod-list CSV, an Alibaba batch_task.csv (v2018: DAG "
                        "jobs; or v2017), or a WfCommons workflow .json or a folder of them "
                        "(DAG jobs)")
    g.add_argument("--sites", type=int, default=None,
                   help=f"sites to split a node-list CSV into (default: {DEFAULT_SITES}; "
                        f"a node-list CSV only)")
    g.add_argument("--split", default=None, choices=SPLITS,
                   help=f"how to split a node-list CSV into sites (default: {DEFAULT_SPLIT}; "
                        f"a node-list CSV only)")
    g.add_argument("--arrival-window", type=_number(gt=0, le=MAX_TIME, unit="seconds"),
                   default=None, metavar="SECONDS",
                   help="compress the trace's arrivals into this many seconds")
    g.add_argument("--load", type=_number(gt=0, le=10), default=None,
                   help="scale arrivals to this offered load on the dominant resource")
    g.add_argument("--inflate", type=_number(ge=1, le=MAX_INFLATE), default=1.0,
                   help="clone jobs to this multiple, arrivals seeded (default 1: none)")
    g.add_argument("--workload-option", action="append", default=[], metavar="NAME=VALUE",
                   help="an option of the workload's reader, repeatable: e.g. max_jobs=1000 "
                        "or machine_mem_mib=131072 (batch_task.csv), arrival_gap_s=60 "
                        "(WfCommons), rigid=false (SWF); see docs/inputs.md")
    if config:
        g.add_argument("--config", default=None,
                       help="simulation YAML (objective weights, seed, malleable model, ...)")


def _scenario(a: argparse.Namespace):
    from agora.agents.sim.runner import Scenario
    from agora.agents.workloads.loader import parse_option, splits_into_sites

    if not splits_into_sites(a.cluster):
        for opt, v in (("--sites", a.sites), ("--split", a.split)):
            if v is not None:
                raise ValueError(f"{opt} {v}: applies to an Alibaba node-list .csv cluster "
                                 f"only, and --cluster {a.cluster} has its sites in it; "
                                 f"expected no {opt} with this cluster")
    options: dict = {}
    for text in getattr(a, "workload_option", []) or []:
        try:
            name, value = parse_option(text)
        except ValueError as e:
            raise ValueError(f"--workload-option: {e}") from None
        if name in options:
            raise ValueError(f"--workload-option: {name} given twice; expected each once")
        if name == "seed" and a.workload.split(":")[0] == "synthetic":
            raise ValueError(f"--workload-option seed={value}: a synthetic workload is drawn "
                             f"with the run's seed; expected --workload synthetic:seed=N to "
                             f"fix it, or the run's --seed / --seeds")
        options[name] = value
    return Scenario(cluster=a.cluster, workload=a.workload,
                    sites=DEFAULT_SITES if a.sites is None else a.sites,
                    split=a.split or DEFAULT_SPLIT, arrival_window=a.arrival_window,
                    load=a.load, inflate=a.inflate,
                    workload_options=tuple(sorted(options.items())))


def _build(a: argparse.Namespace, sc, seed: int):
    """``sc.build(seed)``, a failed transform named by its options (``_transforms``); a
    workload without jobs refused (``require_jobs``)."""
    with _transforms(a):
        cluster, wl = sc.build(seed)
    require_jobs(wl, sc.workload, "run")
    return cluster, wl


@contextlib.contextmanager
def _transforms(a: argparse.Namespace):
    """A transform the options asked for that cannot be applied (arrivals or deadlines past
    the bound of agents/limits.py, too many clones) is a ValueError naming those options."""
    from agora.agents.workloads.transform import MAX_JOBS, TransformError

    try:
        yield
    except TransformError as e:
        if e.step == "inflate":
            opts, expected = [f"--inflate {a.inflate:g}"], \
                f"a factor that makes at most {MAX_JOBS:,} jobs"
        else:
            opts = [f"--{k.replace('_', '-')} {v:g}"
                    for k, v in (("arrival_window", a.arrival_window), ("load", a.load))
                    if v is not None] or ["the arrival scaling"]
            expected = e.expected or (f"values that keep every arrival and deadline within "
                                      f"{MAX_TIME:,.0f} s")
        raise ValueError(f"{', '.join(opts)}: {e}; expected {expected}") from None


def _sim_config(a: argparse.Namespace, *, fixed_seed: str | None = None):
    """The ``--config`` file's settings. ``fixed_seed``: the command sets every run's seed
    itself (``--seeds``), so a ``seed`` in the file would not be used: refused, naming it."""
    from agora.agents.sim.config import SimConfig, read_sim_config

    if a.config is None:
        return SimConfig(), {}
    cfg, given = read_sim_config(a.config)
    if fixed_seed is not None and "seed" in given:
        raise InputError(path=a.config, line=given["seed"], field="seed",
                         problem=f"{fixed_seed} and would not use this seed",
                         expected="no 'seed' in the file for this command (agora simulate "
                                  "takes it)")
    return cfg, given


def missing_folders(path: str) -> list[Path]:
    """The folders of ``path`` that do not exist yet, deepest first (what ``_check_out``
    will make, and ``remove_if_empty`` takes back when the run fails)."""
    p = Path(path)
    return [q for q in (p, *p.parents) if not q.exists()]


def remove_if_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: a run that failed leaves
    no folder it made (a probe: a bad checkpoint left an empty --out behind)."""
    for q in folders:
        try:
            q.rmdir()
        except OSError:
            return


def _check_out(path: str) -> Path:
    """``--out``: made (a folder this user can write) before anything runs, so a run's
    results are never lost to a bad path after the run."""
    if not path.strip():         # a probe: '' was taken, and wrote nothing
        raise ValueError(f"--out {path!r}: an empty path; expected a folder for result.json "
                         f"and the Gantt charts")
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"--out {path}: a file, not a folder; expected a folder for "
                         f"result.json and the Gantt charts") from None
    except OSError as e:
        raise ValueError(f"--out {path}: cannot make the folder ({e.strerror or e}); expected "
                         f"a folder this user can write") from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: this user cannot write there; expected a folder "
                         f"this user can write")
    if (d / "result.json").is_dir():
        raise ValueError(f"--out {path}: {d / 'result.json'} is a folder; expected a file "
                         f"there or nothing")
    return d
