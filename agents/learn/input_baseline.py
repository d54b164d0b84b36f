"""An input-dependent baseline (Mao et al., "Variance Reduction for Reinforcement Learning in
Input-Driven Environments", ICLR 2019; Decima, SIGCOMM 2019, section 5.3).

In scheduling, much of a return's variance comes from the *input* -- which jobs arrive
when -- not from the policy's actions: a burst of arrivals makes every action of the episode
look bad. A state-value critic cannot see the arrivals to come, so its baseline leaves that
variance in the advantages. Here each update runs ``K`` rollouts of the *same* arrival
sequence (same workload, same fault draws; only the policy's samples differ), and the
baseline of rollout ``k`` at simulated time ``t`` is the mean over the other ``K - 1``
rollouts of their return-to-go at ``t`` (each read as a step function of time: the return
of its last round at or before ``t``; before its first round, its first return). Leaving
rollout ``k`` out keeps the baseline independent of its own actions, so the advantage stays
unbiased (the leave-one-out estimator of Kool et al., 2019); Decima averages all K.

The advantage of every site's row at round ``t`` is ``G_t - b(t)`` (the reward is the team's,
``ppo.round_rewards``); returns are discounted per round with the run's γ, as the critic's.
"""

from __future__ import annotations

import numpy as np


def returns_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted return from each round to the episode's end (T,)."""
    out = np.empty(len(rewards), dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def at_times(times: np.ndarray, values: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A rollout's returns (``values`` at its round ``times``, non-decreasing) read at times
    ``t``: the value of the last round at or before each, the first round's before it, 0 for
    an empty rollout."""
    if len(times) == 0:
        return np.zeros(len(t))
    i = np.searchsorted(times, t, side="right") - 1
    return values[np.clip(i, 0, len(values) - 1)]


def input_baselines(times: list[np.ndarray], returns: list[np.ndarray]) -> list[np.ndarray]:
    """For rollouts ``k`` = 0..K-1 of one arrival sequence (round times and returns-to-go),
    the leave-one-out baseline at each of rollout k's rounds. K >= 2."""
    n = len(times)
    if n < 2:
        raise ValueError(f"an input-dependent baseline needs >= 2 rollouts, got {n}")
    out = []
    for k in range(n):
        others = [at_times(times[j], returns[j], times[k]) for j in range(n) if j != k]
        out.append(np.mean(others, axis=0) if len(times[k]) else np.zeros(0))
    return out


def advantages(times: list[np.ndarray], rewards: list[np.ndarray], sites: int,
               gamma: float) -> list[np.ndarray]:
    """Per rollout, the (T_k, sites) advantages ``G_t - b(t)`` (module docstring)."""
    g = [returns_to_go(r, gamma) for r in rewards]
    b = input_baselines(times, g)
    return [np.repeat((gk - bk)[:, None], sites, axis=1) for gk, bk in zip(g, b)]
