"""Gantt charts: one PNG per site, a row per node, a bar per run of an instance (grey bars
are runs that failed or were interrupted, hatched bars the transfer at the start)."""

from __future__ import annotations

import zlib
from pathlib import Path

from agora.agents.sim.engine import SimResult

MAX_BARS = 20_000
"""per site; beyond this the chart shows the first MAX_BARS runs (and says so)"""


def write_gantt(result: SimResult, out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_site: dict[int, list] = {}
    for a in result.attempts:
        by_site.setdefault(a.site, []).append(a)
    cmap = plt.get_cmap("tab20")
    all_nodes = result.cluster.nodes
    paths = []
    for s, site in enumerate(result.cluster.sites):
        runs = sorted(by_site.get(s, []), key=lambda a: a.start)
        shown = runs[:MAX_BARS]
        names = [n.name for n in site.nodes]
        row = {n: i for i, n in enumerate(names)}
        fig, ax = plt.subplots(figsize=(12, max(2.5, 0.28 * len(names) + 1.2)))
        bars: dict[int, tuple[list, list]] = {}
        hatched: dict[int, list] = {}
        for a in shown:
            y = row[all_nodes[a.node].name]
            ok = not a.fails
            color = cmap(zlib.crc32(a.task.job.job.id.encode()) % 20) if ok else "0.6"
            spans, colors = bars.setdefault(y, ([], []))
            spans.append((a.start, max(a.end - a.start, 1e-9)))
            colors.append(color)
            if a.transfer:
                hatched.setdefault(y, []).append((a.start, a.transfer))
        for y, (spans, colors) in bars.items():
            ax.broken_barh(spans, (y - 0.4, 0.8), facecolors=colors, linewidth=0)
        for y, spans in hatched.items():
            ax.broken_barh(spans, (y - 0.4, 0.8), facecolors="none", hatch="///",
                           edgecolor="k", linewidth=0)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("time (s)")
        title = f"{site.name} — {len(runs)} runs, policy {result.policy}"
        if len(runs) > len(shown):
            title += f" (first {len(shown)} shown)"
        ax.set_title(title)
        fig.tight_layout()
        p = out / f"gantt-{site.name.replace('/', '_')}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
