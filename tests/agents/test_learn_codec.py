"""The message codec: quantisation bounds, wire size, and the VAE's round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agora.agents.learn.codec import Codec
from agora.agents.step.codes import CODE_RANGE, code_bytes, dequantise, quant_step, quantise
from agora.agents.step.observe import LOCAL_DIM

torch.set_num_threads(1)   # tests share a 2-core machine


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantisation_is_bounded_and_round_trips_within_half_a_step(bits):
    z = np.random.default_rng(bits).uniform(-10, 10, size=(1000, 8)).astype(np.float32)
    q = quantise(z, bits)
    lim = 2 ** (bits - 1) - 1
    assert q.dtype == np.int8 and q.min() >= -lim and q.max() <= lim
    err = np.abs(dequantise(q, bits) - np.clip(z, -CODE_RANGE, CODE_RANGE))
    assert err.max() <= quant_step(bits) / 2 + 1e-6
    assert np.array_equal(quantise(dequantise(q, bits), bits), q)      # idempotent


def test_bits_out_of_range_are_refused():
    with pytest.raises(ValueError, match="bits"):
        quantise(np.zeros(3), 9)


def test_code_is_at_most_a_sixteenth_of_the_raw_state():
    raw = LOCAL_DIM * 4
    assert code_bytes(8, 8) * 16 <= raw
    assert code_bytes(8, 4) == 4 and code_bytes(3, 4) == 2


def test_vae_learns_a_low_rank_state_through_the_quantised_code():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(4, LOCAL_DIM))
    x = np.tanh(rng.normal(size=(2048, 4)) @ mix * 0.5).astype(np.float32)
    c = Codec(local_dim=LOCAL_DIM, code_dim=8, hidden=64, beta=0.01)
    before = c.recon_error(x)
    opt = torch.optim.Adam(c.parameters(), lr=3e-3)
    xt = torch.from_numpy(x)
    for i in range(400):
        loss, _ = c.loss(xt[(i * 256) % 2048:(i * 256) % 2048 + 256])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = c.recon_error(x)
    assert after < 0.25 * x.var() and after < before / 3, (before, after, x.var())
    assert c.wire(x[:5]).dtype == np.int8 and c.wire(x[:5]).shape == (5, 8)
