"""Simulation configuration: frozen dataclasses, one docstring per field, loadable from YAML."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from agora.agents.domain import is_finite_nonneg


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


def load_sim_config(path: str | Path | None, **overrides) -> SimConfig:
    """Read a YAML file with optional ``objective:`` and top-level fields of SimConfig; any
    unknown key is an error naming the allowed ones."""
    raw: dict = {}
    if path is not None:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of SimConfig fields at top level")
    allowed = {f.name for f in fields(SimConfig)}
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    obj = raw.pop("objective", None) or {}
    allowed_obj = {f.name for f in fields(Objective)}
    if set(obj) - allowed_obj:
        raise ValueError(f"{path}: unknown objective keys {sorted(set(obj) - allowed_obj)}; "
                         f"allowed: {sorted(allowed_obj)}")
    for k, v in obj.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{path}: objective.{k} must be a number >= 0, got {v!r}")
    mal = raw.pop("malleable", None) or {}
    allowed_mal = {f.name for f in fields(Malleability)}
    if not isinstance(mal, dict) or set(mal) - allowed_mal:
        raise ValueError(f"{path}: malleable: expected a mapping with keys among "
                         f"{sorted(allowed_mal)}, got {mal!r}")
    try:
        malleable = Malleability(**mal)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    raw.update(overrides)
    return SimConfig(objective=Objective(**obj), malleable=malleable, **raw)
