"""The site agents' market as a PettingZoo ``ParallelEnv`` (for RL libraries and for checking
the trainer's reward): one step is one bidding round of the simulation engine, with the
action coming from outside instead of from the agents' own policy.

Everything else is the engine's: each agent's observation is ``agents.step.observe`` of its
own site and the open work (``Observer``); its action, a *score per slot plus "pass"*
(``Box(k + 1)``), becomes a ranking (valid slots and "pass" by descending score, ties to the
lower index) and then the bids ``agents.step.policy.offers_of`` makes of a ranking; the
in-memory clearinghouse admits and clears every site's bids together
(``agents.step.simulation.MemoryClearinghouse``).

**Observation** (``Box`` float32, ``split`` gives the parts): own features
(``observe.OWN_FEATURES``), ``k`` slots × ``observe.SLOT_FEATURES``, then the ``k``-slot
mask. ``infos[agent]["action_mask"]`` (int8, ``k + 1``) is the mask with "pass" (always 1).
``state()`` is the centralised critic's summary (``simulation.STATE_FEATURES``).

**Time** moves as in the engine: after a round that placed nothing, or while no agent can
bid for anything, the simulator processes its next batch of events. Every valid slot is bid
(reluctantly after "pass"), so a round with any candidate places something and an episode
cannot stall.

**Reward** (team): minus the cost accrued since the previous step by the jobs present,
``1 / jct_scale_s + slowdown_w / max(critical_path, τ)`` per second each -- the trainer's
``ppo.round_rewards`` computed online (a test checks they agree).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from agora.agents.domain import Cluster, Workload
from agora.agents.sim.config import Reward, SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.step.observe import OBS_BOUND, OWN_FEATURES, SLOT_FEATURES, Observer, SiteObs
from agora.agents.step.policy import offers_of
from agora.agents.step.seams import SitePart
from agora.agents.step.simulation import (STATE_DIM, MemoryClearinghouse, SimExecutor,
                                          system_state)


def split(obs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(own [..., G], slots [..., k, F], mask [..., k] bool) of observations."""
    g, f = len(OWN_FEATURES), len(SLOT_FEATURES)
    own = obs[..., :g]
    slots = obs[..., g:g + k * f].reshape(*obs.shape[:-1], k, f)
    return own, slots, obs[..., g + k * f:] > 0.5


def rank_scores(scores: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores (S, k+1) -> (order, plen) as ``policy.sample_orders`` returns them."""
    x = np.where(valid, scores.astype(np.float64), -np.inf)
    order = np.argsort(-x, axis=1, kind="stable")
    plen = np.argmax(order == scores.shape[1] - 1, axis=1) + 1
    return order, plen


class MarketEnv(ParallelEnv):
    metadata = {"name": "agora_market_v1", "is_parallelizable": True, "render_modes": []}
    render_mode = None

    def __init__(self, *, cluster: Cluster, workload: Workload | None = None,
                 workload_fn: Callable[[int], Workload] | None = None, k: int = 16,
                 max_steps: int = 100_000, config: SimConfig | None = None,
                 reward: Reward | None = None) -> None:
        if (workload is None) == (workload_fn is None):
            raise ValueError("give exactly one of workload= and workload_fn=")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if not cluster.sites:
            raise ValueError("the cluster has no sites: an environment needs at least one agent")
        self.cluster, self.k, self.max_steps = cluster, k, max_steps
        self.config = config or SimConfig()
        self.reward = reward or Reward()
        self._fixed, self._fn = workload, workload_fn
        self.possible_agents = [f"site:{s.name}" for s in cluster.sites]
        self.agents: list[str] = []
        self.n_sites = len(self.possible_agents)
        self.observer = Observer(cluster, k)
        dim = len(OWN_FEATURES) + k * len(SLOT_FEATURES) + k
        box = spaces.Box(-OBS_BOUND, OBS_BOUND, (dim,), np.float32)
        act = spaces.Box(-1e6, 1e6, (k + 1,), np.float32)
        self.observation_spaces = {a: box for a in self.possible_agents}
        self.action_spaces = {a: act for a in self.possible_agents}
        self.state_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (STATE_DIM,), np.float32)
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
        self.sim = sim = Simulator(self.cluster, wl, replace(self.config, seed=ep))
        self._rate = {j.id: self.reward.rate(j.critical_path()) for j in wl.jobs}
        self._arrivals = np.array([j.arrival for j in wl.jobs])
        self._present: dict[str, float] = {}
        self._admitted = 0
        self._cost = 0.0
        self._steps = 0
        executors = [SimExecutor(sim, i) for i in range(self.n_sites)]
        self.clearinghouse = MemoryClearinghouse(sim, executors)
        self.agents = self.possible_agents[:]
        self._settle()
        return self._obs(), self._infos(0, end=False)

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() after the episode ended; call reset()")
        sim, k, ch = self.sim, self.k, self.clearinghouse
        scores = np.zeros((self.n_sites, k + 1), dtype=np.float32)
        for i, a in enumerate(self.possible_agents):        # site order, never dict order
            if a in actions:
                scores[i] = np.asarray(actions[a], dtype=np.float32).reshape(k + 1)
        mask = np.stack([o.mask for o in self._view])
        valid = np.concatenate([mask, np.ones((self.n_sites, 1), bool)], axis=1)
        order, plen = rank_scores(scores, valid)
        for i, o in enumerate(self._view):
            if o.active:
                ch.submit(SitePart(site=self.cluster.sites[i].name, round=ch.round,
                                   seen_version=ch.round,
                                   offers=offers_of(o.window, order[i], plen[i], o.mask, k,
                                                    o.free)))
        sim.begin_decision()
        placed = ch.clear_round() if mask.any() else 0
        sim.end_decision()
        self._steps += 1
        if placed == 0 and not (mask.any() and ch.held_back) and sim.has_events:
            self._advance()           # (bids held back: the next round is for them)
        self._settle()
        reward = -self._cost
        self._cost = 0.0
        done = sim.done
        stuck = not sim.has_events and not any(o.active for o in self._view)
        trunc = not done and (self._steps >= self.max_steps or stuck)
        obs, infos = self._obs(), self._infos(placed, end=done or trunc)
        agents = self.agents
        if done or trunc:
            self.agents = []
        return (obs, {a: reward for a in agents}, {a: done for a in agents},
                {a: trunc for a in agents}, infos)

    def state(self) -> np.ndarray:
        return system_state(self.sim, self._view, self._arrivals)

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass

    def _settle(self) -> None:
        sim = self.sim
        while True:
            self._view: list[SiteObs] = self.observer.observe(
                sim.ledger, sim.cap, list(range(self.n_sites)), sim.now)
            if any(o.active for o in self._view) or not sim.has_events:
                return
            self._advance()

    def _advance(self) -> None:
        sim = self.sim
        self._cost += sum(self._present.values()) * (sim.next_event_time - sim.now)
        sim.step_events()
        for js in sim.jobs[self._admitted:]:
            self._present[js.job.id] = self._rate[js.job.id]
        self._admitted = len(sim.jobs)
        for jid in [j for j in self._present if sim.ledger.jobs[j].outcome != "pending"]:
            del self._present[jid]

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: self.obs_row(i) for i, a in enumerate(self.possible_agents)}

    def obs_row(self, i: int) -> np.ndarray:
        o = self._view[i]
        obs = np.concatenate([o.own, o.slots.reshape(-1), o.mask.astype(np.float32)])
        return np.clip(obs, -OBS_BOUND, OBS_BOUND).astype(np.float32)

    def _infos(self, placed: int, end: bool) -> dict:
        extra = {"metrics": self.sim.result("env:" + self.metadata["name"]).metrics} if end \
            else {}
        return {a: {"action_mask": np.append(self._view[i].mask, True).astype(np.int8),
                    "placed": placed, "now": float(self.sim.now), "steps": self._steps,
                    **extra}
                for i, a in enumerate(self.possible_agents)}
