"""One site's decision in the cluster engine: the learned policy for *one* row.

The simulation engine's ``LearnedPolicy`` computes every site's row at once; in the cluster
engine each site agent runs in its own process and sees only its own observation
(:class:`SiteObs`) and the codes its peers sent it. This module is that per-site half of
``LearnedPolicy.schedule``, written so that, given the same observation and the same
mailbox, it computes the same logits, the same trigger decision and the same bids (a test
compares them row by row with the batched version):

1. ``trigger``: entropy of the first choice with the mailbox as it stands -> send or not.
2. ``bids``: logits with the mailbox after this round's codes arrived, greedy ranking, bids
   as in ``agents.learn.ranking.bids_of`` -- but capped to what the site's free resources
   can hold together (the coordinator rejects a site's bid batch item that would
   over-allocate it; the simulator's market would simply place fewer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.learn.codec import dequantise
from agents.learn.learned_policy import Agents
from agents.learn.ranking import bid_price, sample_orders
from agents.learn.trigger import normalised_entropy


@dataclass
class SiteObs:
    """What a site agent is told in one round (its own row of ``features.RoundView``)."""

    round: int
    slots: np.ndarray
    """(k, F) float32"""
    mask: np.ndarray
    """(k,) bool: the slot's task fits at this site now"""
    own: np.ndarray
    """(G,) float32"""
    local: np.ndarray
    """(LOCAL_DIM,) float32: what the codec encodes"""
    tasks: list[tuple[str, str, int, tuple[int, int, int]]]
    """per window slot: (job id, task id, open instances, (milli-cpu, MiB, milli-gpu))"""
    free: tuple[int, int, int]
    """the site's free (milli-cpu, MiB, milli-gpu) summed over its live nodes"""
    completions: list[tuple[str, str, int, int, str]]
    """instances of this site that ended since the last round: (job, task, begin, end,
    'completed' | 'failed')"""


class Mailbox:
    """The latest code received from each peer (the receiving half of ``trigger.Mailbox``)."""

    def __init__(self, n_sites: int, code_dim: int) -> None:
        self.codes = np.zeros((n_sites, code_dim), dtype=np.int8)
        self.has = np.zeros(n_sites, dtype=bool)

    def put(self, sender: int, code: np.ndarray) -> None:
        self.codes[sender] = code
        self.has[sender] = True


class SiteBrain:
    def __init__(self, agents: Agents, site: int) -> None:
        self.agents = agents
        self.site = site
        self.k = agents.cfg.k
        self.threshold = agents.cfg.threshold
        self.comm = agents.cfg.comm

    @torch.no_grad()
    def logits(self, obs: SiteObs, mailbox: Mailbox) -> np.ndarray:
        a, s = self.agents, self.agents.n_sites
        pm = mailbox.has.copy()
        pm[self.site] = False
        pc = dequantise(mailbox.codes, a.cfg.bits)
        logits, _ = a.model(
            torch.from_numpy(obs.slots[None]), torch.from_numpy(obs.mask[None]),
            torch.from_numpy(obs.own[None]), torch.tensor([self.site]),
            torch.from_numpy(np.ascontiguousarray(pc[None])), torch.from_numpy(pm[None]),
            torch.zeros((1, a.state_dim), dtype=torch.float32))
        return logits.numpy()[0]

    def valid(self, obs: SiteObs) -> np.ndarray:
        return np.concatenate([obs.mask, [True]])

    def trigger(self, obs: SiteObs, mailbox: Mailbox) -> np.ndarray | None:
        """This round's code if the agent sends one (active and uncertain enough), else
        None."""
        if not obs.mask.any() or self.comm == "none":
            return None
        if self.comm != "always":
            h = normalised_entropy(self.logits(obs, mailbox)[None], self.valid(obs)[None])[0]
            if h < self.threshold:
                return None               # suppressed: nothing to encode
        return self.agents.codec.wire(obs.local[None])[0]

    def bids(self, obs: SiteObs, mailbox: Mailbox) -> list[tuple[str, str, int, int]]:
        """(job, task, instances, price) in ranking order; empty when the agent passes."""
        if not obs.mask.any():
            return []
        logits = self.logits(obs, mailbox)
        order, plen = sample_orders(logits[None], self.valid(obs)[None], None)
        order, plen = order[0], int(plen[0])
        k = self.k
        left = list(obs.free)
        out = []
        for pos, item in enumerate(order):
            if item == k or not obs.mask[item]:
                continue
            job, task, n_open, demand = obs.tasks[item]
            n = n_open
            for r in range(3):
                if demand[r] > 0:
                    n = min(n, left[r] // demand[r])
            if n <= 0:
                continue
            for r in range(3):
                left[r] -= n * demand[r]
            out.append((job, task, int(n), int(bid_price(pos, plen, k))))
        return out
