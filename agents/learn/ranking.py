"""The multi-bid action's probabilities in torch, for training (the action itself -- a
Plackett-Luce ranking of an agent's valid slots and "pass", sampled with the Gumbel-top-k
trick, Kool et al., ICML 2019, arXiv 1903.06059, and its bids -- is ``agents.step.policy``).

An agent's logits are ``k + 1`` scores (slot scores, then "pass" at index ``k``; masked slots
are -inf). Adding i.i.d. Gumbel noise and sorting gives a ranking distributed as
Plackett-Luce; the *choices that matter* are the slots ranked before "pass" (``plen - 1`` of
them) and "pass" itself, so the action's log-probability is over that prefix only:

    log p = Σ_{p < plen} [ s_π(p) − logsumexp_{q >= p} s_π(q) ]
"""

from __future__ import annotations

import torch


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
