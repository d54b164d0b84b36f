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


JOB_TIMES = ("jct_mean_s", "jct_p95_s", "jct_weighted_mean_s", "slowdown_mean")
"""metrics over completed jobs: no value (shown '-') for a run in which no job completed"""
JOB_COUNTS = ("jobs", "jobs_completed", "jobs_unschedulable", "jobs_failed")


def _value(m: dict, key: str):
    """``m[key]``, or None where it means nothing (a job time of a run that completed no
    job: its 0.0 would read as a perfect result)."""
    if key in JOB_TIMES and m.get("jobs_completed") == 0:
        return None
    return m.get(key)


def shown(m: dict) -> dict:
    """``m`` as a user reads it (``--json``, result.json): a job time of a run that completed
    no job is null, as the tables show '-' (a probe: 0.0 read as a perfect result)."""
    return {k: _value(m, k) for k in m}


def _fmt(fmt: str, v) -> str:
    return "-" if v is None else fmt.format(v)


def _jobs_cell(results: list[dict]) -> str:
    """'done of all' over a policy's seeds (a range when the seeds differ), '+N unschedulable'
    / '+N failed' when any job was: no table leaves out work that never ran."""
    def span(key: str) -> str:
        vals = sorted({r.get(key, 0) for r in results})
        return f"{vals[0]}" if len(vals) == 1 else f"{vals[0]}-{vals[-1]}"
    cell = f"{span('jobs_completed')} of {span('jobs')}"
    for key, word in (("jobs_unschedulable", "unschedulable"), ("jobs_failed", "failed")):
        if any(r.get(key, 0) for r in results):
            cell += f", {span(key)} {word}"
    return cell


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def metrics_table(m: dict) -> str:
    """One run: a metric per row."""
    rows = [[label, _fmt(fmt, _value(m, key))] for key, label, fmt in COLUMNS]
    rows += [["instances (done/failed/unschedulable/cancelled)",
              f"{m['instances_completed']}/{m['instances_failed']}/{m['instances_unschedulable']}"
              f"/{m.get('instances_cancelled', 0)}"],
             ["jobs completed", f"{m['jobs_completed']} of {m['jobs']}"],
             ["events / s (wall)", f"{m['events_per_s']:.0f} ({m['wall_s']:.2f} s)"]]
    return markdown_table(["metric", "value"], rows)


def comparison_table(runs: dict[str, list[dict]], columns: list[str] | None = None) -> str:
    """Policies (rows) × metrics (columns), each cell ``mean ± 95% half-width`` over seeds."""
    cols = [c for c in COLUMNS if columns is None or c[0] in columns]
    header = ["policy"] + [label for _, label, _ in cols] + ["jobs completed"]
    rows = []
    for policy, results in runs.items():
        row = [policy]
        for key, _, fmt in cols:
            vals = [v for r in results if (v := _value(r, key)) is not None]
            if not vals:
                row.append("-")
                continue
            mean, half = mean_ci(vals)
            row.append(fmt.format(mean) + (f" ± {fmt.format(half)}" if len(vals) >= 3
                                           else " ± n/a" if len(vals) == 2 else ""))
        rows.append(row + [_jobs_cell(results)])
    seeds = max((len(r) for r in runs.values()), default=0)
    note = ("\n\n± is the half-width of a 95% Student-t interval over "
            f"{seeds} seeds" + ("; with fewer than 3 seeds it is too wide to tell policies "
                                "apart, so it is shown as n/a: run more (--seeds)"
                                if seeds < 3 else "")
            if seeds > 1 else "\n\none seed: no interval (--seeds N for one)")
    return markdown_table(header, rows) + note


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Machine-readable form of ``comparison_table``: mean, ci95 and values per metric, and
    the job counts of every seed (``jobs``, ``jobs_completed``, ``jobs_unschedulable``,
    ``jobs_failed``: values only)."""
    out = {}
    for policy, results in runs.items():
        out[policy] = {key: {"values": [r.get(key, 0) for r in results]}
                       for key in JOB_COUNTS}
        for key, _, _ in COLUMNS:
            vals = [v for r in results if (v := _value(r, key)) is not None]
            if vals:
                mean, half = mean_ci(vals)
                # one seed has no interval (a probe read ci95 0.0: no spread at all); two give
                # one too wide to use, as the table shows n/a -- null in both
                out[policy][key] = {"mean": mean, "ci95": half if len(vals) >= 3 else None,
                                    "values": vals}
    return out


BOOTSTRAP_SEED = 20231
"""seed of the paired bootstrap's resampling (recorded in every paired table)"""


def paired_bootstrap(values: list[float], *, resamples: int = 10_000,
                     seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Mean of ``values`` (paired differences, one per seed) and the 2.5% and 97.5%
    percentiles of the means of ``resamples`` seeded bootstrap resamples (percentile
    bootstrap; a single value has the interval [v, v])."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(x.mean()), float(lo), float(hi)


T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
"""Student's t, 97.5% quantile, for 1..30 degrees of freedom (beyond: Cornish-Fisher)"""


def paired_t(values: list[float]) -> tuple[float, float]:
    """The paired Student-t 95% interval of the mean of ``values`` (nan, nan below two).
    Beside the percentile bootstrap, which at a few seeds is about [min, max] of them: three
    differences of one sign gave a verdict that chance alone gives 25% of the time (a
    probe: bootstrap [+7.3%, +75.2%], t [-57%, +124%] at three seeds)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return math.nan, math.nan
    df = n - 1
    z = 1.959964
    t = T975[df - 1] if df <= len(T975) else \
        z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
    half = t * float(x.std(ddof=1)) / math.sqrt(n)
    return float(x.mean()) - half, float(x.mean()) + half


def paired_differences(runs: dict[str, list[dict]], reference: str,
                       metric: str = "jct_mean_s") -> dict[str, dict]:
    """For every policy but ``reference``: the relative difference (policy − reference) /
    policy of ``metric`` seed by seed (positive: the reference is lower, so better for a
    cost like JCT), its mean, bootstrap and paired-t 95% intervals, and the seeds it
    covers."""
    ref = runs[reference]
    out = {}
    for policy, results in runs.items():
        if policy == reference:
            continue
        diffs = [(r[metric] - q[metric]) / r[metric] for r, q in zip(results, ref)
                 if r.get(metric) and q.get(metric) is not None]
        mean, lo, hi = paired_bootstrap(diffs)
        t_lo, t_hi = paired_t(diffs)
        out[policy] = {"mean": mean, "lo": lo, "hi": hi, "t_lo": t_lo, "t_hi": t_hi,
                       "seeds": len(diffs), "values": diffs}
    return out


def paired_table(runs: dict[str, list[dict]], reference: str,
                 metric: str = "jct_mean_s") -> str:
    """``paired_differences`` as a table: per policy, how much lower ``reference``'s metric
    is, paired by seed, with the bootstrap and paired-t intervals; lower or higher only
    when both exclude zero."""
    rows = []
    for policy, d in paired_differences(runs, reference, metric).items():
        few = d["seeds"] < 3
        verdict = "n/a (fewer than 3 seeds)" if few else \
            "lower" if min(d["lo"], d["t_lo"]) > 0 else \
            "higher" if max(d["hi"], d["t_hi"]) < 0 else "no difference"
        if not d["seeds"]:     # nothing to pair: never "nan" (a probe)
            verdict = (f"n/a (no seed to pair: {policy}'s {metric} is 0 on every seed -- "
                       f"no job completed, or none took time)")
        rows.append([policy, "n/a" if not d["seeds"] else f"{100 * d['mean']:+.1f}%",
                     "n/a" if few else f"[{100 * d['lo']:+.1f}%, {100 * d['hi']:+.1f}%]",
                     "n/a" if few else f"[{100 * d['t_lo']:+.1f}%, {100 * d['t_hi']:+.1f}%]",
                     str(d["seeds"]), verdict])
    return markdown_table(
        ["baseline", f"{reference} {metric} lower by", "95% bootstrap interval",
         "95% paired t interval", "seeds", f"{reference} is"], rows) + \
        (f"\n\npaired by seed; percentile bootstrap, 10,000 resamples, seed {BOOTSTRAP_SEED}; "
         f"lower or higher only when both intervals exclude zero (at a few seeds the "
         f"bootstrap's is about the seeds' range)")
