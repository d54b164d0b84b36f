"""A trained (or training) set of site agents behind the simulator's ``Policy`` seam.

At every decision point the agents play bidding *rounds* until nothing more fits: build the
candidate window (``features.candidates``), encode each site's local state (``codec``), let
each uncertain agent send its code (``trigger``), score the window with the actor-critic
(``networks``) attending over the codes received, rank (``ranking``), and clear all bids with
the market's one rule (``agents.market.clear_sim``). Training rollouts and evaluation run
this same code; training only adds sampling and a ``Recorder``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from agents.learn.codec import Codec, dequantise
from agents.learn.features import LOCAL_DIM, OWN_FEATURES, SLOT_FEATURES, FeatureBuilder, candidates
from agents.learn.networks import ActorCritic
from agents.learn.ranking import bids_of, sample_orders, teacher_orders
from agents.learn.trigger import Mailbox, normalised_entropy
from agents.market import clear_sim


@dataclass(frozen=True)
class AgentConfig:
    """Shapes and communication settings of the agents; a checkpoint must match them."""

    k: int = 16
    """candidate slots per round (the window an agent scores); typical 8–32"""
    hidden: int = 64
    """width of every hidden layer (actor, critic, codec); typical 64–128"""
    site_dim: int = 8
    """size of the learned site embedding (parameter sharing across sites)"""
    code_dim: int = 8
    """latent dimensions of a message"""
    bits: int = 8
    """bits per latent dimension on the wire (2–8; int8 at 8)"""
    beta: float = 0.05
    """β of the codec's KL term"""
    threshold: float = 0.5
    """send a code when the normalised first-choice entropy exceeds this (0 = always)"""
    comm: str = "trigger"
    """trigger | always | none"""
    central_critic: bool = True
    """the critic reads the global state (MAPPO) or only the agent's own context"""

    def to_dict(self) -> dict:
        return asdict(self)


class Agents:
    """The networks and the static arrays of one cluster."""

    def __init__(self, cfg: AgentConfig, n_sites: int, state_dim: int) -> None:
        self.cfg = cfg
        self.n_sites = n_sites
        self.state_dim = state_dim
        self.model = ActorCritic(slot_dim=len(SLOT_FEATURES), own_dim=len(OWN_FEATURES),
                                 state_dim=state_dim, n_sites=n_sites, code_dim=cfg.code_dim,
                                 hidden=cfg.hidden, site_dim=cfg.site_dim,
                                 central_critic=cfg.central_critic)
        self.codec = Codec(local_dim=LOCAL_DIM, code_dim=cfg.code_dim, hidden=cfg.hidden,
                           bits=cfg.bits, beta=cfg.beta)

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.model, self.codec]

    def peer_inputs(self, codes: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mailbox (S, Z) int8 + has (S,) -> per receiver codes (S, S, Z), mask (S, S)."""
        s = self.n_sites
        pc = np.broadcast_to(dequantise(codes, self.cfg.bits), (s, *codes.shape))
        pm = has[None, :] & ~np.eye(s, dtype=bool)
        return pc, pm

    @torch.no_grad()
    def forward_np(self, rv, codes: np.ndarray, has: np.ndarray):
        s = self.n_sites
        pc, pm = self.peer_inputs(codes, has)
        logits, value = self.model(
            torch.from_numpy(rv.slots), torch.from_numpy(rv.mask), torch.from_numpy(rv.own),
            torch.arange(s), torch.from_numpy(np.ascontiguousarray(pc)), torch.from_numpy(pm),
            torch.from_numpy(np.broadcast_to(rv.state, (s, len(rv.state))).copy()))
        return logits.numpy(), value.numpy()


class Recorder:
    """Per-round arrays of a rollout (one row per round, all sites in it)."""

    KEYS = ("slots", "mask", "own", "local", "codes", "has", "state", "order", "plen", "logp",
            "value", "active", "now")

    def __init__(self) -> None:
        self.rows: dict[str, list] = {k: [] for k in self.KEYS}

    def add(self, **kw) -> None:
        for k in self.KEYS:
            self.rows[k].append(kw[k])

    def __len__(self) -> int:
        return len(self.rows["now"])

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.stack(v) for k, v in self.rows.items()}


def srpt_keys(window: list, k: int) -> np.ndarray:
    """The job-level SRPT teacher's keys (job work left, then instance duration)."""
    keys = np.full(k, np.inf)
    for i, t in enumerate(window):
        keys[i] = t.job.work_left + 1e-3 * t.duration
    return keys


class LearnedPolicy:
    """``Policy`` over ``Agents``. ``rng`` given: sample rankings (training); else greedy.
    ``teacher`` ('srpt'): act by the job-level SRPT ranking instead (imitation data, and the
    reference heuristic row). ``recorder``: keep every round for PPO."""

    def __init__(self, agents: Agents, *, name: str = "learned", rng=None,
                 recorder: Recorder | None = None, teacher: str | None = None,
                 comm: str | None = None, threshold: float | None = None) -> None:
        self.agents = agents
        self.name = name
        self.rng = rng
        self.recorder = recorder
        self.teacher = teacher
        cfg = agents.cfg
        self.comm = comm or cfg.comm
        self.threshold = cfg.threshold if threshold is None else threshold
        self.rounds = 0

    def reset(self, sim) -> None:
        a = self.agents
        if len(sim.cluster.sites) != a.n_sites:
            raise ValueError(f"the policy was built for {a.n_sites} sites; the cluster has "
                             f"{len(sim.cluster.sites)}")
        self.builder = FeatureBuilder(sim.cluster, a.cfg.k)
        if self.builder.state_dim != a.state_dim:
            raise ValueError(f"state size {self.builder.state_dim} != the policy's {a.state_dim}")
        self.sim = sim
        self.t0 = sim.jobs[0].job.arrival if sim.jobs else sim.now
        self.mailbox = Mailbox(a.n_sites, a.cfg.code_dim, threshold=self.threshold,
                               mode=self.comm)

    def schedule(self, ctx) -> None:
        a, k, sim = self.agents, self.agents.cfg.k, self.sim
        while True:
            window = candidates(ctx, k)
            if not window:
                return
            rv = self.builder.view(sim, window, self.t0)
            active = rv.n_valid > 0
            if not active.any():
                return
            valid = np.concatenate([rv.mask, np.ones((a.n_sites, 1), bool)], axis=1)
            mb = self.mailbox
            if self.comm == "trigger":
                fresh = a.codec.wire(rv.local)
                logits, _ = a.forward_np(rv, mb.codes, mb.has)
                mb.offer(fresh, normalised_entropy(logits, valid), active)
            elif self.comm == "always":
                mb.offer(a.codec.wire(rv.local), np.ones(a.n_sites), active)
            else:
                mb.offer(np.zeros_like(mb.codes), np.zeros(a.n_sites), active)
            codes, has = mb.codes.copy(), mb.has.copy()
            if self.teacher is not None and self.recorder is None:
                logits = value = None
            else:
                logits, value = a.forward_np(rv, codes, has)
            if self.teacher == "srpt":
                order, plen = teacher_orders(np.broadcast_to(srpt_keys(window, k), rv.mask.shape),
                                             valid)
            else:
                order, plen = sample_orders(logits, valid, self.rng)
            if self.recorder is not None:
                self.recorder.add(slots=rv.slots, mask=rv.mask, own=rv.own, local=rv.local,
                                  codes=codes, has=has, state=rv.state, order=order, plen=plen,
                                  logp=_logp_np(logits, order, plen), value=value,
                                  active=active, now=ctx.now)
            cleared = clear_sim(ctx, bids_of(window, order, plen, rv.mask, k), self.builder.pref)
            self.rounds += 1
            if cleared.placed == 0:
                return


def _logp_np(logits: np.ndarray, order: np.ndarray, plen: np.ndarray) -> np.ndarray:
    from agents.learn.ranking import log_prob
    return log_prob(torch.from_numpy(logits), torch.from_numpy(order),
                    torch.from_numpy(plen)).numpy()
