"""A federation site's learner: Agora's PPO (``agents.learn.loop.PPOLoop``) on that site's
own scenario, behind ``federation.learner.SiteLearner``.

What crosses the site's boundary: the actor-critic's and the codec's parameters and buffers
(``get_weights``, named ``ActorCritic.<state_dict name>`` / ``Codec.<state_dict name>``), a
sample count (the environment steps a round used) and scalar metrics. What stays at the
site: its workload, its cluster, its trajectories, and the learner's **local state**: the
Adam moments, the value normaliser's running return statistics (each site's returns have
their own scale: an ``edge`` organisation's jobs cost far less than an ``hpc`` one's), the
numpy generator that samples its rankings and minibatches, torch's generator (the codec's
reparameterisation noise), its episode counter and its step budget. When a round's global
weights arrive they replace the parameters in place, so the local Adam moments carry on
across rounds (local adaptive optimisers, as in Reddi et al., "Adaptive Federated
Optimization", ICLR 2021, keep theirs per client too); the critic, averaged across sites,
meets each site's own normaliser.

**Budget.** ``train(steps)`` runs whole episodes until ``steps`` more environment steps
(bidding rounds) are used; an overshoot is taken off the next round (``PPOLoop.run_updates``),
so R rounds of K steps use R·K steps (± one episode), the same as one local run of R·K.
The first ``train`` call first imitates the SRPT teacher on ``bc_episodes`` of the site's
own episodes (not counted as steps, as in ``agora train``).

**Threads.** A ``SiteGrid`` calls each site on its own thread. The simulator is pure Python
(threads would not run it in parallel) and torch's generator is process-global, so sites in
one process take turns (``_TURN``) and each swaps its own torch generator state in and out:
a site's result does not depend on which other sites share its process, or on their order.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.loop import MixedSource, PPOLoop, TrainConfig
from agora.agents.learn.networks import get_weights, set_weights

TRAIN_KEYS = ("charts/steps", "charts/total_steps", "charts/updates", "charts/episodic_return",
              "charts/jct_mean_s", "charts/score", "losses/policy", "losses/value",
              "losses/entropy", "losses/approx_kl")
"""the metrics a site reports to the server after training (its own log keeps them all)"""

_TURN = threading.Lock()
"""sites sharing a process train and evaluate one at a time (module docstring)"""


class PPOSiteLearner:
    """``SiteLearner`` over a live ``PPOLoop`` on ``cfg.scenario`` (the site's own).

    Args:
        site: the site's name (its Flower node's ``site``).
        cfg: its training configuration; ``cfg.seed`` seeds its generators, ``cfg.scenario``
            is its cluster and workload.
        source: episodes other than ``cfg.scenario``'s (a ``MixedSource``: the benchmark's
            central reference).
        eval_first: index of the first validation episode ``evaluate`` runs (the benchmark
            evaluates on episodes never used for anything else).
    """

    def __init__(self, site: str, cfg: TrainConfig, *, source: MixedSource | None = None,
                 eval_first: int = 0) -> None:
        self.site = site
        with _TURN:
            saved = torch.get_rng_state()
            self.loop = PPOLoop(cfg, source=source)
            self._torch_rng = torch.get_rng_state()
            torch.set_rng_state(saved)
        self.eval_first = eval_first
        self._last: dict[str, float] = {}
        self.history: list[dict] = []
        """this site's own log: one entry per ``train`` / ``evaluate`` call"""

    # -- SiteLearner --------------------------------------------------------------------------
    def weight_names(self) -> list[str]:
        return [f"{type(m).__name__}.{n}" for m in self.loop.agents.modules
                for n in m.state_dict()]

    def get_weights(self) -> list[np.ndarray]:
        return get_weights(self.loop.agents.modules)

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        set_weights(self.loop.agents.modules, [np.asarray(w) for w in weights])

    def train(self, steps: int, config: dict) -> tuple[int, dict[str, float]]:
        """Local PPO for ``steps`` environment steps (whole episodes, budget carried over);
        returns (steps used, ``TRAIN_KEYS`` metrics: means over this call's updates). The
        site's own ``history`` also keeps every loss and the behaviour-cloning losses."""
        with _TURN, self._own_torch_rng():
            bc = self.loop.bc_warm_start()
            n, metrics = self.loop.run_updates(int(steps))
        out = {**{f"bc/{k.split('/')[-1]}": v for k, v in bc.items()}, **metrics,
               "charts/steps": float(n), "charts/total_steps": float(self.loop.progress["step"])}
        self.history.append({"kind": "train", **out})
        # Flower aggregates only replies with identical metric keys: always the same ones
        # (a call that ran no update, its overshoot already covering the budget, repeats
        # the last values; its sample count of 0 gives them no weight).
        self._last = {k: out.get(k, self._last.get(k, 0.0)) for k in TRAIN_KEYS}
        return n, dict(self._last)

    def evaluate(self, config: dict) -> tuple[int, dict[str, float]]:
        """Greedy runs of the current weights on this site's held-back validation episodes
        (``config['val-episodes']``, default the configuration's ``val_episodes``); returns
        (episodes, {eval/jct_mean_s, eval/score})."""
        n = int(config.get("val-episodes", self.loop.cfg.val_episodes))
        with _TURN:
            out = self.loop.validate(n, first=self.eval_first)
        self.history.append({"kind": "evaluate", **out})
        return n, out

    # -- local state (resume) -----------------------------------------------------------------
    def save_state(self, path: str | Path, extra: dict | None = None) -> None:
        """The site's current weights and local state, as an ``agents.learn`` checkpoint."""
        blob = self.loop.state()
        blob["torch_rng"] = self._torch_rng
        checkpoint.save(path, agents=self.loop.agents, extra={**blob, "site": self.site,
                                                              **(extra or {})})

    def load_state(self, path: str | Path) -> dict:
        blob = checkpoint.read(path)
        if blob.get("site") != self.site:
            raise checkpoint.CheckpointMismatch(f"{path}: the state of site "
                                                f"{blob.get('site')!r}, not {self.site!r}")
        with _TURN:
            saved = torch.get_rng_state()
            self.loop.load_state(blob)
            torch.set_rng_state(saved)
        self._torch_rng = blob["torch_rng"]
        return blob

    @contextmanager
    def _own_torch_rng(self):
        saved = torch.get_rng_state()
        torch.set_rng_state(self._torch_rng)
        try:
            yield
        finally:
            self._torch_rng = torch.get_rng_state()
            torch.set_rng_state(saved)
