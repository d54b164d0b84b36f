"""Who listens to whom: each site attends over the codes of at most ``peers`` other sites,
its nearest by link (latency, then seconds per MB, then the sites after it in site order,
round the ring).

All-to-all exchange does not scale with the number of sites: at N sites every code costs N-1
stream writes and every agent holds N-1 streams in and out (4,032 streams at 64 sites, on
machines whose cores the agents share). A bounded neighbourhood keeps both at ``peers``
whatever N is, and the nearest sites are the ones whose state matters most to a site's
decisions (work moves to them cheapest). Ties go round the ring (site r prefers r+1, r+2, ...
among equals), not to the lowest-numbered sites: with equal links -- a cluster file's single
``default`` link -- every site is then heard by ``peers`` others. Breaking ties by site order
made sites 0..peers the only ones anybody heard at 64 sites: 17 agents streamed their codes to
63 listeners each (~14 MiB and a third more CPU per agent, measured in a 64-site replay) and
the other 47 sites' codes reached no one. A site sends its code only to the sites that listen
to it, and a receiver's attention masks every other site out, in the simulation engine and
over gRPC alike, so both engines make the same decisions. With N <= ``peers`` + 1 every site
hears every other, as before this existed.
"""

from __future__ import annotations

import numpy as np

from agora.agents.domain import Cluster

DEFAULT_PEERS = 16
"""sites a site listens to at most (``AgentConfig.peers``); typical 8-32"""


def link_matrices(cluster: Cluster) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) latency seconds and transfer seconds per MB between every two sites (0 on
    the diagonal)."""
    names = cluster.site_names
    s = len(names)
    lat, s_per_mb = np.zeros((s, s)), np.zeros((s, s))
    for a in range(s):
        for b in range(s):
            link = cluster.link(names[a], names[b])
            if link is not None:
                lat[a, b] = link.latency_ms / 1000.0
                s_per_mb[a, b] = 8.0 / link.bandwidth_mbps
    return lat, s_per_mb


def listening(lat_s: np.ndarray, s_per_mb: np.ndarray, peers: int) -> np.ndarray:
    """(S, S) bool, ``[r, s]``: site r attends over site s's codes. ``lat_s``, ``s_per_mb``:
    ``link_matrices``; ``peers`` >= 1."""
    if peers < 1:
        raise ValueError(f"peers: {peers}; expected >= 1 (sites each agent listens to)")
    s = len(lat_s)
    out = np.zeros((s, s), bool)
    for r in range(s):
        others = [x for x in range(s) if x != r]
        others.sort(key=lambda x: (lat_s[r, x], s_per_mb[r, x], (x - r) % s))
        out[r, others[:peers]] = True
    return out


def listeners_of(listen: np.ndarray, site: int) -> list[int]:
    """The sites that attend over ``site``'s codes: where its code is sent."""
    return [int(r) for r in np.flatnonzero(listen[:, site])]
