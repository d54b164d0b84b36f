"""Tables people read: one run's metrics, and policies side by side over seeds with 95%
confidence intervals (Student's t, since 5 seeds is a small sample)."""

from __future__ import annotations

import math

import numpy as np

# Two-sided 95% critical values of Student's t by degrees of freedom (1..30); beyond, 1.96.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]

# (metric key, column label, format) in the order tables show them.
COLUMNS = [
    ("jct_mean_s", "JCT mean s", "{:.1f}"),
    ("jct_p95_s", "JCT p95 s", "{:.1f}"),
    ("slowdown_mean", "slowdown", "{:.2f}"),
    ("makespan_s", "makespan s", "{:.0f}"),
    ("util_cpu", "util cpu", "{:.3f}"),
    ("util_mem", "util mem", "{:.3f}"),
    ("util_gpu", "util gpu", "{:.3f}"),
    ("deadline_miss_rate", "deadline miss", "{:.3f}"),
    ("energy_kwh", "energy kWh", "{:.1f}"),
    ("energy_efficiency", "energy eff", "{:.3f}"),
    ("score", "score", "{:.4f}"),
    ("tasks_lost", "lost", "{:.0f}"),
]


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (0 for a single value)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()) if len(x) else math.nan, 0.0
    t = _T95[len(x) - 2] if len(x) - 1 <= len(_T95) else 1.96
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(len(x)))


def _fmt(fmt: str, v) -> str:
    return "-" if v is None else fmt.format(v)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def metrics_table(m: dict) -> str:
    """One run: a metric per row."""
    rows = [[label, _fmt(fmt, m.get(key))] for key, label, fmt in COLUMNS]
    rows += [["instances (done/failed/unschedulable)",
              f"{m['instances_completed']}/{m['instances_failed']}/{m['instances_unschedulable']}"],
             ["jobs completed", f"{m['jobs_completed']} of {m['jobs']}"],
             ["events / s (wall)", f"{m['events_per_s']:.0f} ({m['wall_s']:.2f} s)"]]
    return markdown_table(["metric", "value"], rows)


def comparison_table(runs: dict[str, list[dict]], columns: list[str] | None = None) -> str:
    """Policies (rows) × metrics (columns), each cell ``mean ± 95% half-width`` over seeds."""
    cols = [c for c in COLUMNS if columns is None or c[0] in columns]
    header = ["policy"] + [label for _, label, _ in cols]
    rows = []
    for policy, results in runs.items():
        row = [policy]
        for key, _, fmt in cols:
            vals = [r[key] for r in results if r.get(key) is not None]
            if not vals:
                row.append("-")
                continue
            mean, half = mean_ci(vals)
            row.append(fmt.format(mean) + (f" ± {fmt.format(half)}" if len(vals) > 1 else ""))
        rows.append(row)
    seeds = max((len(r) for r in runs.values()), default=0)
    note = ("\n\n± is the half-width of a 95% Student-t interval over "
            f"{seeds} seeds" + ("; with fewer than 3 seeds it is too wide to tell policies "
                                "apart: run more (--seeds)" if seeds < 3 else "")
            if seeds > 1 else "\n\none seed: no interval (--seeds N for one)")
    return markdown_table(header, rows) + note


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Machine-readable form of ``comparison_table``: mean, ci95 and values per metric."""
    out = {}
    for policy, results in runs.items():
        out[policy] = {}
        for key, _, _ in COLUMNS:
            vals = [r[key] for r in results if r.get(key) is not None]
            if vals:
                mean, half = mean_ci(vals)
                out[policy][key] = {"mean": mean, "ci95": half, "values": vals}
    return out
