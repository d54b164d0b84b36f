"""What ``python -m bench.federation`` writes of a setup's comparison: the per-site and
averaged summary with the targets met or not (``summarise``), its markdown table
(``quality_md``) and the validation curves of local, federated and central training
(``plot_curves``, a PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agora.agents.sim.report import markdown_table, mean_ci


def summarise(res: dict) -> dict:
    """Per site and averaged: mean test JCT/score per approach, and the target ratios."""
    sites = list(res["test"]["local"])
    mean = lambda xs: float(np.mean(xs))
    out = {"sites": {}, "targets": {}}
    for s in sites:
        m = {a: {k: mean(res["test"][a][s][k]) for k in ("jct_mean_s", "score")}
             for a in ("local", "federated", "central")}
        m.update({a: {k: mean(v[k]) for k in v} for a, v in res["references"][s].items()})
        m["fed_vs_local"] = {"score": m["federated"]["score"] / m["local"]["score"] - 1,
                             "jct": 1 - m["federated"]["jct_mean_s"] / m["local"]["jct_mean_s"]}
        m["fed_vs_central"] = {"score": m["federated"]["score"] / m["central"]["score"] - 1,
                               "jct": 1 - m["federated"]["jct_mean_s"] / m["central"]["jct_mean_s"]}
        out["sites"][s] = m
    avg = lambda key, k: mean([out["sites"][s][key][k] for s in sites])
    out["average"] = {a: {k: avg(a, k) for k in ("jct_mean_s", "score")}
                      for a in ("local", "federated", "central", "SJF", "SRPT-market")}
    for key in ("fed_vs_local", "fed_vs_central"):
        out["average"][key] = {k: avg(key, k) for k in ("score", "jct")}
    fl, fc = out["average"]["fed_vs_local"], out["average"]["fed_vs_central"]
    out["targets"] = {
        "federated >= 5% better than local (score)": fl["score"] >= 0.05,
        "federated >= 5% better than local (mean JCT)": fl["jct"] >= 0.05,
        "federated within 3% of central (score)": fc["score"] >= -0.03,
        "federated within 3% of central (mean JCT)": fc["jct"] >= -0.03}
    return out


def quality_md(name: str, res: dict, summ: dict, n_test: int) -> str:
    rows = []
    for s, m in list(summ["sites"].items()) + [("**average**", summ["average"])]:
        cells = [s]
        for a in ("local", "federated", "central", "SRPT-market", "SJF"):
            if s == "**average**":
                cells.append(f"{m[a]['jct_mean_s']:.1f} / {m[a]['score']:.4f}")
            else:
                src = res["test"][a][s] if a in res["test"] else res["references"][s][a]
                j, jh = mean_ci(src["jct_mean_s"])
                sc, sh = mean_ci(src["score"])
                cells.append(f"{j:.1f} ± {jh:.1f} / {sc:.4f} ± {sh:.4f}")
        cells += [f"{m['fed_vs_local']['jct']:+.2%} / {m['fed_vs_local']['score']:+.2%}",
                  f"{m['fed_vs_central']['jct']:+.2%} / {m['fed_vs_central']['score']:+.2%}"]
        rows.append(cells)
    t = markdown_table(["site", "local JCT s / score", "federated", "central", "SRPT-market",
                        "SJF", "fed vs local (JCT / score)", "fed vs central (JCT / score)"], rows)
    tg = "; ".join(f"{k}: {'met' if v else '**not met**'}" for k, v in summ["targets"].items())
    steps = res["steps"]
    return (f"### {name}\n\n{t}\n\nTest episodes per site: {n_test} (mean ± 95% interval over "
            f"episodes; the average row is the mean over sites, its ratios the mean of the "
            f"per-site ratios; JCT gain = 1 − fed/ref, score gain = fed/ref − 1). Steps used: "
            f"local {steps['local']}, federated {steps['federated']}, central "
            f"{steps['central']}. Wall: " + ", ".join(f"{a} {w:.0f} s" for a, w in
                                                      res["wall_s"].items())
            + f".\n\nTargets: {tg}.\n")


def plot_curves(name: str, res: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(res["curves"]["local"])
    fig, ax = plt.subplots(2, len(sites), figsize=(3.4 * len(sites), 6), squeeze=False)
    for j, s in enumerate(sites):
        for a, style in (("local", "o-"), ("federated", "s-"), ("central", "^--")):
            pts = res["curves"][a][s]
            x = [p[0] for p in pts]
            ax[0][j].plot(x, [p[1] for p in pts], style, ms=3, label=a)
            ax[1][j].plot(x, [p[2] for p in pts], style, ms=3, label=a)
        ax[0][j].set_title(f"{s}: validation mean JCT, s")
        ax[1][j].set_title(f"{s}: validation score")
        ax[1][j].set_xlabel("steps per site")
    ax[0][0].legend(fontsize=8)
    fig.suptitle(f"{name}: local vs federated (FedAvg) vs central")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
