"""Message codes on the wire: a VAE latent mean quantised to signed integers of ``bits`` bits
(int8 by default), and what a receiver does with them. numpy only: a site agent never needs
torch to send or read a code.

Quantisation is uniform and symmetric over ``[-CODE_RANGE, CODE_RANGE]``: ``q =
round(clip(mu) / step)``, ``step = CODE_RANGE / (2^(bits-1) - 1)``; dequantising gives
``q · step``, so the round-trip error of an in-range value is at most ``step / 2``.

**When an agent speaks** (event-triggered communication): it sends its fresh code only when
its *uncertainty* reaches ``threshold``; otherwise its peers keep the last code it sent. The
uncertainty is the normalised entropy of its actor's first-choice distribution over the
slots it may bid for (and "pass"), H / log n, in [0, 1]: 0 when the policy is sure, 1 when it
is indifferent. ``threshold = 0`` always sends, ``threshold > 1`` never does.

**When a code counts**: a code computed in round r informs its receivers' decisions from
round r + 1 on (``CodeBook``), in the simulation engine and across gRPC alike -- a code is
never raced against the round it describes.
"""

from __future__ import annotations

import numpy as np

CODE_RANGE = 4.0
"""latent means are clipped to ±CODE_RANGE before quantising (the KL term keeps them near
N(0, 1), so clipping at 4σ loses almost nothing)"""


def quant_step(bits: int) -> float:
    return CODE_RANGE / (2 ** (bits - 1) - 1)


def quantise(z: np.ndarray, bits: int = 8) -> np.ndarray:
    """Latent means -> int8 array of values in [-(2^(bits-1) - 1), 2^(bits-1) - 1]."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8] (an int8 or narrower wire code), got {bits}")
    lim = 2 ** (bits - 1) - 1
    q = np.rint(np.clip(np.asarray(z), -CODE_RANGE, CODE_RANGE) / quant_step(bits))
    return np.clip(q, -lim, lim).astype(np.int8)


def dequantise(q: np.ndarray, bits: int = 8) -> np.ndarray:
    return q.astype(np.float32) * np.float32(quant_step(bits))


def code_bytes(code_dim: int, bits: int) -> int:
    """Bytes of one message on the wire (bit-packed codes round up to whole bytes)."""
    return (code_dim * bits + 7) // 8


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


class CodeBook:
    """The codes a receiver holds: per sender, its two latest codes and the rounds they were
    computed in, so that ``codes(r)`` gives each sender's latest code from a round before
    ``r`` (a code of round r counts from round r + 1)."""

    def __init__(self, n_sites: int, code_dim: int) -> None:
        self.latest = np.zeros((n_sites, code_dim), np.int8)
        self.latest_round = np.full(n_sites, -1, np.int64)
        self.prev = np.zeros((n_sites, code_dim), np.int8)
        self.prev_round = np.full(n_sites, -1, np.int64)

    def put(self, sender: int, round: int, code: np.ndarray) -> None:
        if round < self.latest_round[sender]:
            return                                  # older than what we hold: stale
        if round > self.latest_round[sender]:
            self.prev[sender], self.prev_round[sender] = self.latest[sender], \
                self.latest_round[sender]
        self.latest[sender], self.latest_round[sender] = code, round

    def codes(self, round: int) -> tuple[np.ndarray, np.ndarray]:
        """(codes (S, Z) int8, has (S,) bool): each sender's latest code of a round < round."""
        use_latest = self.latest_round < round
        codes = np.where(use_latest[:, None], self.latest, self.prev)
        has = np.where(use_latest, self.latest_round >= 0,
                       (self.prev_round >= 0) & (self.prev_round < round))
        return codes, has
