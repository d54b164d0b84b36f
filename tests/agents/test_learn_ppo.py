"""PPO's pieces: the Plackett-Luce log-probability of a ranked prefix, GAE, the per-round
reward (it must telescope to the episode's cost), and value normalisation."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agora.agents.learn.networks import NEG
from agora.agents.learn.ppo import PPOConfig, ValueNorm, gae, round_rewards
from agora.agents.learn.ranking import log_prob
from agora.agents.step.policy import log_prob_np, sample_orders

torch.set_num_threads(1)   # tests share a 2-core machine


def all_prefixes(valid_slots: list[int], k: int):
    """Every action: an ordered choice of some valid slots, then pass (index k)."""
    for r in range(len(valid_slots) + 1):
        for perm in itertools.permutations(valid_slots, r):
            rest = [i for i in range(k + 1) if i not in perm and i != k]
            yield list(perm) + [k] + rest, r + 1


def test_plackett_luce_prefix_probabilities_sum_to_one():
    k = 4
    logits = torch.tensor([[0.3, NEG, -1.2, 2.0, 0.5]])
    total = 0.0
    for order, plen in all_prefixes([0, 2, 3], k):
        total += math.exp(float(log_prob(logits, torch.tensor([order]), torch.tensor([plen]))))
    assert total == pytest.approx(1.0, abs=1e-5)


def test_gumbel_sampling_matches_plackett_luce_first_choice():
    rng = np.random.default_rng(0)
    logits = np.array([[1.0, 0.0, NEG, -0.5]])
    valid = np.array([[True, True, False, True]])
    firsts = np.array([sample_orders(logits, valid, rng)[0][0, 0] for _ in range(4000)])
    p = np.exp([1.0, 0.0, -0.5])
    p /= p.sum()
    freq = [np.mean(firsts == i) for i in (0, 1, 3)]
    assert np.allclose(freq, p, atol=0.03) and not (firsts == 2).any()


def test_gae_with_lambda_one_is_the_discounted_return():
    r = np.array([1.0, -2.0, 3.0])
    v = np.array([[0.5, 0.0], [0.1, 1.0], [-0.3, 2.0]])
    adv, ret = gae(r, v, gamma=0.9, lam=1.0)
    g = [1 - 2 * 0.9 + 3 * 0.81, -2 + 3 * 0.9, 3.0]
    assert np.allclose(ret, np.array(g)[:, None].repeat(2, 1))
    assert np.allclose(adv, ret - v)


def job(arrival, completion, cp):
    return SimpleNamespace(outcome="completed" if completion is not None else "failed",
                           completion=completion, critical_path=cp,
                           job=SimpleNamespace(arrival=arrival))


def test_round_rewards_telescope_to_total_cost():
    cfg = PPOConfig(jct_scale_s=100.0, slowdown_w=0.5, slowdown_tau_s=10.0)
    jobs = [job(0.0, 50.0, 20.0), job(5.0, 12.0, 2.0), job(30.0, None, 40.0)]
    now = np.array([0.0, 5.0, 5.0, 20.0, 31.0, 60.0])
    r = round_rewards(now, jobs, cfg, end=90.0)
    cost = 50 * (1 / 100 + 0.5 / 20) + 7 * (1 / 100 + 0.5 / 10) + 60 * (1 / 100 + 0.5 / 40)
    assert r.sum() == pytest.approx(-cost)
    assert r[1] == 0.0                                   # two rounds at the same time
    assert r[0] == pytest.approx(-5 * (1 / 100 + 0.5 / 20))
    assert (r <= 0).all()


def test_value_norm_round_trip():
    vn = ValueNorm()
    x = np.random.default_rng(0).normal(50.0, 7.0, size=1000)
    for chunk in np.split(x, 10):
        vn.update(chunk)
    m, s = vn.stats
    assert m == pytest.approx(50.0, abs=1.0) and s == pytest.approx(7.0, rel=0.2)
    assert np.allclose(vn.denormalise(vn.normalise(x)), x)


def test_numpy_log_probability_of_a_ranking_equals_torch():
    """The rollout acts in numpy (``log_prob_np``); PPO's ratio uses torch's ``log_prob``:
    they must agree, or the first update's ratio is off."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        k = int(rng.integers(1, 9))
        valid = np.append(rng.random(k) < 0.7, True)[None]
        logits = np.where(valid, rng.normal(size=(1, k + 1)) * 2, NEG).astype(np.float32)
        order, plen = sample_orders(logits, valid, rng)
        want = log_prob(torch.from_numpy(logits), torch.from_numpy(order),
                        torch.from_numpy(plen)).numpy()
        assert np.allclose(log_prob_np(logits, order, plen), want, atol=1e-4)
