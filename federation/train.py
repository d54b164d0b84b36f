"""``agora train --federated``: rounds of Flower's strategies over PPO site learners, each on
its own organisation's scenario (``federation/domains.py``), with a progress bar, per-round
metrics, learning curves, a checkpoint per round and resume.

A round is one ``run_federation`` (or ``run_secagg_federation``) call of one Flower round over
a ``SiteGrid`` of real ``ClientApp``s: every site loads the global weights, runs
``local_steps`` environment steps of PPO on its own episodes, and replies with its weights
and step count; Flower's FedAvg / FedMedian / FedTrimmedAvg (or SecAgg+ FedAvg) aggregates;
then every site evaluates the aggregate greedily on its own held-back validation episodes.
Running the rounds one call at a time, each with its own seed, makes a resumed run identical
to an uninterrupted one.

**Seeds** (recorded in ``state.json``, every checkpoint and every metrics row): the initial
global weights come from ``torch.manual_seed(seed)``; site ``i``'s generators from
``site_seed(seed, i)``; round ``r``'s server draws (Flower's node sampling) from
``round_seed(seed, r)``; episodes from the fixed bases of ``agents/learn/loop.py``.

**Files** under ``out``: ``metrics.jsonl`` (per round: one row per site and one for the
federation), ``learning_curve.png`` (federation) and ``sites/<site>/learning_curve.png``,
``rounds/round-NNNN.pt`` and ``last.pt`` (the aggregate, an ``agents.learn`` checkpoint:
``agora evaluate --checkpoint out/last.pt`` runs it on any cluster with the setup's number of
agent sites), ``sites/<site>/state-NNNN.pt`` (the site's local optimiser, value normaliser,
generators and budget; the last two rounds are kept), ``state.json`` (the last finished round;
written last, so an interrupted round is redone on resume), ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.learned_policy import Agents
from agora.agents.learn.loop import TRAIN_SEED_BASE, VAL_SEED_BASE, TrainConfig
from agora.agents.learn.networks import get_weights, set_weights
from agora.agents.learn.tracking import make_tracker
from agora.federation.client_app import make_client_app
from agora.federation.domains import Setup
from agora.federation.grid import SiteGrid, grid_of
from agora.federation.ppo_learner import PPOSiteLearner
from agora.federation.run_files import (comparable_setups, federated_folder, kept_rows,
                                        last_rows, read_state)
from agora.federation.server import (FederationConfig, check_strategy, round_metrics,
                                     round_seed, run_federation, site_seed)


@dataclass(frozen=True)
class FedTrainConfig:
    rounds: int = 10
    """federated rounds (each: local training, aggregation, evaluation)"""
    local_steps: int = 2000
    """environment steps (bidding rounds) of local PPO per site per round; more than one
    episode's rounds (an episode is never cut)"""
    strategy: str = "fedavg"
    """fedavg | median | trimmed (Flower's FedAvg, FedMedian, FedTrimmedAvg)"""
    secagg: bool = False
    """aggregate with Flower's SecAgg+ (FedAvg only)"""
    trim_beta: float = 0.2
    """trimmed: fraction cut from each end, in [0, 0.5)"""
    min_fraction: float = 0.5
    """a round goes on with at least ceil(min_fraction · sites) replies"""
    timeout_s: float = 3600.0
    """how long a round waits for its sites (sites in one process train in turn)"""
    seed: int = 0
    site: TrainConfig = field(default_factory=TrainConfig)
    """every site's PPO configuration (its scenario and seed are set per site)"""

    def __post_init__(self) -> None:
        FederationConfig(rounds=self.rounds, strategy=self.strategy, trim_beta=self.trim_beta,
                         min_fraction=self.min_fraction, timeout_s=self.timeout_s)
        if not isinstance(self.local_steps, int) or self.local_steps < 1:
            raise ValueError(f"local_steps: {self.local_steps!r}; expected an int >= 1")
        if self.secagg and self.strategy != "fedavg":
            raise ValueError(f"strategy: {self.strategy!r} cannot run under SecAgg+ (the "
                             f"server sees only the sum of the updates); use fedavg")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> FedTrainConfig:
        return FedTrainConfig(**{**d, "site": TrainConfig.from_dict(d["site"])})


def build_learners(setup: Setup, cfg: FedTrainConfig, *, eval_first: int = 0
                   ) -> list[PPOSiteLearner]:
    """One PPO learner per organisation of ``setup``."""
    return [PPOSiteLearner(s.name, replace(cfg.site, scenario=asdict(s.scenario),
                                           seed=site_seed(cfg.seed, i)), eval_first=eval_first)
            for i, s in enumerate(setup.sites)]


def initial_weights(learner: PPOSiteLearner, seed: int) -> list[np.ndarray]:
    """The seeded initial global network (the same for every approach of the benchmark)."""
    a = learner.loop.agents
    saved = torch.get_rng_state()
    torch.manual_seed(seed)
    fresh = Agents(a.cfg)
    torch.set_rng_state(saved)
    return get_weights(fresh.modules)


def save_global(path: Path, weights: list[np.ndarray], learner: PPOSiteLearner,
                extra: dict) -> None:
    a = learner.loop.agents
    agents = Agents(a.cfg)
    set_weights(agents.modules, weights)
    checkpoint.save(path, agents=agents, extra=extra)


def stamp_competence(path: Path, learners: list[PPOSiteLearner]) -> int:
    """The aggregate's competence (``agents.learn.competence``): the widest of the windows
    it ranks on every organisation's own training episodes, stored in ``path``."""
    from agora.agents.learn import competence

    agents, _ = checkpoint.load_agents(path)
    measures = [competence.measure(agents, l.loop.src) for l in learners]
    out = max(measures, key=lambda m: m["max_choices"])
    out = {**out, "max_open": max(m["max_open"] for m in measures),
           "per_site": {l.site: m["max_choices"] for l, m in zip(learners, measures)}}
    competence.stamp(path, out)
    return out["max_choices"]


def train_federated(setup: Setup, cfg: FedTrainConfig, out: str | Path, *,
                    resume: bool = False, progress: bool = True, log=print,
                    learners: list | None = None, track: str | None = None) -> dict:
    """Run ``cfg.rounds`` federated rounds over ``setup`` (module docstring); returns the
    summary. ``learners``: the sites' learners when not ``build_learners``' (the benchmark's
    Byzantine site). ``track``: also write each round's rows to TensorBoard, one run per
    site and one for the federation (``agents/learn/tracking.py``)."""
    torch.set_num_threads(1)
    tracker = make_tracker(track, out)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_strategy(FederationConfig(strategy=cfg.strategy, trim_beta=cfg.trim_beta),
                   len(setup.sites) if learners is None else len(learners))
    learners = learners if learners is not None else build_learners(setup, cfg)
    seeds = {"global_init": cfg.seed, "sites": {l.site: l.loop.cfg.seed for l in learners},
             "rounds": "round_seed(seed, r)", "episode_seed_base": TRAIN_SEED_BASE,
             "validation_seed_base": VAL_SEED_BASE}
    # in JSON's types (lists, not tuples), as the saved state is read back for --resume
    record = json.loads(json.dumps({"config": cfg.to_dict(), "setup": setup.to_dict(),
                                    "seeds": seeds}))
    weights, done = initial_weights(learners[0], cfg.seed), 0
    state_file = out / "state.json"
    if resume and not state_file.exists() and (out / "last.pt").exists() and \
            not federated_folder(out):
        # a probe: a traceback, or the other run's files overwritten but for its best.pt
        raise ValueError(f"--resume: {out} holds a run that is not federated (last.pt, no "
                         f"state.json); expected the folder of a federated run, or another "
                         f"--out")
    if resume and state_file.exists():
        st = read_state(state_file)
        saved = FedTrainConfig.from_dict(st["config"])
        # more rounds may be asked; the organisations' step budget follows them
        same = replace(saved, rounds=cfg.rounds, site=replace(saved.site, steps=cfg.site.steps))
        if any("digests" not in x for x in st["setup"].get("sites", [])):
            for x in record["setup"]["sites"]:      # a run recorded before the digests
                x.pop("digests", None)
        was, now = comparable_setups(st["setup"], record["setup"],
                                     {x.name: x.scenario for x in setup.sites})
        if same != cfg or was != now:
            diff = checkpoint.config_differences({"config": same.to_dict(), "setup": was},
                                                 {"config": cfg.to_dict(), "setup": now})
            raise checkpoint.CheckpointMismatch(
                f"{state_file}: --resume with a different configuration or setup "
                f"({'; '.join(diff[:5])}{'; ...' if len(diff) > 5 else ''}); expected the "
                f"run's own settings")
        done = st["round"]
        finishing = done == cfg.rounds and not (out / "summary.json").exists()
        if finishing:                # a probe: stopped after its last round's commit, before
            log(f"{out}: all {done} rounds done; writing what a run writes at its end")
            # last.pt may hold a later round of a run asked for more rounds (a review)
            shutil.copyfile(out / "rounds" / f"round-{done:04d}.pt", out / "last.pt")
        elif done >= cfg.rounds:     # a probe: it trained nothing and reported "rounds: 3"
            raise ValueError(f"--rounds {cfg.rounds}: {out} has done {done} rounds already; "
                             f"expected more than {done} to train on")
        # the global model of the round state.json vouches for: last.pt may already hold the
        # next one, when a run was killed between the two (a probe: rounds mixed)
        ck = out / "rounds" / f"round-{done:04d}.pt"
        agents, _ = checkpoint.load_agents(ck)
        weights = get_weights(agents.modules)
        for l in learners:
            l.load_state(out / "sites" / l.site / f"state-{done:04d}.pt")
        log(f"resumed from {ck} after round {done}")
    mpath = out / "metrics.jsonl"
    kept = kept_rows(mpath, done, done < cfg.rounds) if resume and mpath.exists() else []
    mpath.write_text("".join(x + "\n" for x in kept))
    (out / "config.json").write_text(json.dumps(record, indent=1))
    log(f"federated train config: {json.dumps(record)}")

    if cfg.secagg:
        from agora.federation.secagg import make_secagg_client_app as make_app
    else:
        make_app = make_client_app
    grid = grid_of(learners, make_app)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.rounds, initial=done, unit="round",
                   desc=f"federated {cfg.strategy}{' + secagg' if cfg.secagg else ''}")
    t_start = time.perf_counter()
    flwr_log = logging.getLogger("flwr")
    flwr_level = flwr_log.level
    flwr_log.setLevel(logging.WARNING)          # Flower's per-round INFO lines, not ours
    try:
        for r in range(done + 1, cfg.rounds + 1):
            t0, b0 = time.perf_counter(), grid.bytes_in + grid.bytes_out
            marks = [len(l.history) for l in learners]
            weights, fed = _one_round(grid, weights, cfg, r)
            rows = _round_rows(r, learners, marks, fed, cfg)
            ran = {x["site"]: int(x.get("charts/steps", 0)) for x in rows[:-1]}
            if any(n != cfg.local_steps for n in ran.values()):
                log(f"round {r}: environment steps per organisation {ran} for a budget of "
                    f"{cfg.local_steps} (training runs whole episodes: an overshoot is "
                    f"carried into the next round, where that organisation then runs less, "
                    f"or 0)")
            for site, why in grid.errors:     # refused, late or missing: said, not only kept
                log(f"round {r}: {site}: {why}")
            rows[-1].update({"wall_s": round(time.perf_counter() - t0, 3),
                             # SecAgg+'s legacy messages carry no "arrays" record to count
                             "bytes": None if cfg.secagg else grid.bytes_in + grid.bytes_out - b0,
                             "errors": [e for e in grid.errors]})
            grid.errors.clear()
            _commit(out, r, weights, learners, record, rows)
            for row in rows:
                tracker.log(row, r, run=row["site"])
            if bar is not None:
                bar.update(1)
                f = rows[-1]
                bar.set_postfix(jct=f"{f.get('eval/jct_mean_s', math.nan):.0f}",
                                score=f"{f.get('eval/score', math.nan):.4f}")
    finally:
        tracker.close()
        flwr_log.setLevel(flwr_level)
        grid.close()
        if bar is not None:
            bar.close()
    curves = plot_federation(mpath, out)
    max_choices = stamp_competence(out / "last.pt", learners)
    summary = {"rounds": cfg.rounds, "wall_s": round(time.perf_counter() - t_start, 2),
               "steps": {l.site: l.loop.progress["step"] for l in learners},
               "step_budget": cfg.rounds * cfg.local_steps,
               "overshoot": {l.site: l.loop.progress["step"] - cfg.rounds * cfg.local_steps
                             for l in learners},
               "checkpoint": str(out / "last.pt"), "curves": [str(c) for c in curves],
               "seeds": seeds, "final": last_rows(mpath), "max_choices": max_choices}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _one_round(grid: SiteGrid, weights: list[np.ndarray], cfg: FedTrainConfig, r: int
               ) -> tuple[list[np.ndarray], dict]:
    fcfg = FederationConfig(rounds=1, local_steps=cfg.local_steps, strategy=cfg.strategy,
                            min_fraction=cfg.min_fraction, timeout_s=cfg.timeout_s,
                            trim_beta=cfg.trim_beta, seed=round_seed(cfg.seed, r))
    tc = {"round": r}
    if cfg.secagg:
        from agora.federation.secagg import SecAggConfig, run_secagg_federation
        # counts up to an episode past the budget; a larger max_weight only coarsens the
        # rounding of the counts (bound in federation/secagg.py)
        sa = SecAggConfig(max_weight=float(10 * cfg.local_steps + 10_000))
        res = run_secagg_federation(grid, weights, fcfg, sa, train_config=tc)
    else:
        res = run_federation(grid, weights, fcfg, train_config=tc)
    agg = res.arrays.to_numpy_ndarrays() if len(res.arrays) else None
    fed = round_metrics(res)       # Flower's aggregates of the sites' reported metrics
    # the model moved: a round whose every update was refused kept it, and said it had
    # aggregated (a probe: every SecAgg+ round after the first, before the dtype fix)
    fed["aggregated"] = agg is not None and any(
        not np.array_equal(a, w) for a, w in zip(agg, weights))
    return (agg if agg is not None else weights), fed


def _round_rows(r: int, learners, marks: list[int], fed: dict, cfg: FedTrainConfig
                ) -> list[dict]:
    rows = []
    for l, m in zip(learners, marks):
        row = {"round": r, "site": l.site, "step": l.loop.progress["step"],
               "seed": l.loop.cfg.seed}
        for h in l.history[m:]:
            row.update({k: v for k, v in h.items() if k != "kind"})
        rows.append(row)
    fed_row = {"round": r, "site": "federation", "seed": cfg.seed,
               "step": int(sum(x["step"] for x in rows)), "strategy": cfg.strategy,
               "secagg": cfg.secagg, **{k: v for k, v in fed.items() if k != "num-examples"}}
    for key in ("eval/jct_mean_s", "eval/score"):
        vals = [x[key] for x in rows if key in x]
        if vals and key not in fed_row:            # every site's episodes count the same
            fed_row[key] = float(np.mean(vals))
    return rows + [fed_row]


def _commit(out: Path, r: int, weights, learners, record: dict, rows: list[dict]) -> None:
    """Site states, then the global checkpoint, then the metrics, then ``state.json``."""
    for l in learners:
        d = out / "sites" / l.site
        l.save_state(d / f"state-{r:04d}.pt", extra={"round": r})
        for old in d.glob("state-*.pt"):
            if int(old.stem.split("-")[1]) < r - 1:
                old.unlink()
    extra = {"train_config": learners[0].loop.cfg.to_dict(), "federation": record,
             "round": r, "seeds": record["seeds"]}
    save_global(out / "rounds" / f"round-{r:04d}.pt", weights, learners[0], extra)
    save_global(out / "last.pt", weights, learners[0], extra)
    with (out / "metrics.jsonl").open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp = out / "state.json.tmp"
    tmp.write_text(json.dumps({**record, "round": r}, indent=1))
    tmp.replace(out / "state.json")


def plot_federation(jsonl: Path, out: Path) -> list[Path]:
    """``out/learning_curve.png`` (validation JCT and score of the aggregate per site and
    their mean, per round) and ``out/sites/<site>/learning_curve.png`` (the site's training
    episodes and its validation)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
    by_site: dict[str, list[dict]] = {}
    for x in rows:
        by_site.setdefault(x["site"], []).append(x)
    made = []
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    for site, xs in by_site.items():
        style = dict(lw=2.2, color="k") if site == "federation" else dict(lw=1, marker=".")
        for a, key in zip(ax, ("eval/jct_mean_s", "eval/score")):
            pts = [(x["round"], x[key]) for x in xs if key in x]
            if pts:
                a.plot(*zip(*pts), label=site if site != "federation" else "mean", **style)
    for a, t in zip(ax, ("validation mean JCT, s (aggregate)", "validation score (aggregate)")):
        a.set_title(t)
        a.set_xlabel("round")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    made.append(out / "learning_curve.png")
    fig.savefig(made[-1], dpi=100)
    plt.close(fig)
    for site, xs in by_site.items():
        if site == "federation":
            continue
        fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
        for a, (tk, ek, t) in zip(ax, (("charts/jct_mean_s", "eval/jct_mean_s", "mean JCT, s"),
                                       ("charts/score", "eval/score", "score"))):
            for key, lab in ((tk, "training episodes (local weights)"),
                             (ek, "validation (aggregate)")):
                pts = [(x["step"], x[key]) for x in xs if key in x]
                if pts:
                    a.plot(*zip(*pts), marker=".", label=lab)
            a.set_title(f"{site}: {t}")
            a.set_xlabel("site steps (bidding rounds)")
            a.legend(fontsize=8)
        fig.tight_layout()
        (out / "sites" / site).mkdir(parents=True, exist_ok=True)
        made.append(out / "sites" / site / "learning_curve.png")
        fig.savefig(made[-1], dpi=100)
        plt.close(fig)
    return made
