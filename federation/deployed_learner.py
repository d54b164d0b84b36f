"""A site's PPO learner under Flower's deployment engine: what a SuperNode's node config
names to train Agora's site agents on the site's own cluster and workload (recipe in
federation/RECIPE.md, "Training Agora's agents across domains"):

    flower-supernode ... --node-config "site='a' \\
        learner='agora.federation.deployed_learner:site_learner' \\
        cluster='/data/a/nodes.yaml' workload='/data/a/jobs.jsonl' state='/var/agora/fed-a'"

It is the in-process federation's learner (``federation.ppo_learner.PPOSiteLearner``) with
its network's shape taken from a checkpoint (``checkpoint``, default the one Agora ships:
the coordinator's ``initial-checkpoint`` must have the same shape, which every site's check
of the model it receives enforces, naming the tensor). Flower's SuperExec may start a
ClientApp process per message, and a learner built in one does not outlive it: the site's
local state -- Adam moments, value normaliser, generators, step budget -- is kept in the
``state`` folder (``state.pt``, written atomically after each ``train``) and read back when
the learner is built again. A new federation starts from an empty ``state`` folder; one
folder per site.

Node-config keys besides ``site`` and ``learner``: ``cluster``, ``workload``, ``state``
(required); ``checkpoint``, ``sites`` (agent sites the cluster is split into, default 4),
``seed`` (default 0), ``train-jobs`` (jobs per training episode, default 20),
``val-episodes`` (default 2). Another key is refused by name.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from agora.agents.learn import checkpoint as ck
from agora.agents.learn.loop import TrainConfig
from agora.agents.sim.runner import Scenario
from agora.federation.ppo_learner import PPOSiteLearner

SHIPPED = Path(__file__).resolve().parents[1] / "agents" / "learn" / "checkpoints" / \
    "learned-synE.pt"
"""the checkpoint Agora ships (``agora up``'s default policy)"""
STATE = "state.pt"
OPTIONAL = {"checkpoint": str(SHIPPED), "sites": 4, "seed": 0, "train-jobs": 20,
            "val-episodes": 2}


class PersistedSiteLearner:
    """``PPOSiteLearner`` whose local state lives in ``state`` between processes."""

    def __init__(self, learner: PPOSiteLearner, state: Path) -> None:
        self.learner, self.state = learner, state
        self.site = learner.site
        if (state / STATE).is_file():
            learner.load_state(state / STATE)

    def weight_names(self) -> list[str]:
        return self.learner.weight_names()

    def get_weights(self) -> list[np.ndarray]:
        return self.learner.get_weights()

    def set_weights(self, weights) -> None:
        self.learner.set_weights(weights)

    def train(self, steps: int, config: dict) -> tuple[int, dict[str, float]]:
        out = self.learner.train(steps, config)
        self.learner.save_state(self.state / STATE)
        return out

    def evaluate(self, config: dict) -> tuple[int, dict[str, float]]:
        return self.learner.evaluate(config)


def _whole(key: str, v, least: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise ValueError(f"node config {key!r}: {v!r}; expected a whole number >= {least}")
    return v


def site_learner(site: str, **keys) -> PersistedSiteLearner:
    """The learner a SuperNode's ClientApp serves (module doc); a bad key is named."""
    unknown = sorted(set(keys) - {"cluster", "workload", "state", *OPTIONAL})
    if unknown:
        raise ValueError(f"node config {unknown[0]!r}: not a key of this learner; expected "
                         f"cluster, workload, state, {', '.join(OPTIONAL)}")
    missing = [k for k in ("cluster", "workload", "state") if k not in keys]
    if missing:
        raise ValueError(f"node config {missing[0]!r}: missing; expected "
                         f"--node-config \"site='{site}' learner='...' cluster='PATH' "
                         f"workload='PATH' state='FOLDER'\"")
    kw = {**OPTIONAL, **keys}
    blob = ck.read(kw["checkpoint"])
    if "train_config" not in blob:
        raise ValueError(f"node config 'checkpoint': {kw['checkpoint']} holds no "
                         f"train_config; expected a checkpoint written by agora train")
    base = TrainConfig.from_dict(blob["train_config"])
    sc = Scenario(cluster=str(kw["cluster"]), workload=str(kw["workload"]),
                  sites=_whole("sites", kw["sites"], 1))
    cfg = replace(base, scenario=asdict(sc), seed=_whole("seed", kw["seed"], 0),
                  train_jobs=_whole("train-jobs", kw["train-jobs"], 1),
                  val_episodes=_whole("val-episodes", kw["val-episodes"], 1), bc_episodes=0)
    state = Path(str(kw["state"]))
    state.mkdir(parents=True, exist_ok=True)
    return PersistedSiteLearner(PPOSiteLearner(site, cfg), state)
