"""Simulation configuration: frozen dataclasses, one docstring per field, loadable from YAML."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml


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
class SimConfig:
    objective: Objective = field(default_factory=Objective)
    seed: int = 0
    """seeds the policy's random draws (the fault draws use the cluster's ``faults.seed``)"""
    check_invariants: bool = False
    """verify after every decision that no node is over-allocated (slower; tests use it)"""
    record_attempts: bool = True
    """keep every run of every instance (needed for Gantt charts and schedule checks)"""

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
    raw.update(overrides)
    return SimConfig(objective=Objective(**obj), **raw)
