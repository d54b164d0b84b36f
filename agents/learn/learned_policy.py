"""The trainable site agents: their configuration and their torch modules (the actor-critic
and the message codec), one set of weights shared by every site.

Acting is not here: a site acts with ``agents.step`` (the one agent step, numpy only), from
the weights ``policy()`` exports, in the simulation engine (training rollouts, evaluation) and
in the cluster alike. Training reads the recorded rounds back through the torch modules to
compute log-probabilities, values and the codec's loss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from agora.agents.learn.codec import Codec
from agora.agents.learn.global_state import GlobalStatePolicy
from agora.agents.learn.networks import ActorCritic
from agora.agents.step.neighbours import DEFAULT_PEERS
from agora.agents.step.observe import LOCAL_DIM, OWN_FEATURES, SLOT_FEATURES
from agora.agents.step.policy import COMPETENCE_BOUNDS, NumpyPolicy
from agora.agents.step.simulation import STATE_DIM


@dataclass(frozen=True)
class AgentConfig:
    """Shapes and communication settings of the agents; a checkpoint must match them."""

    k: int = 16
    """candidate slots per round (the window an agent scores); typical 8–32"""
    hidden: int = 64
    """width of every hidden layer (actor, critic, codec); typical 64–128"""
    code_dim: int = 8
    """latent dimensions of a message"""
    bits: int = 8
    """bits per latent dimension on the wire (2–8; int8 at 8)"""
    beta: float = 0.05
    """β of the codec's KL term"""
    threshold: float = 0.5
    """send a code when the normalised first-choice entropy exceeds this (0 = always)"""
    comm: str = "trigger"
    """trigger | always | none | global (every peer's exact state each round: a
    simulation-only upper bound, ``global_state``; its weights run no other mode)"""
    peers: int = DEFAULT_PEERS
    """sites each agent listens to at most, its nearest by link (``step.neighbours``); the
    weights do not depend on it: any value runs any checkpoint"""
    central_critic: bool = True
    """the critic reads the system summary (MAPPO) or only the agent's own context"""
    encoder: str = "mlp"
    """how a slot is encoded: mlp (its own features) | graph (and its job's DAG, message
    passing as in Decima: ``networks.JobGraph``, ``step.job_graph``)"""

    def __post_init__(self) -> None:
        for name, lo, hi in _WHOLE_BOUNDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name}: found {v!r}; expected a whole number in "
                                 f"[{lo}, {hi:,}]")
        for name in ("beta", "threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
                raise ValueError(f"{name}: found {v!r}; expected a finite number >= 0")
        if self.comm not in _COMMS:
            raise ValueError(f"comm: found {self.comm!r}; expected one of {', '.join(_COMMS)}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: found {self.encoder!r}; expected one of "
                             f"{', '.join(ENCODERS)}")

    def to_dict(self) -> dict:
        return asdict(self)


_WHOLE_BOUNDS = (("k", 1, 1024), ("hidden", 1, 4096), ("code_dim", 1, 256),
                 ("bits", 2, 8), ("peers", 1, 1_000_000))
"""(field, least, most) of AgentConfig's whole-number shapes (``bits``: the codec's range):
generous, so that a typo (0, a negative, a million) is named here rather
than as a division by zero or a tensor of negative size deep in training"""
_COMMS = ("trigger", "always", "none", "global")
ENCODERS = ("mlp", "graph")


def peer_dim(cfg: AgentConfig) -> int:
    """What attention reads of a peer: its code (``code_dim``), or its exact state
    (``LOCAL_DIM``, comm 'global')."""
    return LOCAL_DIM if cfg.comm == "global" else cfg.code_dim


class Agents:
    """The networks of the site agents (any number of sites: no per-site parameters)."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.state_dim = STATE_DIM
        self.peer_dim = peer_dim(cfg)
        self.model = ActorCritic(slot_dim=len(SLOT_FEATURES), own_dim=len(OWN_FEATURES),
                                 state_dim=STATE_DIM, code_dim=self.peer_dim,
                                 hidden=cfg.hidden, central_critic=cfg.central_critic,
                                 graph=cfg.encoder == "graph")
        self.codec = Codec(local_dim=LOCAL_DIM, code_dim=cfg.code_dim, hidden=cfg.hidden,
                           bits=cfg.bits, beta=cfg.beta)
        self.max_choices: int | None = None
        """the acting policy's competence (``agents.learn.competence``): set from a
        checkpoint that measured it; None while training"""
        self.max_open: int | None = None
        """the other half of its competence: the most open tasks of its training's pools"""

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.model, self.codec]

    def policy_weights(self) -> dict[str, np.ndarray]:
        """Every tensor of the actor-critic and the codec as numpy arrays, keyed
        ``model.<name>`` and ``codec.<name>`` (what ``NumpyPolicy`` reads)."""
        out = {f"model.{k}": v.detach().cpu().numpy().copy()
               for k, v in self.model.state_dict().items()}
        out.update({f"codec.{k}": v.detach().cpu().numpy().copy()
                    for k, v in self.codec.state_dict().items()})
        return out

    def policy(self, *, comm: str | None = None, threshold: float | None = None
               ) -> NumpyPolicy:
        """The acting policy (numpy) with the current weights; ``comm`` may switch among the
        modes that read codes, never into or out of 'global' (another input width)."""
        cfg = self.cfg.to_dict()
        for name in COMPETENCE_BOUNDS:
            if getattr(self, name) is not None:
                cfg[name] = getattr(self, name)
        if comm is not None:
            cfg["comm"] = comm
        if threshold is not None:
            cfg["threshold"] = threshold
        glob = self.cfg.comm == "global"
        if (cfg["comm"] == "global") != glob:
            raise ValueError(f"comm {cfg['comm']!r}: these weights were trained with comm "
                             f"{self.cfg.comm!r}; 'global' reads exact peer states, the other "
                             f"modes codes, so neither runs the other's weights")
        return (GlobalStatePolicy if glob else NumpyPolicy)(self.policy_weights(), cfg)
