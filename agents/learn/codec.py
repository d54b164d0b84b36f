"""The message codec: a VAE (Kingma & Welling, arXiv 1312.6114) encodes a site's local state
(``features.LOCAL_DIM`` float32 values) into a ``code_dim`` latent; the *wire* form is the
latent mean quantised to signed integers of ``bits`` bits (int8 by default), so a message
costs ``code_dim · bits / 8`` bytes against ``LOCAL_DIM · 4`` for the raw float32 state.

Quantisation is uniform and symmetric over ``[-CODE_RANGE, CODE_RANGE]``: ``q =
round(clip(mu) / step)``, ``step = CODE_RANGE / (2^(bits-1) - 1)``; dequantising gives
``q · step``, so the round-trip error of an in-range value is at most ``step / 2``. The
decoder exists for training (the reconstruction term of the ELBO) and for measuring how
much of the state a code carries; receivers only ever use dequantised codes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CODE_RANGE = 4.0
"""latent means are clipped to ±CODE_RANGE before quantising (the KL term keeps them near
N(0, 1), so clipping at 4σ loses almost nothing)"""


def quant_step(bits: int) -> float:
    return CODE_RANGE / (2 ** (bits - 1) - 1)


def quantise(z: np.ndarray | torch.Tensor, bits: int = 8) -> np.ndarray:
    """Latent means -> int8 array of values in [-(2^(bits-1) - 1), 2^(bits-1) - 1]."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8] (an int8 or narrower wire code), got {bits}")
    z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    lim = 2 ** (bits - 1) - 1
    q = np.rint(np.clip(z, -CODE_RANGE, CODE_RANGE) / quant_step(bits))
    return np.clip(q, -lim, lim).astype(np.int8)


def dequantise(q: np.ndarray, bits: int = 8) -> np.ndarray:
    return q.astype(np.float32) * np.float32(quant_step(bits))


def code_bytes(code_dim: int, bits: int) -> int:
    """Bytes of one message on the wire (bit-packed codes round up to whole bytes)."""
    return (code_dim * bits + 7) // 8


class Codec(nn.Module):
    """VAE over one site's local state; shared by all sites (they see the same layout)."""

    def __init__(self, *, local_dim: int, code_dim: int = 8, hidden: int = 64,
                 bits: int = 8, beta: float = 0.05) -> None:
        super().__init__()
        self.local_dim, self.code_dim, self.bits, self.beta = local_dim, code_dim, bits, beta
        self.enc = nn.Sequential(nn.Linear(local_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * code_dim))
        self.dec = nn.Sequential(nn.Linear(code_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, local_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 4.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)

    @torch.no_grad()
    def wire(self, x: np.ndarray) -> np.ndarray:
        """Local states (..., local_dim) -> quantised codes (..., code_dim) int8."""
        mu, _ = self.encode(torch.as_tensor(x, dtype=torch.float32))
        return quantise(mu, self.bits)

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Negative ELBO with a β-weighted KL (β-VAE, Higgins et al. 2017): reconstruction
        MSE + β · KL(q(z|x) || N(0, I)), both averaged over the batch."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = ((self.decode(z) - x) ** 2).mean()
        kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).sum(-1).mean()
        return rec + self.beta * kl, {"losses/codec_recon": float(rec.detach()),
                                     "losses/codec_kl": float(kl.detach())}

    @torch.no_grad()
    def recon_error(self, x: np.ndarray) -> float:
        """Mean squared error of decode(dequantise(wire(x))) — what a peer could recover."""
        q = self.wire(x)
        xr = self.decode(torch.as_tensor(dequantise(q, self.bits)))
        return float(((xr - torch.as_tensor(x, dtype=torch.float32)) ** 2).mean())
