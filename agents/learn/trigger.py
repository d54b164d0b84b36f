"""When an agent speaks: event-triggered communication.

An agent sends its newly encoded code only when its *uncertainty* reaches ``threshold``;
otherwise its peers keep the last code it sent. The uncertainty is the normalised entropy of
its actor's first-choice distribution over the slots it may bid for (and "pass"), H / log n,
in [0, 1]: 0 when the policy is sure what it wants first, 1 when it is indifferent. It is
free (the actor computes it anyway), comparable across rounds with different numbers of
valid slots, and an uncertain agent is the one whose bids are most likely to change with
what its peers are about to do — the case for telling them. ``threshold = 0`` always
sends (every possible message is sent), ``threshold > 1`` never does.

A *possible message* is one agent in one round; ``sent / possible`` is
``comm/msgs_sent_frac``.
"""

from __future__ import annotations

import numpy as np


def normalised_entropy(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Rows of ``logits`` (S, n) restricted to ``mask`` -> H / log(n_valid) in [0, 1]
    (0 where fewer than two choices)."""
    x = np.where(mask, logits, -np.inf)
    x = x - x.max(axis=1, keepdims=True)
    p = np.where(mask, np.exp(x), 0.0)
    p /= p.sum(axis=1, keepdims=True)
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    n = mask.sum(axis=1)
    return np.where(n > 1, h / np.log(np.maximum(n, 2)), 0.0)


class Mailbox:
    """The latest code each peer has *received* from each agent, and the message counts."""

    def __init__(self, n_sites: int, code_dim: int, *, threshold: float,
                 mode: str = "trigger") -> None:
        if mode not in ("trigger", "always", "none"):
            raise ValueError(f"comm mode {mode!r}; expected trigger | always | none")
        self.threshold = threshold
        self.mode = mode
        self.codes = np.zeros((n_sites, code_dim), dtype=np.int8)
        self.has = np.zeros(n_sites, dtype=bool)
        """has agent i ever sent (before that, peers have nothing from it)"""
        self.sent = 0
        self.possible = 0

    def offer(self, codes: np.ndarray, uncertainty: np.ndarray,
              active: np.ndarray | None = None) -> np.ndarray:
        """Each (active) agent offers its fresh code; returns which ones were sent."""
        n = len(codes)
        active = np.ones(n, dtype=bool) if active is None else active
        if self.mode == "always":
            send = active.copy()
        elif self.mode == "none":
            send = np.zeros(n, dtype=bool)
        else:
            send = active & (uncertainty >= self.threshold)
        self.codes[send] = codes[send]
        self.has |= send
        self.sent += int(send.sum())
        self.possible += int(active.sum())
        return send

    @property
    def sent_frac(self) -> float:
        return self.sent / self.possible if self.possible else 0.0
