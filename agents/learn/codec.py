"""The message codec: a VAE (Kingma & Welling, arXiv 1312.6114) encodes a site's local state
(``features.LOCAL_DIM`` float32 values) into a ``code_dim`` latent; the *wire* form is the
latent mean quantised to signed integers of ``bits`` bits (int8 by default), so a message
costs ``code_dim · bits / 8`` bytes against ``LOCAL_DIM · 4`` for the raw float32 state.

Quantisation is ``agents.step.codes`` (numpy: a site agent sends and reads codes without
torch). The decoder exists for training (the reconstruction term of the ELBO) and for measuring how
much of the state a code carries; receivers only ever use dequantised codes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agora.agents.step.codes import dequantise, quantise

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
        return quantise(mu.numpy(), self.bits)

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
