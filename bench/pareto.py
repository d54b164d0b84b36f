"""The Pareto front of mean JCT, energy and utilisation over the heuristics and their
parameters, found by NSGA-II (optuna's ``NSGAIISampler``), with the learned policy's point
beside it; and, for several weightings of the configured score ``R = w_util·U + w_qos·Q +
w_energy·E`` (``SimConfig.objective``), the point of the front that R ranks first.

    python -m bench.pareto [--scenario synthetic-dag-high-load] [--seeds 2] [--trials 60]
        [--population 12] [--workers 2] [--search-seed 0]
        [--checkpoint agents/learn/checkpoints/learned-synE.pt] [--traces ../shared/workloads]

The search space: every plain baseline (``agents.baselines.BASELINES``, each also enqueued
once so that all of them are measured), ``srpt-cap:P`` (P in 1..64), ``weighted-fair:A`` (A in
[-2, 2]) and ``energy-first:θ`` (never waiting, or θ in [0.01, 10]). A trial is one policy on
the scenario's seeds 0..N-1 (the same seeds for every trial: paired), its objectives the
means over them: mean JCT (minimise), energy in kWh (minimise), mean utilisation (maximise).
A generation of ``--population`` trials is evaluated on ``--workers`` processes at once.
Writes bench/results/pareto-<scenario>.md, .json (every trial, the seeds, the search seed)
and .png (JCT against energy, the front marked, utilisation as colour).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

from agora.agents.baselines import BASELINES
from bench.scenarios import DEFAULT_TRACES, REPO, all_scenarios

RESULTS = REPO / "bench" / "results"
DEFAULT_CHECKPOINT = REPO / "agents" / "learn" / "checkpoints" / "learned-synE.pt"
OBJECTIVES = (("jct_mean_s", "min"), ("energy_kwh", "min"), ("util_mean", "max"))
KEPT = ("jct_mean_s", "energy_kwh", "util_mean", "qos", "energy_efficiency", "makespan_s")
WEIGHTINGS = ((0.25, 0.5, 0.25), (1 / 3, 1 / 3, 1 / 3), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
              (0.0, 0.0, 1.0), (0.5, 0.0, 0.5))
"""(w_util, w_qos, w_energy); the first is ``Objective``'s default"""


def dominates(a: dict, b: dict) -> bool:
    """Whether point ``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for key, sense in OBJECTIVES:
        x, y = (a[key], b[key]) if sense == "min" else (-a[key], -b[key])
        if x > y:
            return False
        better = better or x < y
    return better


def pareto_front(points: list[dict]) -> list[dict]:
    """The points no other point dominates, in the given order."""
    return [p for p in points if not any(dominates(q, p) for q in points if q is not p)]


def score(p: dict, w: tuple[float, float, float]) -> float:
    return w[0] * p["util_mean"] + w[1] * p["qos"] + w[2] * p["energy_efficiency"]


def policy_of(trial) -> str:
    """The policy a trial asks for (define-by-run: a family's parameter only when chosen)."""
    kind = trial.suggest_categorical(
        "policy", [*BASELINES, "srpt-cap", "weighted-fair", "energy-first"])
    if kind == "srpt-cap":
        return f"srpt-cap:{trial.suggest_int('cap', 1, 64, log=True)}"
    if kind == "weighted-fair":
        return f"weighted-fair:{trial.suggest_float('alpha', -2.0, 2.0):.3g}"
    if kind == "energy-first":
        if trial.suggest_categorical("wait", ["never", "threshold"]) == "never":
            return "energy-first:inf"
        return f"energy-first:{trial.suggest_float('theta', 0.01, 10.0, log=True):.3g}"
    return kind


_BUILT: dict = {}


def evaluate(job: tuple[str, str, str, int]) -> dict:
    """Policy ``name`` (or a checkpoint path) on seeds 0..n-1 of a scenario: the mean of each
    kept metric, and the wall time."""
    scenario, traces, name, seeds = job
    from agora.agents.learn.evaluate import is_checkpoint_path, run_learned
    from agora.agents.sim.runner import run_one

    sc = all_scenarios(Path(traces))[scenario]
    t0 = time.perf_counter()
    rows = []
    for seed in range(seeds):
        key = (scenario, traces, seed)
        if key not in _BUILT:
            _BUILT[key] = sc.build(seed)
        cluster, wl = _BUILT[key]
        if is_checkpoint_path(name):
            r, _ = run_learned(name, cluster, wl, seed=seed)
        else:
            r = run_one(cluster, wl, name, seed=seed)
        rows.append(r.metrics)
    out = {k: statistics.fmean(float(m[k]) for m in rows) for k in KEPT}
    out.update(policy=name, wall_s=time.perf_counter() - t0)
    return out


def search(a: argparse.Namespace) -> tuple[list[dict], int]:
    """Every distinct policy measured, and how many of them optuna's front of the trials
    holds."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(population_size=a.population, seed=a.search_seed)
    study = optuna.create_study(
        directions=["minimize" if s == "min" else "maximize" for _, s in OBJECTIVES],
        sampler=sampler)
    for name in BASELINES:
        study.enqueue_trial({"policy": name})
    seen: dict[str, dict] = {}
    names: dict[int, str] = {}                 # trial number -> its policy
    done = 0
    with mp.get_context("spawn").Pool(a.workers) as pool:
        while done < a.trials:
            trials = [study.ask() for _ in range(min(a.population, a.trials - done))]
            for t in trials:
                names[t.number] = policy_of(t)
            todo = sorted({names[t.number] for t in trials} - set(seen))
            for row in pool.map(evaluate, [(a.scenario, str(a.traces), n, a.seeds)
                                           for n in todo]):
                seen[row["policy"]] = row
                print(f"  {row['policy']:<22} JCT {row['jct_mean_s']:9.1f} s  "
                      f"{row['energy_kwh']:8.2f} kWh  U {row['util_mean']:.4f}  "
                      f"({row['wall_s']:.0f} s)", flush=True)
            for t in trials:
                study.tell(t, [seen[names[t.number]][k] for k, _ in OBJECTIVES])
            done += len(trials)
    return list(seen.values()), len({names[t.number] for t in study.best_trials})


COLUMNS = ("| policy | mean JCT s | energy kWh | utilisation | QoS | energy eff. "
           "| R (default weights) |")
ALIGN = "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"


def row(p: dict, *extra: str) -> str:
    """A point's table row; ``extra``: cells after the policy's name."""
    cells = [p["policy"], *extra, f"{p['jct_mean_s']:,.1f}", f"{p['energy_kwh']:,.2f}",
             f"{p['util_mean']:.4f}", f"{p['qos']:.3f}", f"{p['energy_efficiency']:.3f}",
             f"{score(p, WEIGHTINGS[0]):.4f}"]
    return "| " + " | ".join(cells) + " |"


def render(a: argparse.Namespace, points: list[dict], learned: dict | None,
           front: list[dict], optuna_front: int, wall_s: float) -> str:
    """``points``: the searched policies; ``front``: ``pareto_front`` of them and ``learned``."""
    every = points + ([learned] if learned else [])
    on_front = {p["policy"] for p in front}
    lines = [f"# Pareto front: {a.scenario}", "",
             f"`python -m bench.pareto --scenario {a.scenario} --seeds {a.seeds} --trials "
             f"{a.trials} --population {a.population} --search-seed {a.search_seed}`: "
             f"NSGA-II (optuna), {len(points)} distinct policies measured in {a.trials} "
             f"trials, seeds 0..{a.seeds - 1} each (means), {wall_s / 60:.0f} min on "
             f"{a.workers} processes. Objectives: mean JCT and energy minimised, mean "
             f"utilisation maximised.", "",
             f"## The front ({len(front)} points; optuna's own front of the searched "
             f"trials holds {optuna_front} distinct policies)", "", COLUMNS, ALIGN]
    lines += [row(p) for p in sorted(front, key=lambda p: p["jct_mean_s"])]
    lines += ["", "## Every plain baseline, and the learned policy", "",
              COLUMNS.replace("| policy |", "| policy | on the front |", 1),
              ALIGN.replace("| --- |", "| --- | --- |", 1)]
    named = [p for p in every if p["policy"] in BASELINES or p is learned]
    lines += [row(p, "yes" if p["policy"] in on_front else "no")
              for p in sorted(named, key=lambda p: p["jct_mean_s"])]
    lines += ["", "## What the configured score ranks first", "",
              "| w_util, w_qos, w_energy | first by R (among every point) | R | its mean JCT s "
              "| its energy kWh |", "| --- | --- | ---: | ---: | ---: |"]
    for w in WEIGHTINGS:
        best = max(every, key=lambda p: score(p, w))
        lines.append(f"| {w[0]:.2f}, {w[1]:.2f}, {w[2]:.2f} | {best['policy']} | "
                     f"{score(best, w):.4f} | {best['jct_mean_s']:,.1f} | "
                     f"{best['energy_kwh']:,.2f} |")
    return "\n".join(lines) + "\n"


def plot(every: list[dict], front: list[dict], learned: dict | None, title: str,
         png: Path) -> None:
    """``every``: the searched policies and ``learned``; ``front``: ``pareto_front`` of them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the chart shows the front's neighbourhood; dominated points far off it are counted
    fj, fe = [p["jct_mean_s"] for p in front], [p["energy_kwh"] for p in front]
    xlim = (min(fj) * 0.97, max(fj) * 1.25)
    ylim = (min(fe) * 0.985, max(fe) * 1.04)
    shown = [p for p in every if xlim[0] <= p["jct_mean_s"] <= xlim[1]
             and ylim[0] <= p["energy_kwh"] <= ylim[1]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sc = ax.scatter([p["jct_mean_s"] for p in shown], [p["energy_kwh"] for p in shown],
                    c=[p["util_mean"] for p in shown], cmap="viridis", s=18)
    ax.scatter(fj, fe, facecolors="none", edgecolors="red", s=70, label="Pareto front")
    if learned:
        ax.scatter([learned["jct_mean_s"]], [learned["energy_kwh"]], marker="*", s=160,
                   color="black", label="learned")
    for p in front:
        ax.annotate(p["policy"], (p["jct_mean_s"], p["energy_kwh"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("mean JCT (s)")
    ax.set_ylabel("energy (kWh)")
    ax.set_title(f"{title}; {len(every) - len(shown)} dominated points off the chart",
                 fontsize=8)
    fig.colorbar(sc, label="mean utilisation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="synthetic-dag-high-load",
                   help="one of bench.scenarios.all_scenarios")
    p.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--population", type=int, default=12)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--search-seed", type=int, default=0, help="NSGA-II's own seed")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                   help="a learned checkpoint to place beside the front ('' for none)")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    names = sorted(all_scenarios(a.traces))
    if a.scenario not in names:
        p.error(f"--scenario: {a.scenario!r}; expected one of {names}")
    for flag in ("seeds", "trials", "population", "workers"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag}: {getattr(a, flag)}; expected >= 1")
    if a.population < 2:
        p.error(f"--population: {a.population}; NSGA-II needs >= 2")
    t0 = time.perf_counter()
    points, optuna_front = search(a)
    learned = None
    if a.checkpoint:
        learned = evaluate((a.scenario, str(a.traces), a.checkpoint, a.seeds))
        learned["policy"] = f"learned ({Path(a.checkpoint).name})"
    wall = time.perf_counter() - t0
    every = points + ([learned] if learned else [])
    front = pareto_front(every)
    md = render(a, points, learned, front, optuna_front, wall)
    print(md)
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"pareto-{a.scenario}"
    stem.with_suffix(".md").write_text(md)
    stem.with_suffix(".json").write_text(json.dumps({
        "scenario": a.scenario, "seeds": list(range(a.seeds)), "search_seed": a.search_seed,
        "trials": a.trials, "population": a.population, "points": points,
        "learned": learned, "front": [q["policy"] for q in front]}, indent=1))
    plot(every, front, learned, f"{a.scenario}: NSGA-II over the heuristics ({a.seeds} seeds)",
         stem.with_suffix(".png"))
    print(f"wrote {stem}.md, .json, .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
