"""Test fakes for federation: small learners that satisfy ``federation.learner.SiteLearner``.

Not an Agora learner: ``LinearSite`` is least squares on site-local synthetic data, small
enough that every FedAvg aggregate can be recomputed by hand. ``make_linear`` is the
factory a deployed SuperNode's ClientApp loads by name (``learner='tests.fakes:make_linear'``
in ``--node-config``), standing in for "the site's live agent" in the deployment test.
"""

from __future__ import annotations

import zlib

import numpy as np

W_TRUE = np.array([1.0, -2.0, 3.0])


class LinearSite:
    """Test fake: y = X·w + b on this site's own data; ``train`` takes gradient steps."""

    def __init__(self, site: str, seed: int, n: int, w_true: np.ndarray = W_TRUE) -> None:
        rng = np.random.default_rng(seed)
        self.site = site
        self.X = rng.normal(size=(n, len(w_true)))
        self.y = self.X @ w_true + 0.5 + rng.normal(scale=0.01, size=n)
        self.w = np.zeros(len(w_true))
        self.b = np.zeros(1)
        self.calls = 0

    def weight_names(self) -> list[str]:
        return ["w", "b"]

    def get_weights(self) -> list[np.ndarray]:
        return [self.w.copy(), self.b.copy()]

    def set_weights(self, ws) -> None:
        self.w, self.b = np.array(ws[0], dtype=float), np.array(ws[1], dtype=float)

    def loss(self) -> float:
        return float(np.mean((self.X @ self.w + self.b - self.y) ** 2))

    def train(self, steps: int, config: dict) -> tuple[int, dict[str, float]]:
        self.calls += 1
        for _ in range(steps):
            err = self.X @ self.w + self.b - self.y
            self.w -= 0.1 * self.X.T @ err / len(self.y)
            self.b -= 0.1 * err.mean(keepdims=True)
        return len(self.y), {"loss": self.loss()}

    def evaluate(self, config: dict) -> tuple[int, dict[str, float]]:
        return len(self.y), {"loss": self.loss()}


def make_linear(site: str, n: int | None = None, **_node_config) -> LinearSite:
    """The fake learner of site ``site``: its data seed is crc32(site), its sample count
    ``n`` (default 10 + crc32(site) % 50, so that sites differ and FedAvg's weighting
    shows)."""
    seed = zlib.crc32(site.encode())
    return LinearSite(site, seed, int(n) if n is not None else 10 + seed % 50)
