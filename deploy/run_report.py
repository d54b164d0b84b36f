"""What really ran, from the runs' folders a live Agora leaves under ``out/runs`` (one per run
of an instance: ``run.json`` says what and where, ``end.json`` how it ended): the rows, a
Gantt chart of them (a row per node, a bar per run, grey for runs that did not complete), and
a few figures (makespan, runs per node, retries)."""

from __future__ import annotations

import json
from pathlib import Path


def runs_from_folders(root: str | Path) -> list[dict]:
    """Every run with an end under ``root``: job, task, instance, run, node, site, start,
    end, kind, exit_code, reason; sorted by start."""
    rows = []
    for run_json in Path(root).glob("*/*/*/*/run.json"):
        try:
            req = json.loads(run_json.read_text())
            end = json.loads((run_json.parent / "end.json").read_text())
        except (OSError, ValueError):
            continue
        rows.append({"job": req["job"], "task": req["task"], "instance": req["instance"],
                     "run": req["run_id"], "attempt": req.get("attempt", 1),
                     "node": req["node"], "site": req["site"], "start": end["start"],
                     "end": end["end"], "kind": end["kind"], "exit_code": end["exit_code"],
                     "reason": end.get("reason", "")})
    return sorted(rows, key=lambda r: (r["start"], r["node"]))


def run_figures(rows: list[dict]) -> dict:
    """Makespan, per-job wall time, runs per node, and attempts that did not complete."""
    if not rows:
        return {"runs": 0}
    t0 = min(r["start"] for r in rows)
    jobs: dict[str, list[float]] = {}
    for r in rows:
        span = jobs.setdefault(r["job"], [r["start"], r["end"]])
        span[0], span[1] = min(span[0], r["start"]), max(span[1], r["end"])
    per_node: dict[str, int] = {}
    for r in rows:
        per_node[r["node"]] = per_node.get(r["node"], 0) + 1
    return {"runs": len(rows), "completed": sum(r["kind"] == "completed" for r in rows),
            "not_completed": [f"{r['job']}/{r['task']}/{r['instance']}: {r['kind']} "
                              f"({r['reason']})" for r in rows if r["kind"] != "completed"],
            "makespan_s": round(max(r["end"] for r in rows) - t0, 2),
            "job_wall_s": {j: round(e - s, 2) for j, (s, e) in sorted(jobs.items())},
            "runs_per_node": dict(sorted(per_node.items()))}


def write_runs_gantt(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """One PNG: a row per node, a bar per run labelled job/task[instance]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nodes = sorted({r["node"] for r in rows})
    lanes: dict[str, list[float]] = {n: [] for n in nodes}
    t0 = min((r["start"] for r in rows), default=0.0)
    placed = []                      # (row index on the chart, run): runs overlap on a node
    for r in rows:
        free = lanes[r["node"]]
        k = next((i for i, t in enumerate(free) if t <= r["start"]), None)
        if k is None:
            free.append(r["end"])
            k = len(free) - 1
        else:
            free[k] = r["end"]
        placed.append((r["node"], k, r))
    ys, labels, y = {}, [], 0
    for n in nodes:
        for k in range(len(lanes[n])):
            ys[(n, k)] = y
            labels.append(n if k == 0 else "")
            y += 1
    cmap = plt.get_cmap("tab10")
    order = {j: k for k, j in enumerate(dict.fromkeys(r["job"] for r in rows))}
    fig, ax = plt.subplots(figsize=(12, max(2.5, 0.35 * y + 1.2)))
    for n, k, r in placed:
        color = cmap(order[r["job"]] % 10) if r["kind"] == "completed" else "0.65"
        width = max(r["end"] - r["start"], 0.05)
        ax.barh(ys[(n, k)], width, left=r["start"] - t0, height=0.8, color=color)
        ax.text(r["start"] - t0 + 0.05, ys[(n, k)], f"{r['job']}/{r['task']}[{r['instance']}]",
                va="center", fontsize=6)
    ax.set_yticks(range(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first run started")
    ax.set_title(title or f"{len(rows)} runs on {len(nodes)} nodes (grey: did not complete)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
