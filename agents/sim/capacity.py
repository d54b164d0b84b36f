"""Free resources of every node of a cluster, kept as arrays so that "where does this demand
fit?" is a handful of vectorised comparisons over all nodes at once.

GPUs are tracked per device: a share (< 1000 milli-gpus) must fit on ONE gpu, a whole-gpu
demand needs that many entirely free gpus of one node (the gpu-sharing model of the Alibaba
trace, Weng et al., ATC 2023). Shares are placed best-fit across a node's gpus, which keeps
whole gpus free for whole-gpu work.
"""

from __future__ import annotations

import numpy as np

from agora.agents.domain import MILLI, Cluster, Demand

SMALL_SITE = 16
"""sites of at most this many nodes: ``best_fit`` in plain Python (faster than numpy there)"""

GpuSlots = tuple[tuple[int, int], ...]
"""(gpu index on the node, milli-gpus taken) for one placed instance"""


def take_gpus(gpu_free: list[int], d: Demand, device: int | None = None) -> GpuSlots:
    """Take ``d``'s gpus from one node's per-device free list (modified in place; the caller
    checked it fits): whole gpus are the first entirely free devices, a share goes best-fit
    onto the fullest device that still holds it, or onto ``device`` when a policy chose one
    (FGD) and it holds the share. The one rule for placing on gpus, used by the simulator
    and by policies that plan ahead on copies (EASY's reservations)."""
    if not d.gpu:
        return ()
    if d.gpu >= MILLI:
        idx = [i for i, f in enumerate(gpu_free) if f == MILLI][: d.gpu // MILLI]
        slots = tuple((i, MILLI) for i in idx)
    elif device is not None and 0 <= device < len(gpu_free) and gpu_free[device] >= d.gpu:
        slots = ((device, d.gpu),)
    else:
        best = min((f, i) for i, f in enumerate(gpu_free) if f >= d.gpu)[1]
        slots = ((best, d.gpu),)
    for i, g in slots:
        gpu_free[i] -= g
    return slots


def best_fit_in(free_cpu: list, free_mem: list, alive: list, inv_cpu: list, inv_mem: list,
                extra: list, cpu: int, mem: int, ok: list | None = None) -> int:
    """``Capacity.best_fit``'s rule over lists of a site's nodes (``Capacity.plain_lists``;
    ``ok``: an allowed mask): the index of the node left with the least normalised free
    resources, the lowest on ties; -1 when none fits. ``extra[i]`` is added last to a node's
    score (its gpu term, or whether it has gpus for a gpu-less demand), None when the node
    cannot hold the demand's gpus. numpy's arithmetic in the same order, so the same node."""
    best, best_score = -1, np.inf
    for i in range(len(free_cpu)):
        if not (free_cpu[i] >= cpu and free_mem[i] >= mem and alive[i]):
            continue
        if (ok is not None and not ok[i]) or extra[i] is None:
            continue
        score = (free_cpu[i] - cpu) * inv_cpu[i]
        score += (free_mem[i] - mem) * inv_mem[i]
        score += extra[i]
        if score < best_score:
            best, best_score = i, score
    return best


class Capacity:
    def __init__(self, cluster: Cluster) -> None:
        nodes = cluster.nodes
        self.n_nodes = len(nodes)
        self.n_sites = len(cluster.sites)
        self.node_names = [n.name for n in nodes]
        site_of = {s.name: i for i, s in enumerate(cluster.sites)}
        self.node_site = np.array([site_of[n.site] for n in nodes], dtype=np.int64)
        bounds = np.searchsorted(self.node_site, np.arange(self.n_sites + 1))
        self.site_slice = [slice(int(bounds[i]), int(bounds[i + 1])) for i in range(self.n_sites)]
        self.cap_cpu = np.array([n.cpu for n in nodes], dtype=np.int64)
        self.cap_mem = np.array([n.mem for n in nodes], dtype=np.int64)
        self.gpu_count = np.array([n.gpus for n in nodes], dtype=np.int64)
        self.cap_gpu = self.gpu_count * MILLI
        self.models = sorted({n.gpu_model for n in nodes if n.gpus and n.gpu_model})
        model_id = {m: i for i, m in enumerate(self.models)}
        self.node_model = np.array(
            [model_id.get(n.gpu_model, -1) if n.gpus else -1 for n in nodes], dtype=np.int64)
        self.free_cpu = self.cap_cpu.copy()
        self.free_mem = self.cap_mem.copy()
        self.gpu_free: list[list[int]] = [[MILLI] * n.gpus for n in nodes]
        self.whole_free = self.gpu_count.copy()
        self.max_share = np.where(self.gpu_count > 0, MILLI, 0).astype(np.int64)
        self.free_gpu = self.cap_gpu.copy()
        self.alive = np.ones(self.n_nodes, dtype=bool)
        self.has_gpu = self.gpu_count > 0
        # Normalisers for best-fit scores (avoid dividing by zero on gpu-less nodes).
        self._inv_cpu = 1.0 / np.maximum(self.cap_cpu, 1)
        self._inv_mem = 1.0 / np.maximum(self.cap_mem, 1)
        self._inv_gpu = 1.0 / np.maximum(self.cap_gpu, 1)
        self._model_masks: dict[frozenset[str], np.ndarray] = {}
        self.static_by_shape: dict[tuple, tuple[bool, ...]] = {}
        """``static_sites`` by demand shape (``Demand.key``), filled as demands are seen"""
        self.version = 0
        """counts the changes made through ``place``, ``release`` and ``set_alive``: a view
        that mirrors the free resources (``ledger_book.LedgerBook``'s) knows when it is stale"""

    # ---- queries -------------------------------------------------------------------------
    def model_mask(self, models: frozenset[str]) -> np.ndarray:
        m = self._model_masks.get(models)
        if m is None:
            ids = [i for i, name in enumerate(self.models) if name in models]
            m = np.isin(self.node_model, ids)
            self._model_masks[models] = m
        return m

    def static_mask(self, d: Demand) -> np.ndarray:
        """Nodes that could hold ``d`` when empty (alive or not)."""
        m = (self.cap_cpu >= d.cpu) & (self.cap_mem >= d.mem)
        if d.gpu:
            m &= (self.gpu_count >= d.whole_gpus) if d.gpu >= MILLI else self.has_gpu
            if d.gpu_models is not None:
                m &= self.model_mask(d.gpu_models)
        return m

    def static_sites(self, d: Demand) -> tuple[bool, ...]:
        """Per site: could some node of the site hold ``d`` when empty? Cached by demand
        shape (capacities never change); a tuple, cheap to index once per bid."""
        m = self.static_by_shape.get(d.key)
        if m is None:
            m = self.static_by_shape[d.key] = tuple(
                bool(x) for x in self.sites_of(self.static_mask(d)))
        return m

    def fit_mask(self, d: Demand, sl: slice = slice(None)) -> np.ndarray:
        """Alive nodes (within ``sl``) where ``d`` fits now."""
        m = (self.free_cpu[sl] >= d.cpu) & (self.free_mem[sl] >= d.mem) & self.alive[sl]
        if d.gpu:
            if d.gpu >= MILLI:
                m &= self.whole_free[sl] >= d.gpu // MILLI
            else:
                m &= self.max_share[sl] >= d.gpu
            if d.gpu_models is not None:
                m &= self.model_mask(d.gpu_models)[sl]
        return m

    def plain_fits(self, demands: list[Demand]) -> np.ndarray:
        """Per demand of no gpu: does it fit some alive node now? One numpy comparison of
        every demand against every node (``fit_mask`` asks for one demand)."""
        cpu = np.fromiter((d.cpu for d in demands), np.int64, len(demands))
        mem = np.fromiter((d.mem for d in demands), np.int64, len(demands))
        fc, fm = self.free_cpu[self.alive], self.free_mem[self.alive]
        return ((fc[None, :] >= cpu[:, None]) & (fm[None, :] >= mem[:, None])).any(axis=1)

    def room(self, node: int, d: Demand) -> int:
        """How many instances of the gpu-less demand ``d`` fit on ``node`` now (cpu and
        memory; at least 1 when ``d`` fits; a demand of nothing fits without limit)."""
        k = None
        for free, need in ((self.free_cpu[node], d.cpu), (self.free_mem[node], d.mem)):
            if need > 0:
                k = int(free) // need if k is None else min(k, int(free) // need)
        return 1 << 62 if k is None else k

    def sites_of(self, mask: np.ndarray) -> np.ndarray:
        """Per-site booleans: does any node of the site have ``mask`` set?"""
        return np.bincount(self.node_site[mask], minlength=self.n_sites) > 0

    def best_fit(self, d: Demand, site: int, allowed: np.ndarray | None = None) -> int | None:
        """The node of ``site`` that ``d`` fits most tightly (least normalised free resource
        left over; a gpu-less demand avoids gpu nodes so their cpus stay with gpu work), or
        None. ``allowed`` (a mask over all nodes) narrows the choice. Ties go to the lowest
        node index, so placement is deterministic."""
        sl = self.site_slice[site]
        if sl.stop - sl.start <= SMALL_SITE:
            return self._best_fit_small(d, sl, allowed)
        fit = self.fit_mask(d, sl)
        if allowed is not None:
            fit &= allowed[sl]
        score = (self.free_cpu[sl] - d.cpu) * self._inv_cpu[sl]
        score += (self.free_mem[sl] - d.mem) * self._inv_mem[sl]
        if d.gpu:
            score += (self.free_gpu[sl] - d.gpu) * self._inv_gpu[sl]
        else:
            score += self.has_gpu[sl]
        score[~fit] = np.inf                  # scores are finite: inf marks "does not fit"
        best = int(score.argmin())
        if score[best] == np.inf:
            return None
        return sl.start + best

    def _best_fit_small(self, d: Demand, sl: slice, allowed: np.ndarray | None) -> int | None:
        """``best_fit`` on a site of few nodes, in plain Python (``best_fit_in``): numpy's
        per-call cost is most of the time on a handful of nodes. The same rule and the same
        float arithmetic in the same order, so the same node (differential test)."""
        ok = allowed[sl].tolist() if allowed is not None else None
        lists = self.plain_lists(sl)
        gpu = d.gpu
        if gpu:                               # the gpu term in place of "has gpus"
            whole = gpu >= MILLI
            avail = (self.whole_free if whole else self.max_share)[sl].tolist()
            need = gpu // MILLI if whole else gpu
            models = (self.model_mask(d.gpu_models)[sl].tolist()
                      if d.gpu_models is not None else None)
            free_gpu, inv_gpu = self.free_gpu[sl].tolist(), self._inv_gpu[sl].tolist()
            extra = [None if avail[i] < need or (models is not None and not models[i])
                     else (free_gpu[i] - gpu) * inv_gpu[i] for i in range(len(avail))]
            lists = (*lists[:5], extra)
        i = best_fit_in(*lists, d.cpu, d.mem, ok)
        return None if i < 0 else sl.start + i

    def plain_lists(self, sl: slice) -> tuple[list, list, list, list, list, list]:
        """What a gpu-less best fit reads of the nodes of ``sl`` (``best_fit_in``), as Python
        lists: free cpu, free memory, alive, 1 / cpu, 1 / memory, has gpus."""
        return (self.free_cpu[sl].tolist(), self.free_mem[sl].tolist(),
                self.alive[sl].tolist(), self._inv_cpu[sl].tolist(),
                self._inv_mem[sl].tolist(), self.has_gpu[sl].tolist())

    def utilisation_of(self, sl: slice = slice(None)) -> tuple[float, float, float]:
        """Allocated fraction of (cpu, mem, gpu) over the alive nodes of ``sl``."""
        alive = self.alive[sl]
        out = []
        for cap, free in ((self.cap_cpu, self.free_cpu), (self.cap_mem, self.free_mem),
                          (self.cap_gpu, self.free_gpu)):
            c = int(cap[sl][alive].sum())
            out.append(0.0 if c == 0 else 1.0 - float(free[sl][alive].sum()) / c)
        return out[0], out[1], out[2]

    # ---- changes -------------------------------------------------------------------------
    def set_alive(self, node: int, up: bool) -> None:
        """Node ``node`` is up (it may take work) or down."""
        self.alive[node] = up
        self.version += 1

    def place(self, node: int, d: Demand, device: int | None = None) -> GpuSlots:
        """Take ``d`` on ``node`` (the caller checked it fits) and say which gpus it holds
        (``device``: the gpu a share should go on, see ``take_gpus``)."""
        self.version += 1
        self.free_cpu[node] -= d.cpu
        self.free_mem[node] -= d.mem
        slots = take_gpus(self.gpu_free[node], d, device)
        if slots:
            self._refresh_gpu(node)
        return slots

    def release(self, node: int, d: Demand, slots: GpuSlots) -> None:
        self.version += 1
        self.free_cpu[node] += d.cpu
        self.free_mem[node] += d.mem
        if slots:
            gf = self.gpu_free[node]
            for i, g in slots:
                gf[i] += g
            self._refresh_gpu(node)

    def _refresh_gpu(self, node: int) -> None:
        gf = self.gpu_free[node]
        self.whole_free[node] = sum(1 for f in gf if f == MILLI)
        self.max_share[node] = max(gf)
        self.free_gpu[node] = sum(gf)

    def check_invariants(self) -> None:
        """Raise AssertionError if any node is over-allocated (used by tests and --check)."""
        assert (self.free_cpu >= 0).all() and (self.free_cpu <= self.cap_cpu).all(), "cpu"
        assert (self.free_mem >= 0).all() and (self.free_mem <= self.cap_mem).all(), "mem"
        for node, gf in enumerate(self.gpu_free):
            assert all(0 <= f <= MILLI for f in gf), f"gpu on node {self.node_names[node]}"
