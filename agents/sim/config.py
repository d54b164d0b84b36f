"""Simulation configuration: frozen dataclasses, one docstring per field, loadable from YAML
(``load_sim_config``: the line-aware reader of ``agents.workloads.yamlmarks``, every field
checked, a bad one named by file, line and field as an ``InputError``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agora.agents.domain import is_finite_nonneg
from agora.agents.limits import MAX_SECONDS, MAX_WEIGHT
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.yamlmarks import (Where, at_key, describe, get_int, get_mapping,
                                              get_number, load_yaml)


@dataclass(frozen=True)
class Objective:
    """Weights of the multi-objective score ``R = w_util·U + w_qos·Q + w_energy·E`` (seed
    paper §3.2); each of U, Q, E lies in [0, 1], so R does when the weights sum to 1."""

    w_util: float = 0.25
    """weight of utilisation U (mean allocated fraction of cpu, mem and, if any, gpu)"""
    w_qos: float = 0.5
    """weight of QoS Q (mean over jobs of 1 / (1 + ln bounded slowdown), averaged with
    1 − deadline-miss rate when the workload has deadlines; ``metrics.qos_of``)"""
    w_energy: float = 0.25
    """weight of energy efficiency E (least possible dynamic energy of the work / energy
    actually drawn, idle included)"""
    slowdown_bound_s: float = 10.0
    """τ of the bounded slowdown max(JCT, τ) / max(ideal, τ) (Feitelson's convention keeps
    seconds-long jobs from dominating); typical 10 s"""

    def __post_init__(self) -> None:
        for name in WEIGHTS:
            v = getattr(self, name)
            if not (is_finite_nonneg(v) and v <= MAX_WEIGHT):
                raise ValueError(f"objective.{name} must be a finite number in [0, "
                                 f"{MAX_WEIGHT:g}], got {v!r}")
        v = self.slowdown_bound_s
        if not (is_finite_nonneg(v) and 0 < v <= MAX_SECONDS):
            raise ValueError(f"objective.slowdown_bound_s must be a finite number in "
                             f"(0, {MAX_SECONDS:g}] seconds, got {v!r}")


WEIGHTS = ("w_util", "w_qos", "w_energy")
"""the weights of ``Objective``"""


@dataclass(frozen=True)
class Reward:
    """The cost the learned agents minimise (the DeepRM shaping, Mao et al., HotNets 2016):
    every job present in the system costs, per simulated second, ``1 / jct_scale_s +
    slowdown_w / max(critical_path, slowdown_tau_s)`` -- summed over an episode, total JCT
    plus weighted total bounded slowdown."""

    jct_scale_s: float = 1000.0
    """seconds of job presence that cost 1"""
    slowdown_w: float = 0.5
    """weight of the bounded-slowdown term"""
    slowdown_tau_s: float = 10.0
    """τ of the bounded slowdown (``Objective.slowdown_bound_s``)"""

    def rate(self, critical_path: float) -> float:
        """Cost per second of a job with this critical path while it is present."""
        return 1.0 / self.jct_scale_s + self.slowdown_w / max(critical_path,
                                                               self.slowdown_tau_s)


@dataclass(frozen=True)
class Malleability:
    """How the number of instances a job runs at once changes what each one costs (the
    simulation engine's model of malleable stages; off by default: every instance runs for
    its task's ``duration``). Decima's Spark model (Mao et al., SIGCOMM 2019, §6.2) has both
    effects: speedup that is sub-linear in the executors a job holds, and a delay to move an
    executor to a job it has not run on.

    - ``contention`` c: an instance that starts while k - 1 other instances of its *job* run
      takes ``duration × (1 + c·(k - 1))``: the job's shared inputs, shuffle and driver slow
      each of its instances down as it widens. k instances started together do k units of
      work in about (1 + c·(k - 1)/2) units of time, a speedup that flattens towards 2/c.
    - ``warmup_s`` w: the first instance of a job on a node first spends w seconds holding
      its resources (fetching the job's code and inputs, warming an executor); later
      instances of the job on that node start warm.

    Both only lengthen runs, so the lower bounds of ``agents.headroom`` stay valid. The
    lever a scheduler gains is how many instances of each job it runs at once
    (``agents.baselines.parallelism``). The replay and Ray executors do not apply it: there
    the real runs take what they take."""

    contention: float = 0.0
    """c >= 0; typical 0.02..0.2 (0: linear speedup)"""
    warmup_s: float = 0.0
    """w >= 0 seconds; typical 0..30 (0: every node is warm for every job)"""

    def __post_init__(self) -> None:
        for name in ("contention", "warmup_s"):
            v = getattr(self, name)
            if not is_finite_nonneg(v):
                raise ValueError(f"malleable.{name} must be a finite number >= 0, got {v!r}")

    @property
    def on(self) -> bool:
        return bool(self.contention or self.warmup_s)


@dataclass(frozen=True)
class SimConfig:
    objective: Objective = field(default_factory=Objective)
    seed: int = 0
    """seeds the policy's random draws (the fault draws use the cluster's ``faults.seed``)"""
    check_invariants: bool = False
    """verify after every decision that no node is over-allocated (slower; tests use it)"""
    record_attempts: bool = True
    """keep every run of every instance (needed for Gantt charts and schedule checks)"""
    malleable: Malleability = field(default_factory=Malleability)
    """the model of malleable stages (``Malleability``; off by default)"""

    def to_dict(self) -> dict:
        return asdict(self)


MAX_SEED = 2 ** 63 - 1
"""the largest ``seed`` (numpy's generators take any int >= 0; the synthetic spec's bound)"""
SEED_TEXT = "a whole number >= 0 and < 2^63"
MAX_CONTENTION = 1000.0
"""the largest ``malleable.contention`` (at 1000 a second instance already runs 1001x
longer; typical values are 0.02..0.2)"""
SIM_KEYS = tuple(f.name for f in fields(SimConfig))
OBJECTIVE_KEYS = tuple(f.name for f in fields(Objective))
MALLEABLE_KEYS = tuple(f.name for f in fields(Malleability))


def load_sim_config(path: str | Path | None, **overrides: Any) -> SimConfig:
    """The simulation settings of a YAML file (``None``: the defaults), with ``overrides``
    (fields of SimConfig) put over them. See ``read_sim_config``."""
    cfg = SimConfig() if path is None else read_sim_config(path)[0]
    return replace(cfg, **overrides) if overrides else cfg


def read_sim_config(path: str | Path) -> tuple[SimConfig, dict[str, int | None]]:
    """Read a simulation YAML: a mapping with any of ``objective:`` (``w_util``, ``w_qos``,
    ``w_energy``: finite numbers in [0, 10^6], not all 0; ``slowdown_bound_s``: > 0 seconds),
    ``seed`` (a whole number >= 0), ``check_invariants`` and ``record_attempts`` (true or
    false) and ``malleable:`` (``contention`` in [0, 1000], ``warmup_s`` in [0, 10^9] s).

    Returns the config and, for each top-level key the file sets, its line (so a caller can
    name it, e.g. when a command-line option would decide the same thing). A file that is
    empty (or only comments) or holds ``null`` gives the defaults; so does ``objective:`` or
    ``malleable:`` left empty. Anything else that is not right -- YAML syntax, several
    documents, anchors and aliases that expand past the reader's bound, a key given twice,
    an unknown key, a value of the wrong type or range -- is an ``InputError`` naming the
    file, the line and the field."""
    path = str(path)
    try:
        doc = load_yaml(path)
    except InputError as e:
        if e.line is None and e.problem == "the file is empty":
            return SimConfig(), {}
        raise
    if doc is None:
        return SimConfig(), {}
    top = Where(path, getattr(doc, "line", 1))
    get_mapping(top, doc, optional=SIM_KEYS)
    lines = {k: getattr(doc, "key_lines", {}).get(k) for k in doc}
    kw: dict[str, Any] = {}
    if doc.get("objective") is not None:
        kw["objective"] = _objective(at_key(top, doc, "objective"), doc["objective"])
    if doc.get("malleable") is not None:
        kw["malleable"] = _malleable(at_key(top, doc, "malleable"), doc["malleable"])
    if "seed" in doc:
        w, v = at_key(top, doc, "seed"), doc["seed"]
        if isinstance(v, float) or (type(v) is int and v > MAX_SEED):  # 7.0 is a slip
            raise w.error(f"found {describe(v)}", SEED_TEXT)
        kw["seed"] = get_int(w, v, ge=0)
    for name in ("check_invariants", "record_attempts"):
        if name in doc:
            kw[name] = _bool(at_key(top, doc, name), doc[name])
    return SimConfig(**kw), lines


def _objective(where: Where, v: Any) -> Objective:
    get_mapping(where, v, optional=OBJECTIVE_KEYS)
    kw = {}
    for name in WEIGHTS:
        if name in v:
            kw[name] = get_number(at_key(where, v, name), v[name], ge=0, le=MAX_WEIGHT)
    if "slowdown_bound_s" in v:
        kw["slowdown_bound_s"] = get_number(at_key(where, v, "slowdown_bound_s"),
                                            v["slowdown_bound_s"], gt=0, le=MAX_SECONDS,
                                            unit="seconds")
    obj = Objective(**kw)
    if not any(getattr(obj, name) for name in WEIGHTS):
        raise where.error("every weight is 0 (the score would be 0 for every schedule)",
                          "at least one of " + ", ".join(WEIGHTS) + " > 0")
    return obj


def _malleable(where: Where, v: Any) -> Malleability:
    get_mapping(where, v, optional=MALLEABLE_KEYS)
    kw = {}
    if "contention" in v:
        kw["contention"] = get_number(at_key(where, v, "contention"), v["contention"], ge=0,
                                      le=MAX_CONTENTION)
    if "warmup_s" in v:
        kw["warmup_s"] = get_number(at_key(where, v, "warmup_s"), v["warmup_s"], ge=0,
                                    le=MAX_SECONDS, unit="seconds")
    return Malleability(**kw)


def _bool(where: Where, v: Any) -> bool:
    if not isinstance(v, bool):
        raise where.error(f"found {describe(v)}", "true or false")
    return v
