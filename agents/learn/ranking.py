"""The multi-bid action: a Plackett-Luce ranking of an agent's valid slots and "pass",
sampled with the Gumbel-top-k trick (Kool et al., ICML 2019, arXiv 1903.06059), turned into
market bids.

An agent's logits are ``k + 1`` scores (slot scores, then "pass" at index ``k``; masked slots
are -inf). Adding i.i.d. Gumbel noise and sorting gives a ranking distributed as
Plackett-Luce; the *choices that matter* are the slots ranked before "pass" (``plen - 1`` of
them) and "pass" itself, so the action's log-probability is over that prefix only:

    log p = Σ_{p < plen} [ s_π(p) − logsumexp_{q >= p} s_π(q) ]

**Bids.** Every valid slot bids for all its open instances, at a price that falls with its
position p in the ranking: ``price_of(2(k + 1) − p)`` before "pass" (the *preferred* tier),
``price_of(k + 1 − p)`` after it (the *reluctant* tier, always below every preferred bid of
any site). So the ranking orders the whole round (the clearing serves higher prices first),
and "pass" says *I'd rather another site took what follows* — a reluctant bid wins only what
no site wants more — without ever stalling work that only this site can run: the round stays
work-conserving and an episode cannot deadlock.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.market import Bid, price_of


def sample_orders(logits: np.ndarray, valid: np.ndarray, rng: np.random.Generator | None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """logits (S, k+1), valid (S, k+1) bool (pass always valid) -> order (S, k+1) item
    indices, valid ones first by descending perturbed score; plen (S,) = position of pass + 1.
    ``rng=None`` is the greedy ranking (no noise)."""
    x = np.where(valid, logits, -np.inf)
    if rng is not None:
        x = x + rng.gumbel(size=x.shape)
        x = np.where(valid, x, -np.inf)
    order = np.argsort(-x, axis=1, kind="stable")
    plen = np.argmax(order == logits.shape[1] - 1, axis=1) + 1
    return order.astype(np.int64), plen.astype(np.int64)


def teacher_orders(keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A heuristic's ranking: valid slots by ascending ``keys`` (S, k), then pass."""
    s, k = keys.shape
    x = np.where(valid[:, :k], keys, np.inf)
    slot_order = np.argsort(x, axis=1, kind="stable")
    nv = valid[:, :k].sum(axis=1)
    order = np.empty((s, k + 1), dtype=np.int64)
    for i in range(s):
        order[i, :nv[i]] = slot_order[i, :nv[i]]
        order[i, nv[i]] = k
        order[i, nv[i] + 1:] = slot_order[i, nv[i]:]
    return order, nv + 1


def log_prob(logits: torch.Tensor, order: torch.Tensor, plen: torch.Tensor) -> torch.Tensor:
    """Plackett-Luce log-probability of the prefix ``order[:, :plen]`` (B,)."""
    s = logits.gather(1, order)
    suffix = torch.logcumsumexp(s.flip(1), 1).flip(1)
    pos = torch.arange(order.shape[1], device=logits.device)
    keep = (pos[None, :] < plen[:, None]).float()
    return ((s - suffix) * keep).sum(1)


def first_choice_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the first pick's softmax (B,); masked slots carry ~0 probability."""
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


def bid_price(pos: int, plen: int, k: int) -> int:
    """The price of the slot at position ``pos`` of a ranking whose "pass" is at ``plen - 1``
    (module docstring: the preferred tier above every reluctant one)."""
    return price_of(2 * (k + 1) - pos if pos < plen else k + 1 - pos)


def bids_of(window: list, order: np.ndarray, plen: np.ndarray, valid: np.ndarray,
            k: int) -> list[Bid]:
    """Bids of every site for one round (see the module docstring for prices)."""
    out = []
    for site in range(order.shape[0]):
        for pos, item in enumerate(order[site]):
            if item == k or not valid[site, item]:
                continue
            t = window[item]
            out.append(Bid(site, t, t.open, bid_price(pos, plen[site], k)))
    return out
