"""Observation, global state and action masks of ``agents.env.SchedulingEnv``.

Everything is computed with numpy over the *window* (the first ``k`` open tasks in FIFO
order) and over the sites; nothing loops over the whole open pool. See ``agents/env.py`` for
the layout, field by field; the names below are that layout in code, so a policy can slice
an observation by name (``OWN_FEATURES.index("free_cpu")``) or reshape it with
``split_obs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from agents.domain import Cluster
from agents.market import site_preference
from agents.sim.capacity import Capacity

if TYPE_CHECKING:
    from agents.sim.engine import Simulator
    from agents.sim.state import TaskState

LOG_DIV = 10.0
"""log-scaled quantities are log1p(x) / LOG_DIV: 1 s -> 0.07, 1 min -> 0.41, 1 h -> 0.82,
1 day -> 1.14; 10 open tasks -> 0.24, 10,000 -> 0.92"""
REL_CLIP = 2.0
"""demand / largest node is clipped here (a value > 1 means it can never fit that site)"""
OBS_BOUND = 10.0
"""every observation and state value is clipped to [-OBS_BOUND, OBS_BOUND]"""

OWN_FEATURES = ("free_cpu", "free_mem", "free_gpu", "alive", "util_cpu", "util_mem",
                "util_gpu", "has_gpu", "log_open_tasks", "log_time")
SLOT_FEATURES = ("valid", "cpu", "mem", "gpu", "log_duration", "log_wait", "slack",
                 "has_deadline", "log_weight", "is_origin", "log_transfer", "log_open",
                 "fits_here", "fit_sites")
STATE_GLOBAL = ("log_open_tasks", "log_time")
STATE_SITE = ("free_cpu", "free_mem", "free_gpu", "alive")
STATE_SLOT = ("valid", "cpu", "mem", "gpu", "log_duration", "log_wait", "slack",
              "has_deadline", "log_weight", "log_open", "fit_sites", "fits_origin")


def _log(x):
    return np.log1p(np.maximum(x, 0.0)) / LOG_DIV


def _signed_log(x):
    return np.sign(x) * np.log1p(np.abs(x)) / LOG_DIV


def _rel(demand: np.ndarray, largest: np.ndarray) -> np.ndarray:
    """demand[..., k] / largest[...] with a zero-sized resource giving REL_CLIP for a
    positive demand (it never fits) and 0 for none; broadcast by the caller."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(largest > 0, demand / np.maximum(largest, 1),
                     np.where(demand > 0, REL_CLIP, 0.0))
    return np.minimum(r, REL_CLIP)


def split_obs(obs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(own features [..., G], window [..., k, F]) of observations with any batch shape."""
    g = len(OWN_FEATURES)
    return obs[..., :g], obs[..., g:].reshape(*obs.shape[:-1], k, len(SLOT_FEATURES))


def obs_dim(k: int) -> int:
    return len(OWN_FEATURES) + k * len(SLOT_FEATURES)


def state_dim(n_sites: int, k: int) -> int:
    return len(STATE_GLOBAL) + n_sites * len(STATE_SITE) + k * len(STATE_SLOT)


class View:
    """One decision point as the agents see it."""

    __slots__ = ("window", "masks", "obs", "state")

    def __init__(self, window: list[TaskState], masks: np.ndarray, obs: np.ndarray,
                 state: np.ndarray) -> None:
        self.window = window
        """the open tasks of the slots, in FIFO order (fewer than k when the pool is short)"""
        self.masks = masks
        """(n_sites, k + 1) int8: 1 where the site may bid; the last column (no bid) is 1"""
        self.obs = obs
        """(n_sites, obs_dim) float32"""
        self.state = state
        """(state_dim,) float32"""

    @property
    def has_choice(self) -> bool:
        """Can any agent bid for anything?"""
        return bool(self.masks[:, :-1].any())


class ObsBuilder:
    """Static per-site arrays of a cluster, and ``view`` of a simulator at a decision point."""

    def __init__(self, cluster: Cluster, k: int) -> None:
        cap = Capacity(cluster)
        self.k = k
        self.n_sites = s = cap.n_sites
        self.node_site = cap.node_site
        ns = cap.node_site

        def per_site(x):
            return np.bincount(ns, weights=x, minlength=s).astype(np.float64)

        def site_max(x):
            m = np.zeros(s)
            np.maximum.at(m, ns, x.astype(np.float64))
            return m

        self.cap_cpu = per_site(cap.cap_cpu)
        self.cap_mem = per_site(cap.cap_mem)
        self.cap_gpu = per_site(cap.cap_gpu)
        self.total = np.stack([self.cap_cpu, self.cap_mem, self.cap_gpu])
        rows = np.arange(max(k, 7))[:, None] * s
        self._idx7 = ns[None, :] + rows[:7]
        """bincount index of (row r, node) -> r * n_sites + site, for 7 per-node rows"""
        self._idx_k = ns[None, :] + rows[:k]
        self.n_nodes = per_site(np.ones(cap.n_nodes))
        self.max_cpu, self.max_mem, self.max_gpu = (site_max(cap.cap_cpu), site_max(cap.cap_mem),
                                                    site_max(cap.cap_gpu))
        self.all_max = np.array([x.max(initial=0.0) for x in (self.max_cpu, self.max_mem,
                                                                self.max_gpu)])
        self.has_gpu = (self.cap_gpu > 0).astype(np.float64)
        largest = np.stack([self.max_cpu, self.max_mem, self.max_gpu])   # (3, s)
        self.no_res = largest <= 0
        """[resource, site]: the site has none of it (any demand of it gets REL_CLIP)"""
        self.inv_max = np.where(self.no_res, 0.0, 1.0 / np.maximum(largest, 1.0))
        names = cluster.site_names
        lat = np.zeros((s, s))
        s_per_mb = np.zeros((s, s))
        for a in range(s):
            for b in range(s):
                link = cluster.link(names[a], names[b])
                if link is not None:
                    lat[a, b] = link.latency_ms / 1000.0
                    s_per_mb[a, b] = 8.0 / link.bandwidth_mbps
        self.lat_s = lat
        """[origin, site] transfer latency, seconds (0 on the diagonal)"""
        self.s_per_mb = s_per_mb
        """[origin, site] seconds per MB of data (0 on the diagonal)"""
        self.pref = site_preference(cluster)
        """[origin, site] rank of ``site`` for a job from ``origin`` (the clearing's
        tie-break; ``agents.market.site_preference``)"""
        self.obs_dim = obs_dim(k)
        self.state_dim = state_dim(s, k)

    def view(self, sim: Simulator, window: Sequence[TaskState], t0: float) -> View:
        k, s, cap = self.k, self.n_sites, sim.cap
        n = len(window)
        now = sim.now
        # -- window, site independent (a Python loop over at most k tasks) -----------------
        f = np.zeros((10, k))
        origin = np.zeros(k, dtype=np.int64)
        fit = np.zeros((k, s), dtype=bool)
        for i, t in enumerate(window):
            d, job = t.demand, t.job
            dl = job.job.deadline
            f[:, i] = (1.0, d.cpu, d.mem, d.gpu, t.duration,
                       now - (t.ready_at if t.ready_at is not None else now),
                       0.0 if dl is None else dl - now - t.duration, dl is not None,
                       job.job.weight, t.open)
            origin[i] = job.origin
        if n:   # fits per site, as cap.sites_of(cap.fit_mask(d)) for each task, in one bincount
            nodes = np.stack([cap.fit_mask(t.demand) for t in window])
            fit[:n] = np.bincount(self._idx_k[:n].ravel(), weights=nodes.ravel(),
                                  minlength=n * s).reshape(n, s) > 0
        valid, cpu, mem, gpu, dur, wait, slack, has_dl, weight, n_open = f
        data = np.array([t.task.data_mb for t in window] + [0.0] * (k - n))
        fit_frac = fit.sum(axis=1) / s
        log_dur, log_wait, sl = _log(dur), _log(wait), _signed_log(slack) * has_dl
        log_w, log_open = np.log1p(weight) * valid, _log(n_open)

        # -- sites (one bincount over every node) -------------------------------------------
        x = np.stack([cap.free_cpu, cap.free_mem, cap.free_gpu, cap.cap_cpu, cap.cap_mem,
                      cap.cap_gpu, np.ones(len(cap.alive))]) * cap.alive
        sums = np.bincount(self._idx7.ravel(), weights=x.ravel(), minlength=7 * s).reshape(7, s)
        free, alive_cap = sums[:3], sums[3:6]
        free_frac = np.divide(free, self.total, out=np.zeros((3, s)), where=self.total > 0)
        util = np.divide(alive_cap - free, alive_cap, out=np.zeros((3, s)), where=alive_cap > 0)
        alive_frac = np.divide(sums[6], self.n_nodes, out=np.zeros(s), where=self.n_nodes > 0)
        log_pool = _log(len(sim.pool))
        log_time = _log(now - t0)
        own = np.stack([*free_frac, alive_frac, *util, self.has_gpu,
                        np.full(s, log_pool), np.full(s, log_time)], axis=1)

        # -- per (site, slot) ----------------------------------------------------------------
        slots = np.empty((s, k, len(SLOT_FEATURES)))
        slots[:, :, 0] = valid
        dem = np.stack([cpu, mem, gpu])                                   # (3, k)
        rel = dem[:, None, :] * self.inv_max[:, :, None]                  # (3, s, k)
        if self.no_res.any():
            rel = np.where(self.no_res[:, :, None], (dem[:, None, :] > 0) * REL_CLIP, rel)
        slots[:, :, 1:4] = np.minimum(rel, REL_CLIP).transpose(1, 2, 0)
        slots[:, :, 4:9] = np.stack([log_dur, log_wait, sl, has_dl, log_w], axis=1)
        slots[:, :, 9] = origin[None, :] == np.arange(s)[:, None]
        slots[:, :, 10] = _log(self.lat_s[origin].T + data[None, :] * self.s_per_mb[origin].T)
        slots[:, :, 11] = log_open
        slots[:, :, 12] = fit.T
        slots[:, :, 13] = fit_frac
        slots *= valid[None, :, None]
        obs = np.concatenate([own, slots.reshape(s, -1)], axis=1)
        np.clip(obs, -OBS_BOUND, OBS_BOUND, out=obs)

        fits_origin = fit[np.arange(k), origin] & (valid > 0)
        slot_state = np.stack([valid, *_rel(np.stack([cpu, mem, gpu]), self.all_max[:, None]),
                               log_dur, log_wait, sl, has_dl, log_w, log_open, fit_frac,
                               fits_origin], axis=1) * valid[:, None]
        state = np.concatenate([[log_pool, log_time], own[:, :4].ravel(), slot_state.ravel()])
        np.clip(state, -OBS_BOUND, OBS_BOUND, out=state)

        masks = np.zeros((s, k + 1), dtype=np.int8)
        masks[:, :k] = fit.T
        masks[:, k] = 1
        return View(list(window), masks, obs.astype(np.float32), state.astype(np.float32))
