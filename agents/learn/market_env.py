"""The learned agents' market as a PettingZoo ``ParallelEnv`` (for RL libraries and for
checking the trainer's reward): one step is one bidding round of ``LearnedPolicy``.

``agents/env.py`` keeps its one-bid-per-agent FIFO-window game unchanged; this env is the
multi-bid game of ``agents/learn``: the candidate window of ``features.candidates`` (five
orders over the whole open pool), and an action that is a *score per slot plus "pass"*
(``Box(k + 1)``) which the env turns into a ranking (valid slots and "pass" by descending
score, ties to the lower index) and then into bids exactly as ``ranking.bids_of`` does; all
bids are cleared together by ``agents.market.clear_sim``.

**Observation** (``Box`` float32, ``split`` gives the parts): own features
(``features.OWN_FEATURES``), ``k`` slots × ``features.SLOT_FEATURES``, then the ``k``-slot
mask. ``infos[agent]["action_mask"]`` (int8, ``k + 1``) is the mask with "pass" (always 1).
``state()`` is the centralised critic's input (``features.RoundView.state``).

**Time** moves as in ``agents/env.py``: after a round that placed nothing, or while no agent
can bid for anything, the simulator processes its next batch of events. Every valid slot is
bid (reluctantly after "pass"), so a round with any candidate places something and an
episode cannot stall.

**Reward** (team): minus the cost accrued since the previous step by the jobs present,
``1 / jct_scale_s + slowdown_w / max(critical_path, τ)`` per second each — the trainer's
``ppo.round_rewards`` computed online (a test checks they agree).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from agents.domain import Cluster, Workload
from agents.env import _head_batch
from agents.learn.features import OWN_FEATURES, SLOT_FEATURES, FeatureBuilder, candidates
from agents.learn.ppo import PPOConfig
from agents.learn.ranking import bids_of
from agents.market import clear_sim
from agents.sim.config import SimConfig
from agents.sim.engine import Simulator

OBS_BOUND = 20.0


def split(obs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(own [..., G], slots [..., k, F], mask [..., k] bool) of observations."""
    g, f = len(OWN_FEATURES), len(SLOT_FEATURES)
    own = obs[..., :g]
    slots = obs[..., g:g + k * f].reshape(*obs.shape[:-1], k, f)
    return own, slots, obs[..., g + k * f:] > 0.5


def rank_scores(scores: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores (S, k+1) -> (order, plen) as ``ranking.sample_orders`` returns them."""
    x = np.where(valid, scores.astype(np.float64), -np.inf)
    order = np.argsort(-x, axis=1, kind="stable")
    plen = np.argmax(order == scores.shape[1] - 1, axis=1) + 1
    return order, plen


class MarketEnv(ParallelEnv):
    metadata = {"name": "agora_market_v0", "is_parallelizable": True, "render_modes": []}
    render_mode = None

    def __init__(self, *, cluster: Cluster, workload: Workload | None = None,
                 workload_fn: Callable[[int], Workload] | None = None, k: int = 16,
                 max_steps: int = 100_000, config: SimConfig | None = None,
                 reward: PPOConfig | None = None) -> None:
        if (workload is None) == (workload_fn is None):
            raise ValueError("give exactly one of workload= and workload_fn=")
        self.cluster, self.k, self.max_steps = cluster, k, max_steps
        self.config = config or SimConfig()
        self.reward_cfg = reward or PPOConfig()
        self._fixed, self._fn = workload, workload_fn
        self.possible_agents = [f"site:{s.name}" for s in cluster.sites]
        self.agents: list[str] = []
        self.n_sites = len(self.possible_agents)
        self.builder = FeatureBuilder(cluster, k)
        dim = len(OWN_FEATURES) + k * len(SLOT_FEATURES) + k
        box = spaces.Box(-OBS_BOUND, OBS_BOUND, (dim,), np.float32)
        act = spaces.Box(-1e6, 1e6, (k + 1,), np.float32)
        self.observation_spaces = {a: box for a in self.possible_agents}
        self.action_spaces = {a: act for a in self.possible_agents}
        self.state_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (self.builder.state_dim,),
                                      np.float32)
        self._rng = np.random.default_rng(self.config.seed)
        self.sim: Simulator | None = None

    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Box:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            ep = int(seed)
        else:
            ep = int(self._rng.integers(2**31 - 1))
        wl = self._fn(ep) if self._fn is not None else self._fixed
        self.sim = Simulator(self.cluster, wl, replace(self.config, seed=ep))
        self._t0 = self.sim.jobs[0].job.arrival if self.sim.jobs else self.sim.now
        c = self.reward_cfg
        self._rate = [1.0 / c.jct_scale_s + c.slowdown_w / max(j.critical_path, c.slowdown_tau_s)
                      for j in self.sim.jobs]
        self._present: dict[int, float] = {}
        self._present_rate = 0.0
        self._cost = 0.0
        self._steps = 0
        self.agents = self.possible_agents[:]
        self._settle()
        return self._obs(), self._infos(0, end=False)

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() after the episode ended; call reset()")
        sim, rv, k = self.sim, self._rv, self.k
        scores = np.zeros((self.n_sites, k + 1), dtype=np.float32)
        for i, a in enumerate(self.possible_agents):        # site order, never dict order
            if a in actions:
                scores[i] = np.asarray(actions[a], dtype=np.float32).reshape(k + 1)
        valid = np.concatenate([rv.mask, np.ones((self.n_sites, 1), bool)], axis=1)
        order, plen = rank_scores(scores, valid)
        ctx = sim.begin_decision()
        placed = clear_sim(ctx, bids_of(rv.window, order, plen, rv.mask, k),
                           self.builder.pref).placed if rv.window else 0
        sim.end_decision()
        self._steps += 1
        if placed == 0 and sim.has_events:
            self._advance()
        self._settle()
        reward = -self._cost
        self._cost = 0.0
        done = sim.done
        stuck = not sim.has_events and not self._rv.mask.any()
        trunc = not done and (self._steps >= self.max_steps or stuck)
        obs, infos = self._obs(), self._infos(placed, end=done or trunc)
        agents = self.agents
        if done or trunc:
            self.agents = []
        return (obs, {a: reward for a in agents}, {a: done for a in agents},
                {a: trunc for a in agents}, infos)

    def state(self) -> np.ndarray:
        return self._rv.state

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass

    def _settle(self) -> None:
        sim = self.sim
        while True:
            window = candidates(sim.begin_decision(), self.k)
            self._rv = self.builder.view(sim, window, self._t0)
            if self._rv.mask.any() or not sim.has_events:
                return
            self._advance()

    def _advance(self) -> None:
        sim = self.sim
        self._cost += self._present_rate * (sim.next_event_time - sim.now)
        touched, rescan = _head_batch(sim._heap)
        sim.step_events()
        pr = self._present
        for js in touched:
            if js.outcome == "pending":
                pr.setdefault(js.idx, self._rate[js.idx])
            else:
                pr.pop(js.idx, None)
        if rescan:
            for idx in [i for i in pr if sim.jobs[i].outcome != "pending"]:
                pr.pop(idx)
        self._present_rate = float(sum(pr.values()))

    def _obs(self) -> dict[str, np.ndarray]:
        rv = self.rv_obs()
        return {a: rv[i] for i, a in enumerate(self.possible_agents)}

    def rv_obs(self) -> np.ndarray:
        rv = self._rv
        obs = np.concatenate([rv.own, rv.slots.reshape(self.n_sites, -1),
                              rv.mask.astype(np.float32)], axis=1)
        return np.clip(obs, -OBS_BOUND, OBS_BOUND).astype(np.float32)

    def _infos(self, placed: int, end: bool) -> dict:
        mask = np.concatenate([self._rv.mask, np.ones((self.n_sites, 1), bool)], axis=1)
        extra = {"metrics": self.sim.result("env:" + self.metadata["name"]).metrics} if end else {}
        return {a: {"action_mask": mask[i].astype(np.int8), "placed": placed,
                    "now": float(self.sim.now), "steps": self._steps, **extra}
                for i, a in enumerate(self.possible_agents)}
