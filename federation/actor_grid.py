"""Flower rounds over the cluster engine's site actors (``agora up`` with
``federation.enabled``).

The same ``SiteGrid`` and Flower strategies as ``agora train --federated``; each node's
``deliver`` is a call to the site's Ray actor, which runs a real ``ClientApp`` over its own
``PPOSiteLearner`` (``SiteAgent.fl_handle``). Messages cross the process boundary as
Flower's own protobuf serialisation (``flwr.common.serde.message_to_proto``), so a site
actor sees exactly what a SuperNode would.

**Whose experience.** In ``agora up`` every site's learner trains on its own episodes of
the run's scenario, drawn from its own seed stream (``federation.train.site_seed``): the
trajectories never leave the site actor; only weights and a sample count do. (The
non-identical-sites benchmark, with workloads and node mixes that differ per site, is
``agora train --federated`` / ``bench/federation.py``.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import ray
from flwr.app import Message
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage

from agora.federation.grid import FIRST_NODE_ID, SiteGrid, SiteNode
from agora.federation.server import FederationConfig, run_federation


def to_bytes(msg: Message) -> bytes:
    return message_to_proto(msg).SerializeToString()


def from_bytes(data: bytes) -> Message:
    return message_from_proto(ProtoMessage.FromString(data))


def actor_grid(actors: list, sites: list[str], weight_names: list[str],
               timeout_s: float) -> SiteGrid:
    def node(site: str, actor) -> SiteNode:
        def deliver(msg: Message) -> Message | None:
            reply = ray.get(actor.fl_handle.remote(to_bytes(msg)), timeout=timeout_s)
            return None if reply is None else from_bytes(reply)
        return SiteNode(site, deliver, weight_names)

    return SiteGrid({FIRST_NODE_ID + i: node(s, a) for i, (s, a) in
                     enumerate(zip(sites, actors))})


@dataclass(frozen=True)
class ActorTrainer:
    """A site actor's Flower client (``SiteAgentActor.fl_handle``): a real ``ClientApp``
    over the site's own ``PPOSiteLearner``, built in the actor's process on the first Flower
    message (torch comes in there, for training, never for acting). ``learner``: the
    ``TrainConfig`` as a dict (``learner_config``)."""

    learner: dict

    def build(self, site: str):
        from flwr.app import Context, RecordDict

        from agora.agents.learn.loop import TrainConfig
        from agora.federation.client_app import make_client_app
        from agora.federation.ppo_learner import PPOSiteLearner

        app = make_client_app(PPOSiteLearner(site, TrainConfig.from_dict(self.learner)))
        ctx = Context(run_id=1, node_id=0, node_config={"site": site}, state=RecordDict(),
                      run_config={})

        def handle(data: bytes) -> tuple[bytes, bool]:
            msg = from_bytes(data)
            return to_bytes(app(msg, ctx)), msg.metadata.message_type.startswith("train")
        return handle


def learner_config(scenario, agent_cfg, seed: int, site_index: int) -> dict:
    """The ``agents.learn.loop.TrainConfig`` (as a dict) of one site's learner: the run's
    scenario, the checkpoint's agent shapes, no imitation warm start (the global model
    arrives with every round), the site's own seed."""
    from agora.agents.learn.loop import TrainConfig
    from agora.federation.train import site_seed

    return TrainConfig(scenario=asdict(scenario), seed=site_seed(seed, site_index),
                       bc_episodes=0, train_jobs=50, val_episodes=1,
                       agent=agent_cfg).to_dict()


def federate(actors: list, sites: list[str], weights: list[np.ndarray],
             weight_names: list[str], *, policy_config: dict, rounds: int, local_steps: int,
             strategy: str, seed: int, timeout_s: float = 3600.0
             ) -> tuple[list[np.ndarray], dict]:
    """``rounds`` Flower rounds over the actors from ``weights`` (named ``weight_names``, as
    ``Agents.policy_weights`` names them); returns the aggregated weights (also pushed into
    every actor's acting policy) and the per-round metrics."""
    grid = actor_grid(actors, sites, weight_names, timeout_s)
    cfg = FederationConfig(rounds=rounds, local_steps=local_steps, strategy=strategy,
                           seed=seed, timeout_s=timeout_s)
    result = run_federation(grid, weights, cfg)
    final = result.arrays.to_numpy_ndarrays()
    acting = dict(zip(weight_names, final))
    digests = ray.get([a.set_policy.remote(acting, policy_config) for a in actors],
                      timeout=timeout_s)
    train = {r: dict(m) for r, m in result.train_metrics_clientapp.items()}
    return final, {"rounds": rounds, "strategy": strategy, "train": train,
                   "errors": list(grid.errors), "policy_digests": digests}
