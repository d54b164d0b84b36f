"""The scheduling problem as a PettingZoo ``ParallelEnv``: one agent per site bids for work.

**Agents.** ``possible_agents`` = ``"site:<name>"`` for every site, in the cluster's order
(agent i is site i). All agents live for the whole episode.

**A step is one bidding round** at the simulator's current decision point. The *window* is
the first ``k_tasks`` open tasks in FIFO order (job arrival, then DAG order), fixed for the
step. Each agent's action is ``Discrete(k + 1)``: ``i < k`` bids for one instance of window
slot i, ``k`` passes. ``infos[agent]["action_mask"]`` (int8, length k + 1) is 1 on slots
whose task fits on some alive node of that agent's site now, and always 1 on "no bid"; a bid
on a masked slot is ignored and counted (``infos[agent]["invalid_bids"]``, per episode).

**Clearing** is the market's (``agents.market.clear``, the rule the coordinator replicates):
a valid bid is one instance of its slot's task at price 1; a task goes to its bidders in the
order of the job origin's preference (the origin itself, else the lowest link latency from
the origin, else the lowest site index), one instance each while instances stay open, so a
single-instance task has one winner and the others are outbid. Losers just lose this round.

**Time.** If nothing was allocated in a round, the simulator moves to its next event time.
It then keeps moving while no agent has any valid bid (the pool is empty, or nothing in the
window fits anywhere) and events remain — there is no decision to make. With no events left
and nothing open the episode *terminates* (all agents); with no events left but work open
(agents passing on work that fits) time stands still and ``max_steps`` *truncates*, with
``infos[agent]["stalled_tasks"]`` the open tasks left. At either end
``infos[agent]["metrics"]`` holds the simulator's metrics (``agents/sim/metrics.py``;
``wall_s`` is reported as 0 so that infos stay deterministic).

**Reward** (team, identical for every agent), DeepRM-style (Mao et al., HotNets 2016):
``r = -Σ_j w_j · Δt_j / 3600 / n_sites``, over the jobs j present in the system (arrived,
not completed, failed or unschedulable), with Δt_j the simulated seconds j spent present
since the previous step. Its sum over an episode where every job completes is
``-Σ_j w_j · JCT_j / 3600 / n_sites``: maximising the return minimises weighted total JCT.

**Observation** (``Box`` float32, shape ``(G + k·F,)``, ``split_obs`` in ``agents/env_obs``
gives ``own [G]`` and ``window [k, F]`` for attention over slots). Log-scaled values are
``log1p(x) / 10``; everything is clipped to ±10. Own site (G = 10):

====  ==============  =========================================================
 0    free_cpu        free cpu of alive nodes / the site's total cpu
 1    free_mem        same for memory
 2    free_gpu        same for gpu (0 at a site without gpus)
 3    alive           alive nodes / nodes
 4-6  util_cpu/mem/   allocated fraction over alive nodes (``utilisation_of``)
      util_gpu
 7    has_gpu         1 if the site has any gpu
 8    log_open_tasks  log of the number of open tasks (the whole pool)
 9    log_time        log of seconds since the first job arrival
====  ==============  =========================================================

Each window slot (F = 14; all zero for an empty slot):

====  ==============  =========================================================
 0    valid           1 if the slot holds a task
 1-3  cpu, mem, gpu   demand / the site's largest node (capacity, gpu in milli-gpus
                      of its gpu count); clipped at 2 (> 1: never fits here)
 4    log_duration    log seconds one instance runs
 5    log_wait        log seconds since the task became ready (now − ready_at)
 6    slack           signed log of (deadline − now − duration); 0 without deadline
 7    has_deadline    1 if the job has a deadline
 8    log_weight      log1p(job weight)
 9    is_origin       1 if this site is the job's origin (no transfer)
 10   log_transfer    log seconds to fetch the task's data to this site (0 at origin)
 11   log_open        log of the task's open instances
 12   fits_here       1 if one instance fits on this site now (= the action mask)
 13   fit_sites       fraction of sites where it fits now
====  ==============  =========================================================

**State** (``state()``, ``state_space``; for a centralised critic), shape
``(2 + 4·n_sites + 12·k,)``: ``log_open_tasks, log_time``; per site ``free_cpu, free_mem,
free_gpu, alive``; per slot ``valid, cpu, mem, gpu`` (over the cluster's largest node),
``log_duration, log_wait, slack, has_deadline, log_weight, log_open, fit_sites,
fits_origin``.

**Seeding.** ``reset(seed=s)`` rebuilds the simulator with ``SimConfig.seed = s`` and, given a
``workload_fn``, the workload ``workload_fn(s)``; ``reset()`` without a seed draws the next
episode seed from a generator seeded by the last seed given (initially ``config.seed``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from agents.domain import Cluster, Workload
from agents.market import Bid, clear_sim
from agents.env_obs import OBS_BOUND, ObsBuilder, View, split_obs  # noqa: F401 (re-export)
from agents.sim.config import SimConfig
from agents.sim.engine import ARRIVE, DOWN, END, UP, Simulator
from agents.sim.state import JobState

__all__ = ["SchedulingEnv", "split_obs"]


def _head_batch(heap: list[tuple]) -> tuple[list[JobState], bool]:
    """Jobs whose state the next ``Simulator.step_events`` may change (arrivals and instance
    ends at the earliest time), and whether a permanent outage is among those events (it may
    make any open job unschedulable). Walks only the heap entries at that time: a heap
    node's children are never earlier than it."""
    t0 = heap[0][0]
    jobs: list[JobState] = []
    rescan = False
    stack = [0]
    while stack:
        i = stack.pop()
        if i >= len(heap) or heap[i][0] != t0:
            continue
        _, _, kind, payload = heap[i]
        if kind == ARRIVE:
            jobs.append(payload)
        elif kind == END:
            jobs.append(payload.task.job)
        elif (kind == DOWN and payload[1]) or kind not in (DOWN, UP):
            rescan = True                 # a permanent outage, or an event kind unknown here
        stack += (2 * i + 1, 2 * i + 2)
    return jobs, rescan


class SchedulingEnv(ParallelEnv):
    metadata = {"name": "agora_scheduling_v0", "is_parallelizable": True, "render_modes": []}
    render_mode = None

    def __init__(self, *, cluster: Cluster, workload: Workload | None = None,
                 workload_fn: Callable[[int], Workload] | None = None, k_tasks: int = 16,
                 max_steps: int = 100_000, config: SimConfig | None = None) -> None:
        if (workload is None) == (workload_fn is None):
            raise ValueError("give exactly one of workload= and workload_fn=")
        if not isinstance(k_tasks, int) or k_tasks < 1:
            raise ValueError(f"k_tasks must be an int >= 1, got {k_tasks!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
        if not cluster.sites:
            raise ValueError("the cluster has no sites: an environment needs at least one agent")
        self.cluster = cluster
        self.k = k_tasks
        self.max_steps = max_steps
        self.config = config or SimConfig()
        self._fixed_workload = workload
        self._workload_fn = workload_fn
        self.possible_agents = [f"site:{s.name}" for s in cluster.sites]
        self.agents: list[str] = []
        self.n_sites = len(self.possible_agents)
        self._builder = ObsBuilder(cluster, k_tasks)
        obs_box = spaces.Box(-OBS_BOUND, OBS_BOUND, (self._builder.obs_dim,), np.float32)
        self.observation_spaces = {a: obs_box for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(k_tasks + 1) for a in self.possible_agents}
        self.state_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (self._builder.state_dim,),
                                      np.float32)
        self._rng = np.random.default_rng(self.config.seed)
        self.sim: Simulator | None = None
        self.workload: Workload | None = None
        self._view: View | None = None

    # -- spaces ----------------------------------------------------------------------------
    def observation_space(self, agent: str) -> spaces.Box:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.action_spaces[agent]

    # -- episode ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            episode_seed = int(seed)
        else:
            episode_seed = int(self._rng.integers(2**31 - 1))
        self.episode_seed = episode_seed
        self.workload = (self._workload_fn(episode_seed) if self._workload_fn is not None
                         else self._fixed_workload)
        self.sim = sim = Simulator(self.cluster, self.workload,
                                   replace(self.config, seed=episode_seed))
        self._t0 = sim.jobs[0].job.arrival if sim.jobs else sim.now
        self._present: dict[int, float] = {}     # job idx -> weight, jobs in the system
        self._present_w = 0.0
        self._cost = 0.0                          # Σ weight · seconds since the last reward
        self._steps = 0
        self._invalid = np.zeros(self.n_sites, dtype=np.int64)
        self.agents = self.possible_agents[:]
        self._settle()
        zero = np.zeros(self.n_sites, dtype=bool)
        return self._observations(), self._infos(zero, zero, 0, end=False)

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() after the episode ended; call reset()")
        sim, view, k = self.sim, self._view, self.k
        sim.begin_decision()
        bids = np.full(self.n_sites, k, dtype=np.int64)
        for i, agent in enumerate(self.possible_agents):   # site order, never dict order
            a = actions.get(agent)
            if a is None:
                continue
            a = int(a)
            if not 0 <= a <= k:
                raise ValueError(f"{agent}: action {a} outside Discrete({k + 1})")
            bids[i] = a
        bidding = bids < k
        ok = view.masks[np.arange(self.n_sites), bids].astype(bool) & bidding
        invalid = bidding & ~ok
        self._invalid += invalid
        won = np.zeros(self.n_sites, dtype=bool)
        sites = np.flatnonzero(ok)
        cleared = clear_sim(sim.ctx, [Bid(int(i), view.window[bids[i]], 1, 1) for i in sites],
                            self._builder.pref)
        for a in cleared.awards:
            won[a.site] = True
        placed = cleared.placed
        sim.end_decision()
        self._steps += 1
        if placed == 0 and sim.has_events:
            self._advance()
        self._settle()

        reward = -self._cost / 3600.0 / self.n_sites
        self._cost = 0.0
        done = sim.done
        trunc = not done and self._steps >= self.max_steps
        obs = self._observations()
        infos = self._infos(won, invalid, placed, end=done or trunc)
        agents = self.agents
        rewards = {a: reward for a in agents}
        terms = {a: done for a in agents}
        truncs = {a: trunc for a in agents}
        if done or trunc:
            self.agents = []
        return obs, rewards, terms, truncs, infos

    def state(self) -> np.ndarray:
        if self._view is None:
            raise RuntimeError("state() before reset()")
        return self._view.state

    def render(self) -> None:
        return None

    def close(self) -> None:
        pass

    # -- internals -------------------------------------------------------------------------
    def _settle(self) -> None:
        """Build the view of the current decision point, moving time on while no agent has
        anything to bid for and events remain."""
        sim = self.sim
        self._view = self._builder.view(sim, self._window(), self._t0)
        while sim.has_events and not self._view.has_choice:
            self._advance()
            self._view = self._builder.view(sim, self._window(), self._t0)

    def _window(self) -> list:
        pool = self.sim.pool
        return pool.head(self.k)

    def _advance(self) -> None:
        """Process the next batch of simultaneous events, charging the jobs present until
        then, and keep the set of present jobs current."""
        sim = self.sim
        t = sim.next_event_time
        self._cost += self._present_w * (t - sim.now)
        touched, rescan = _head_batch(sim._heap)
        sim.step_events()
        present, w = self._present, self._present_w
        for js in touched:
            if js.outcome == "pending":
                if js.idx not in present:
                    present[js.idx] = js.job.weight
                    w += js.job.weight
            elif js.idx in present:
                w -= present.pop(js.idx)
        if rescan:
            for idx in [i for i in present if sim.jobs[i].outcome != "pending"]:
                w -= present.pop(idx)
        self._present_w = w if present else 0.0

    def _observations(self) -> dict[str, np.ndarray]:
        obs = self._view.obs
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def _infos(self, won: np.ndarray, invalid: np.ndarray, placed: int, end: bool) -> dict:
        sim, masks = self.sim, self._view.masks
        extra: dict = {}
        if end:
            extra["metrics"] = sim.result("env:" + self.metadata["name"], 0.0).metrics
            if not sim.done:
                extra["stalled_tasks"] = len(sim.pool)
                extra["stalled_instances"] = sum(t.open for t in sim.pool.fifo())
        return {a: {"action_mask": masks[i].copy(), "invalid_bid": bool(invalid[i]),
                    "invalid_bids": int(self._invalid[i]), "won": bool(won[i]),
                    "placed": placed, "now": float(sim.now), "steps": self._steps,
                    **{key: (dict(v) if isinstance(v, dict) else v) for key, v in extra.items()}}
                for i, a in enumerate(self.possible_agents)}
