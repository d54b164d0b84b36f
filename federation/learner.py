"""What federation needs from a site's learner, and the checks on weights that cross sites.

A site's learner (``agents.learn``'s PPO learner over that site's own simulator and
workload, or a test's small model) exposes its parameters as a named list of float arrays.
Only these arrays and a sample count ever leave the site: never trajectories or workload
data.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from agora.agents.limits import MAX_ABS_WEIGHT


class SiteLearner(Protocol):
    site: str

    def weight_names(self) -> list[str]:
        """Stable names of the arrays of ``get_weights`` (e.g. ``actor.head.weight``)."""

    def get_weights(self) -> list[np.ndarray]:
        """The actor, critic and codec parameters, in ``weight_names`` order."""

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Load parameters (same order, shapes and dtypes as ``get_weights``)."""

    def train(self, steps: int, config: dict) -> tuple[int, dict[str, float]]:
        """Run ``steps`` environment steps of local training; return (samples used,
        metrics)."""

    def evaluate(self, config: dict) -> tuple[int, dict[str, float]]:
        """Evaluate the current weights locally; return (samples, metrics)."""


class WeightError(ValueError):
    """Weights that cannot be aggregated: the message names the site and the tensor."""


def check_weights(site: str, names: Sequence[str], expected: Sequence[np.ndarray],
                  got: Sequence[np.ndarray]) -> None:
    """Raise ``WeightError`` unless ``got`` matches ``expected`` array by array in count,
    shape and dtype, with every value finite and at most ``MAX_ABS_WEIGHT`` in magnitude.
    ``site``: who sent it, a site's name or ``node N`` (a deployed server knows node ids
    only: "site node N" read oddly, a probe)."""
    who = site if site.startswith("node ") else f"site {site}"
    if len(got) != len(expected):
        raise WeightError(f"{who}: sent {len(got)} tensors, expected {len(expected)} "
                          f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    for name, ref, arr in zip(names, expected, got):
        arr = np.asarray(arr)
        if arr.shape != ref.shape:
            raise WeightError(f"{who}: tensor {name!r} has shape {arr.shape}, expected "
                              f"{ref.shape}")
        if arr.dtype != ref.dtype:
            raise WeightError(f"{who}: tensor {name!r} has dtype {arr.dtype}, expected "
                              f"{ref.dtype}, as sent")
        bad = ~np.isfinite(arr)
        if bad.any():
            raise WeightError(f"{who}: tensor {name!r} has {int(bad.sum())} non-finite "
                              f"values (NaN or inf) of {arr.size}")
        if arr.size and float(np.abs(arr).max()) > MAX_ABS_WEIGHT:
            raise WeightError(f"{who}: tensor {name!r} has values of magnitude up to "
                              f"{float(np.abs(arr).max()):.3g}; expected at most "
                              f"{MAX_ABS_WEIGHT:g} (MAX_ABS_WEIGHT)")
