"""What a learned site agent sees at one bidding round: the candidate window, per-(site, slot)
features, its own site's features, its *local state* (what the codec compresses for peers),
and the global state (for the centralised critic).

**Candidate window.** A FIFO head-of-queue window hides short work deep in the backlog, so a
policy fed one could never do better than near-FIFO. The window here is a cheap
deterministic pre-filter over the whole open pool: the union of the first tasks that fit
*somewhere now* under five orders — oldest (FIFO), shortest instance duration, least job
work left (``JobState.work_left``, the SRPT key), heaviest job weight, closest deadline —
merged round-robin by rank, deduplicated and capped at ``k``. Only tasks that fit somewhere
are candidates, so a round never wastes a slot on work nobody can take. Each order is looked
at to a depth of ``SCAN`` tasks, so a round costs the same on a backlog of thousands.

**Slot features** (``SLOT_FEATURES``, per site and slot): the 14 of ``agents/env_obs.py``
(demand relative to the site's largest node, duration, wait, deadline slack, weight,
origin, transfer time, open instances, fits-here, fit fraction) plus the job-level ones that
make shortest-remaining-work behaviour learnable: job work left, job critical path, the
task's own open work and the fraction of the job's tasks done.

**Own features** (``OWN_FEATURES``): the env's 10 (free fractions, alive, utilisation,
has-gpu, pool size, time) plus the site's *free resources per node* as a histogram — the
fraction of its alive nodes whose free cpu / mem / gpu fraction lies in [0, ¼), [¼, ½),
[½, ¾), [¾, 1] — and three queue summaries (candidates that fit here, their mean log
duration and mean log wait).

**Local state** (``LOCAL_DIM`` float32 values, what the VAE encodes): own features plus the
mean and max over the valid candidate slots of 7 slot features.

**Global state** (``agents.env_obs`` ``state()`` layout over the candidate window, plus
``PROGRESS``): free resources and liveness per site, pool size, time, per slot its
site-independent features, and the fractions of jobs still to arrive and of instances done.
The critic reads it (MAPPO's centralised value input).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agents.domain import Cluster
from agents.env_obs import OWN_FEATURES as ENV_OWN, SLOT_FEATURES as ENV_SLOT, ObsBuilder, _log

if TYPE_CHECKING:
    from agents.sim.engine import Decision, Simulator
    from agents.sim.state import TaskState

EXTRA_SLOT = ("log_job_work_left", "log_job_critical_path", "log_task_work", "job_done_frac")
SLOT_FEATURES = tuple(ENV_SLOT) + EXTRA_SLOT
HIST_BINS = 4
OWN_FEATURES = tuple(ENV_OWN) + tuple(
    f"nodes_free_{r}_{b}" for r in ("cpu", "mem", "gpu") for b in range(HIST_BINS)) + (
    "cand_fit_frac", "cand_mean_log_duration", "cand_mean_log_wait")
SUMMARY_SLOT = ("cpu", "mem", "gpu", "log_duration", "log_wait", "log_job_work_left",
                "fits_here")
_SUMMARY_IDX = [SLOT_FEATURES.index(n) for n in SUMMARY_SLOT]
LOCAL_DIM = len(OWN_FEATURES) + 2 * len(SUMMARY_SLOT)
"""floats in one site's local state (the codec's input)"""

PROGRESS = ("jobs_to_arrive_frac", "instances_done_frac")
"""appended to the global state: how far the episode has gone (critic only; a value without
it cannot tell an episode's last rounds from its first)"""

_LOG_TIME = OWN_FEATURES.index("log_time")
"""zeroed: seconds since the first arrival grow with the episode's length, so a policy
trained on short episodes would meet values it never saw on the long benchmark runs"""

def _key_duration(t):
    return (t.duration,)


def _key_weight(t):
    return (-t.job.job.weight,)


def _key_deadline(t):
    d = t.job.job.deadline
    return (np.inf if d is None else d,)


SCAN = 512
"""tasks looked at per order and round (bounds a round's cost on a backlog of thousands)"""


def _head(pool, name: str, key, n: int) -> list[TaskState]:
    """The first ``n`` open tasks of a registered sorted view, without materialising it."""
    if name not in pool._views:
        pool.ordered(name, key)
    return [pool._tasks[r] for _, r in pool._views[name][1].islice(0, n)]


def candidates(ctx: Decision, k: int, per_order: int | None = None) -> list[TaskState]:
    """The candidate window (module docstring): at most ``k`` open tasks that fit some
    site now, from the heads of five orders merged round-robin by rank. Each order is looked
    at to depth ``SCAN``; the work-left order is recomputed each round (work left changes
    as instances finish), over the whole pool, with a partial sort."""
    pool = ctx.pool
    if not len(pool):
        return []
    per = per_order or k
    if len(pool) <= k:
        lists = [pool.fifo()]
    else:
        fifo = pool.fifo() if len(pool) <= SCAN else pool.head(SCAN)
        everything = fifo if len(pool) <= SCAN else list(pool._tasks.values())
        wl = np.fromiter((t.job.work_left for t in everything), float, len(everything))
        if len(wl) > SCAN:
            top = np.argpartition(wl, SCAN)[:SCAN]
            top = top[np.argsort(wl[top], kind="stable")]
        else:
            top = np.argsort(wl, kind="stable")
        lists = [fifo, _head(pool, "learn:duration", _key_duration, SCAN),
                 [everything[i] for i in top],
                 _head(pool, "learn:weight", _key_weight, SCAN),
                 _head(pool, "learn:deadline", _key_deadline, SCAN)]
    heads = []
    for ts in lists:
        got = []
        for t in ts:
            if ctx.fit_nodes(t) is not None:
                got.append(t)
                if len(got) >= per:
                    break
        heads.append(got)
    out: list[TaskState] = []
    seen: set[int] = set()
    for i in range(max((len(h) for h in heads), default=0)):
        for h in heads:
            if i < len(h) and h[i].rank not in seen:
                seen.add(h[i].rank)
                out.append(h[i])
                if len(out) == k:
                    return out
    return out


class RoundView:
    """One round's arrays, all sites batched (S sites, k slots)."""

    __slots__ = ("window", "slots", "mask", "own", "local", "state", "n_valid")

    def __init__(self, window, slots, mask, own, local, state) -> None:
        self.window: list[TaskState] = window
        self.slots: np.ndarray = slots
        """(S, k, len(SLOT_FEATURES)) float32"""
        self.mask: np.ndarray = mask
        """(S, k) bool: the site may bid for the slot (its task fits there now)"""
        self.own: np.ndarray = own
        """(S, len(OWN_FEATURES)) float32"""
        self.local: np.ndarray = local
        """(S, LOCAL_DIM) float32: what the codec encodes"""
        self.state: np.ndarray = state
        """(state_dim,) float32: centralised critic input"""
        self.n_valid = mask.sum(axis=1)


class FeatureBuilder:
    """Static arrays of a cluster and ``view`` of one round; wraps ``env_obs.ObsBuilder``."""

    def __init__(self, cluster: Cluster, k: int) -> None:
        self.k = k
        self.base = ObsBuilder(cluster, k)
        self.n_sites = self.base.n_sites
        self.pref = self.base.pref
        self.state_dim = self.base.state_dim + len(PROGRESS)
        self._arrivals: tuple[int, np.ndarray] | None = None

    def view(self, sim: Simulator, window: list[TaskState], t0: float) -> RoundView:
        k, s = self.k, self.n_sites
        v = self.base.view(sim, window, t0)
        g = len(ENV_OWN)
        env_slots = v.obs[:, g:].reshape(s, k, len(ENV_SLOT))
        n = len(window)
        extra = np.zeros((k, len(EXTRA_SLOT)))
        for i, t in enumerate(window):
            js = t.job
            extra[i] = (js.work_left, js.critical_path, t.duration * t.open,
                        js.done_tasks / max(len(js.tasks), 1))
        extra[:, :3] = _log(extra[:, :3])
        slots = np.concatenate([env_slots, np.broadcast_to(extra, (s, k, len(EXTRA_SLOT)))],
                               axis=2).astype(np.float32)
        mask = v.masks[:, :k].astype(bool)
        # per-node free histogram, per site
        cap = sim.cap
        alive = cap.alive
        fr = np.stack([cap.free_cpu / np.maximum(cap.cap_cpu, 1),
                       cap.free_mem / np.maximum(cap.cap_mem, 1),
                       np.where(cap.cap_gpu > 0, cap.free_gpu / np.maximum(cap.cap_gpu, 1), 0.0)])
        bins = np.minimum((fr * HIST_BINS).astype(np.int64), HIST_BINS - 1)     # (3, nodes)
        has = np.stack([np.ones_like(alive), np.ones_like(alive), cap.cap_gpu > 0]) & alive
        idx = (cap.node_site[None, :] * 3 + np.arange(3)[:, None]) * HIST_BINS + bins
        hist = np.bincount(idx[has], minlength=s * 3 * HIST_BINS).reshape(s, 3, HIST_BINS)
        denom = np.maximum(hist.sum(axis=2, keepdims=True), 1)
        hist = (hist / denom).reshape(s, -1)
        nv = mask.sum(axis=1)
        fit_frac = nv / max(n, 1)
        m = mask[:, :, None]
        mean_valid = np.where(m, slots, 0).sum(axis=1) / np.maximum(nv, 1)[:, None]
        di, wi = SLOT_FEATURES.index("log_duration"), SLOT_FEATURES.index("log_wait")
        own = np.concatenate([v.obs[:, :g], hist, fit_frac[:, None], mean_valid[:, [di, wi]]],
                             axis=1).astype(np.float32)
        own[:, _LOG_TIME] = 0.0
        summ = slots[:, :, _SUMMARY_IDX]
        valid = (slots[:, :, 0] > 0)[:, :, None]
        mean_all = np.where(valid, summ, 0).sum(axis=1) / max(n, 1)
        max_all = np.where(valid, summ, 0).max(axis=1)
        local = np.concatenate([own, mean_all, max_all], axis=1).astype(np.float32)
        if self._arrivals is None or self._arrivals[0] is not sim:
            self._arrivals = (sim, np.array([j.job.arrival for j in sim.jobs]))
        arr = self._arrivals[1]
        n_jobs = max(len(arr), 1)
        to_come = len(arr) - np.searchsorted(arr, sim.now, side="right")
        done = sim.acct.instances_done / max(sim.workload.instance_count, 1)
        state = np.concatenate([v.state, [to_come / n_jobs, done]]).astype(np.float32)
        state[1] = 0.0                                    # log_time, as in own
        return RoundView(list(window), slots, mask, own, local, state)
