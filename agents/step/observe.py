"""What a site agent sees at one bidding round: its own site (the free resources of its nodes,
from its executor) and the open work (the committed ledger), nothing of any other site's
state. The same function serves the simulation engine (all sites at once) and a site agent
in the cluster (its own site alone), so a policy trained in one sees exactly the same
observation in the other.

**Candidate window** (per site). A FIFO head-of-queue window hides short work deep in the
backlog, so the window is a cheap deterministic pre-filter over the whole open pool: the
union of the first tasks that fit *this site now* under five orders -- oldest (FIFO),
shortest instance duration, least job work left (the job-level SRPT key), heaviest job
weight, closest deadline -- merged round-robin by rank, deduplicated, capped at ``k``. Each
order is looked at to a depth of ``SCAN`` tasks, so a round costs the same on a backlog of
thousands; the scan is shared by every site observed in one call.

**Slot features** (``SLOT_FEATURES``, per slot): demand relative to the site's largest node,
duration, wait, deadline slack, weight, whether the site is the job's origin, the transfer
time from the origin, open instances, the fraction of the site's alive nodes that hold an
instance now (fragmentation), and the job-level ones that make shortest-remaining-work
behaviour learnable: job work left, job critical path, the task's own open work, the
fraction of the job's tasks done.

**Own features** (``OWN_FEATURES``): free fractions, alive fraction, utilisation, has-gpu,
open-pool size, a histogram of the free cpu / mem / gpu fraction of its alive nodes ([0, ¼),
[¼, ½), [½, ¾), [¾, 1]), and three window summaries.

**Local state** (``LOCAL_DIM`` floats, what the message codec encodes): own features plus the
mean and max over the valid slots of ``SUMMARY_SLOT``.

**Job graphs** (``graph=True``, for a policy with a graph encoder): each slot's row goes on
with its job's DAG around the candidate (``job_graph.GRAPH_DIM`` columns, ``job_graph``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agora.agents.domain import Cluster
from agora.agents.ledger import Ledger, TaskEntry
from agora.agents.sim.capacity import Capacity
from agora.agents.sim.fitting import site_fits_some
from agora.agents.step.job_graph import GRAPH_DIM, graph_columns
from agora.agents.step.neighbours import DEFAULT_PEERS, link_matrices, listening

LOG_DIV = 10.0
"""log-scaled quantities are log1p(x) / LOG_DIV: 1 s -> 0.07, 1 min -> 0.41, 1 h -> 0.82"""
REL_CLIP = 2.0
"""demand / largest node is clipped here (a value > 1 means it can never fit the site)"""
OBS_BOUND = 10.0
"""every feature is clipped to [-OBS_BOUND, OBS_BOUND]"""
SCAN = 512
"""tasks looked at per order and round"""
HIST_BINS = 4

SLOT_FEATURES = ("valid", "cpu", "mem", "gpu", "log_duration", "log_wait", "slack",
                 "has_deadline", "log_weight", "is_origin", "log_transfer", "log_open",
                 "node_fit_frac", "log_job_work_left", "log_job_critical_path",
                 "log_task_work", "job_done_frac")
OWN_FEATURES = ("free_cpu", "free_mem", "free_gpu", "alive", "util_cpu", "util_mem",
                "util_gpu", "has_gpu", "log_open_tasks") + tuple(
    f"nodes_free_{r}_{b}" for r in ("cpu", "mem", "gpu") for b in range(HIST_BINS)) + (
    "cand_frac", "cand_mean_log_duration", "cand_mean_log_wait")
SUMMARY_SLOT = ("cpu", "mem", "gpu", "log_duration", "log_wait", "log_job_work_left",
                "node_fit_frac")
_SUMMARY_IDX = [SLOT_FEATURES.index(n) for n in SUMMARY_SLOT]
LOCAL_DIM = len(OWN_FEATURES) + 2 * len(SUMMARY_SLOT)


def _log(x):
    return np.log1p(np.maximum(x, 0.0)) / LOG_DIV


def _signed_log(x):
    return np.sign(x) * np.log1p(np.abs(x)) / LOG_DIV


def _key_duration(t: TaskEntry) -> tuple:
    return (t.duration,)


def _key_weight(t: TaskEntry) -> tuple:
    return (-t.job.job.weight,)


def _key_deadline(t: TaskEntry) -> tuple:
    d = t.job.job.deadline
    return (np.inf if d is None else d,)


@dataclass
class SiteObs:
    """One round of one site, as its policy reads it."""

    site: int
    window: list[TaskEntry]
    """the candidate tasks of the slots (at most k; each fits the site now)"""
    slots: np.ndarray
    """(k, len(SLOT_FEATURES)) float32, + GRAPH_DIM columns with job graphs; zero rows past
    the window"""
    mask: np.ndarray
    """(k,) bool: the slot holds a candidate"""
    own: np.ndarray
    """(len(OWN_FEATURES),) float32"""
    local: np.ndarray
    """(LOCAL_DIM,) float32: what the codec encodes"""
    free: tuple[int, int, int]
    """the site's free (milli-cpu, MiB, milli-gpu) over its alive nodes"""

    @property
    def active(self) -> bool:
        return bool(self.mask.any())


class Observer:
    """Static arrays of a cluster, and ``observe`` of some of its sites at one round."""

    def __init__(self, cluster: Cluster, k: int, peers: int = DEFAULT_PEERS,
                 graph: bool = False) -> None:
        cap = Capacity(cluster)
        self.k = k
        self.graph = graph
        """each slot also holds its job graph (``job_graph``)"""
        self.width = len(SLOT_FEATURES) + (GRAPH_DIM if graph else 0)
        self.n_sites = cap.n_sites
        self.site_names = list(cluster.site_names)
        s = self.n_sites
        self.largest = np.zeros((3, s))
        for i, sl in enumerate(cap.site_slice):
            for r, arr in enumerate((cap.cap_cpu, cap.cap_mem, cap.cap_gpu)):
                self.largest[r, i] = arr[sl].max(initial=0)
        self.total = np.array([[arr[sl].sum() for sl in cap.site_slice]
                               for arr in (cap.cap_cpu, cap.cap_mem, cap.cap_gpu)], float)
        self.has_gpu = (self.total[2] > 0).astype(np.float64)
        self.n_nodes = np.array([sl.stop - sl.start for sl in cap.site_slice], float)
        self.lat_s, self.s_per_mb = link_matrices(cluster)
        self.listening = listening(self.lat_s, self.s_per_mb, peers)
        """(S, S) bool: whose codes each site attends over (``neighbours``)"""

    # ---- the window -------------------------------------------------------------------
    def scan(self, ledger: Ledger) -> list[list[TaskEntry]]:
        """The heads of the five orders over the open pool (shared by every site)."""
        pool = ledger.pool
        n = len(pool)
        if n <= self.k:
            return [pool.fifo()]
        fifo = pool.fifo() if n <= SCAN else pool.head(SCAN)
        everything = fifo if n <= SCAN else pool.tasks()
        wl = np.fromiter((t.job.work_left for t in everything), float, len(everything))
        ranks = np.fromiter((t.rank for t in everything), np.int64, len(everything))
        if len(wl) > SCAN:
            top = np.argpartition(wl, SCAN)[:SCAN]
        else:
            top = np.arange(len(wl))
        top = top[np.lexsort((ranks[top], wl[top]))]
        return [fifo, pool.ordered_head("obs:duration", _key_duration, SCAN),
                [everything[i] for i in top],
                pool.ordered_head("obs:weight", _key_weight, SCAN),
                pool.ordered_head("obs:deadline", _key_deadline, SCAN)]

    def windows(self, heads: list[list[TaskEntry]], site_fit: dict[tuple, np.ndarray],
                sites: list[int]) -> list[list[TaskEntry]]:
        """Per site of ``sites``: at most k tasks of ``heads`` that fit it now (``site_fit``:
        shape -> nodes per site that hold one instance now), merged round-robin over the
        orders."""
        per_site = {s: [[] for _ in heads] for s in sites}
        for o, order in enumerate(heads):
            open_sites = list(sites)
            for t in order:
                f = site_fit[t.shape]
                still = []
                for s in open_sites:
                    if f[s]:
                        lst = per_site[s][o]
                        lst.append(t)
                        if len(lst) >= self.k:
                            continue
                    still.append(s)
                open_sites = still
                if not open_sites:
                    break
        out = []
        for s in sites:
            lists = per_site[s]
            merged: list[TaskEntry] = []
            seen: set[int] = set()
            for i in range(max((len(x) for x in lists), default=0)):
                for lst in lists:
                    if i < len(lst) and lst[i].rank not in seen:
                        seen.add(lst[i].rank)
                        merged.append(lst[i])
            out.append(merged[:self.k])
        return out

    def _fit_counts(self, t: TaskEntry, cap: Capacity, sites: list[int],
                    few: bool) -> np.ndarray:
        """Per site, the nodes that hold one instance of ``t`` now -- with ``few``, counted
        for ``sites`` only (one site's agent: its own nodes), the others 0."""
        if few:
            counts = np.zeros(self.n_sites, np.int64)
            for s in sites:
                counts[s] = cap.fit_mask(t.demand, cap.site_slice[s]).sum()
            return counts
        return np.bincount(cap.node_site[cap.fit_mask(t.demand)], minlength=self.n_sites)

    def _past_heads(self, ledger: Ledger, cap: Capacity, s: int,
                    site_fit: dict[tuple, np.ndarray], sites: list[int],
                    few: bool) -> list[TaskEntry]:
        """Site ``s``'s window when nothing at the heads of the orders fits it: the first k
        open tasks in FIFO order that do, if some open shape fits it now (a review: the
        replicated schedule expected the site -- it can hold open work -- and the agent,
        seeing none of it, never decided: its rounds waited on it). Adds their shapes to
        ``site_fit``."""
        if not site_fits_some(cap, ledger.pool.shapes(), cap.site_slice[s]):
            return []
        out: list[TaskEntry] = []
        for t in ledger.pool.scan():
            f = site_fit.get(t.shape)
            if f is None:
                f = site_fit[t.shape] = self._fit_counts(t, cap, sites, few)
            if f[s]:
                out.append(t)
                if len(out) >= self.k:
                    break
        return out

    # ---- features -----------------------------------------------------------------------
    def observe(self, ledger: Ledger, cap: Capacity, sites: list[int],
                now: float) -> list[SiteObs]:
        """The observation of each site in ``sites`` (own site from ``cap``, open work from
        ``ledger``; ``now`` on the workload clock)."""
        heads = self.scan(ledger) if len(ledger.pool) else []
        site_fit: dict[tuple, np.ndarray] = {}
        few = len(sites) * 4 < self.n_sites      # one site's agent: look at its nodes only
        for order in heads:
            for t in order:
                if t.shape not in site_fit:
                    site_fit[t.shape] = self._fit_counts(t, cap, sites, few)
        wins = self.windows(heads, site_fit, sites) if heads else [[] for _ in sites]
        if heads and len(ledger.pool) > len(heads[0]):
            for j, s in enumerate(sites):
                if not wins[j]:
                    wins[j] = self._past_heads(ledger, cap, s, site_fit, sites, few)
        for j, s in enumerate(sites):
            wins[j] = _failed_here_last(wins[j], cap.site_slice[s])
        agg = _SiteAggregates(cap, self)
        table = _TaskTable(wins, now, self.graph)
        log_pool = _log(len(ledger.pool))
        return [self._one(s, w, agg, table, site_fit, log_pool) for s, w in zip(sites, wins)]

    def _one(self, s: int, window: list[TaskEntry], agg: _SiteAggregates, table: _TaskTable,
             site_fit: dict[tuple, np.ndarray], log_pool: float) -> SiteObs:
        k, n = self.k, len(window)
        slots = np.zeros((k, self.width))
        if n:
            rows = table.rows(window)
            dem = table.demand[rows]                                      # (n, 3)
            inv = agg.inv_largest[:, s]
            rel = np.where(inv > 0, dem * inv, np.where(dem > 0, REL_CLIP, 0.0))
            origin = table.origin[rows]
            transfer = self.lat_s[origin, s] + table.data_mb[rows] * self.s_per_mb[origin, s]
            node_fit = np.array([site_fit[t.shape][s] for t in window]) / agg.n_alive[s]
            slots[:n, 0] = 1.0
            slots[:n, 1:4] = np.minimum(rel, REL_CLIP)
            slots[:n, 4:9] = table.common[rows, :5]
            slots[:n, 9] = origin == s
            slots[:n, 10] = _log(transfer)
            slots[:n, 11] = table.common[rows, 5]
            slots[:n, 12] = node_fit
            slots[:n, 13:17] = table.common[rows, 6:10]
            if self.graph:
                slots[:n, len(SLOT_FEATURES):] = table.graph[rows]
        mask = np.zeros(k, bool)
        mask[:n] = True
        di, wi = SLOT_FEATURES.index("log_duration"), SLOT_FEATURES.index("log_wait")
        mean_valid = slots[:n].mean(axis=0) if n else np.zeros(self.width)
        own = np.concatenate([agg.own[s], [log_pool], agg.hist[s],
                              [n / k, mean_valid[di], mean_valid[wi]]])
        summ = slots[:n, _SUMMARY_IDX]
        local = np.concatenate([own, summ.mean(axis=0) if n else np.zeros(len(SUMMARY_SLOT)),
                                summ.max(axis=0) if n else np.zeros(len(SUMMARY_SLOT))])
        np.clip(slots, -OBS_BOUND, OBS_BOUND, out=slots)
        return SiteObs(site=s, window=window, slots=slots.astype(np.float32), mask=mask,
                       own=np.clip(own, -OBS_BOUND, OBS_BOUND).astype(np.float32),
                       local=np.clip(local, -OBS_BOUND, OBS_BOUND).astype(np.float32),
                       free=agg.free_int(s))


def _failed_here_last(window: list[TaskEntry], sl: slice) -> list[TaskEntry]:
    """``window`` without the tasks that failed on a node of the site (``sl``) when it holds
    others: the clearing gives such a task to another site while one can hold it, and a
    bid for it took the site's budget from work only the site could hold (a review). With
    nothing else to bid for, the site still may (no other site may be able to)."""
    if not any(t.failed_nodes for t in window):
        return window
    rest = [t for t in window
            if not any(sl.start <= n < sl.stop for n in t.failed_nodes)]
    return rest or window


class _SiteAggregates:
    """Per-site sums over alive nodes, for every site at once (one bincount each)."""

    def __init__(self, cap: Capacity, obs: Observer) -> None:
        s = obs.n_sites
        alive = cap.alive
        ns = cap.node_site

        def per_site(x):
            return np.bincount(ns, weights=x * alive, minlength=s)

        self.free = np.stack([per_site(cap.free_cpu), per_site(cap.free_mem),
                              per_site(cap.free_gpu)])                       # (3, S)
        alive_cap = np.stack([per_site(cap.cap_cpu), per_site(cap.cap_mem),
                              per_site(cap.cap_gpu)])
        self.n_alive = np.maximum(np.bincount(ns, weights=alive.astype(float), minlength=s), 1)
        total = obs.total
        free_frac = np.divide(self.free, total, out=np.zeros_like(self.free), where=total > 0)
        util = np.divide(alive_cap - self.free, alive_cap, out=np.zeros_like(self.free),
                         where=alive_cap > 0)
        alive_frac = np.bincount(ns, weights=alive.astype(float), minlength=s) / \
            np.maximum(obs.n_nodes, 1)
        self.own = np.concatenate([free_frac, alive_frac[None], util, obs.has_gpu[None]]).T
        fr = np.stack([cap.free_cpu / np.maximum(cap.cap_cpu, 1),
                       cap.free_mem / np.maximum(cap.cap_mem, 1),
                       np.where(cap.cap_gpu > 0, cap.free_gpu / np.maximum(cap.cap_gpu, 1),
                                0.0)])
        bins = np.minimum((fr * HIST_BINS).astype(np.int64), HIST_BINS - 1)   # (3, nodes)
        has = np.stack([alive, alive, (cap.cap_gpu > 0) & alive])
        idx = (ns[None, :] * 3 + np.arange(3)[:, None]) * HIST_BINS + bins
        hist = np.bincount(idx[has], minlength=s * 3 * HIST_BINS).reshape(s, 3, HIST_BINS)
        self.hist = (hist / np.maximum(hist.sum(axis=2, keepdims=True), 1)).reshape(s, -1)
        self.inv_largest = np.where(obs.largest > 0, 1.0 / np.maximum(obs.largest, 1), 0.0)

    def free_int(self, s: int) -> tuple[int, int, int]:
        return int(self.free[0, s]), int(self.free[1, s]), int(self.free[2, s])


class _TaskTable:
    """The site-independent features of every task in some window, computed once."""

    def __init__(self, windows: list[list[TaskEntry]], now: float, graph: bool) -> None:
        self.index: dict[int, int] = {}
        tasks = []
        for w in windows:
            for t in w:
                if t.rank not in self.index:
                    self.index[t.rank] = len(tasks)
                    tasks.append(t)
        n = len(tasks)
        raw = np.zeros((n, 10))
        self.demand = np.zeros((n, 3))
        self.origin = np.zeros(n, np.int64)
        self.data_mb = np.zeros(n)
        for i, t in enumerate(tasks):
            d, js = t.demand, t.job
            dl = js.job.deadline
            ready = t.ready_at if t.ready_at is not None else now
            raw[i] = (t.duration, now - ready, 0.0 if dl is None else dl - now - t.duration,
                      dl is not None, js.job.weight, t.open, js.work_left, js.critical_path,
                      t.duration * t.open, js.done_tasks / max(len(js.tasks), 1))
            self.demand[i] = (d.cpu, d.mem, d.gpu)
            self.origin[i] = js.origin
            self.data_mb[i] = t.task.data_mb
        common = np.empty_like(raw)
        common[:, 0] = _log(raw[:, 0])
        common[:, 1] = _log(raw[:, 1])
        common[:, 2] = _signed_log(raw[:, 2]) * raw[:, 3]
        common[:, 3] = raw[:, 3]
        common[:, 4] = np.log1p(raw[:, 4])
        common[:, 5] = _log(raw[:, 5])
        common[:, 6:9] = _log(raw[:, 6:9])
        common[:, 9] = raw[:, 9]
        self.common = common
        """log_duration, log_wait, slack, has_deadline, log_weight, log_open,
        log_job_work_left, log_job_critical_path, log_task_work, job_done_frac"""
        self.graph = np.array([graph_columns(t) for t in tasks]).reshape(n, GRAPH_DIM) \
            if graph else None
        """(n, GRAPH_DIM) with job graphs"""

    def rows(self, window: list[TaskEntry]) -> np.ndarray:
        return np.array([self.index[t.rank] for t in window])
