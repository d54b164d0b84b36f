"""Which sites can hold some of a set of open demand shapes now: the replicated schedule's
expected sites of a round (``coordinator.round_commands``), and an agent's look past the
heads of its orders when none of them fits its site (``agents.step.observe``)."""

from __future__ import annotations

import numpy as np


def fitting_sites(cap, shapes: list, wanted: set[int]) -> set[int]:
    """The sites (indices) where some demand of ``shapes`` fits an alive node now; it may
    stop looking once every site of ``wanted`` is found. The shapes without gpus are
    compared with every node at once (a backlog of thousands of shapes is one numpy
    comparison, not a loop), those with gpus one by one."""
    found: set[int] = set()
    cpu, mem = _plain(shapes)
    if len(cpu):
        fits = np.zeros(len(cap.alive), dtype=bool)
        for i in range(0, len(cpu), 2048):          # bounded temporaries
            c, m = cpu[i:i + 2048, None], mem[i:i + 2048, None]
            fits |= ((cap.free_cpu[None, :] >= c) & (cap.free_mem[None, :] >= m)).any(axis=0)
        found.update(int(i) for i in cap.sites_of(fits & cap.alive).nonzero()[0])
    for d in shapes:
        if wanted <= found:
            break
        if d.gpu:
            found.update(int(i) for i in cap.sites_of(cap.fit_mask(d)).nonzero()[0])
    return found


def site_fits_some(cap, shapes: list, sl: slice) -> bool:
    """Whether some demand of ``shapes`` fits an alive node of ``sl`` (one site's nodes)
    now: ``fitting_sites`` for one site, comparing with its few nodes only (an agent asks
    at each step its window is empty, usually with its site full)."""
    alive = cap.alive[sl]
    if not alive.any():
        return False
    cpu, mem = _plain(shapes)
    fc, fm = cap.free_cpu[sl][alive], cap.free_mem[sl][alive]
    if ((cpu[:, None] <= fc[None, :]) & (mem[:, None] <= fm[None, :])).any():
        return True
    return any(cap.fit_mask(d, sl).any() for d in shapes if d.gpu)


def _plain(shapes: list) -> tuple[np.ndarray, np.ndarray]:
    """(cpu, mem) of the demands of ``shapes`` without gpus."""
    plain = [d for d in shapes if not d.gpu]
    return (np.fromiter((d.cpu for d in plain), np.int64, len(plain)),
            np.fromiter((d.mem for d in plain), np.int64, len(plain)))
