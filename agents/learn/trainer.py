"""``agora train``: behaviour-cloning warm start (optional) then PPO, on short episodes of a
scenario, with a progress bar, JSONL metrics, checkpoints and a learning-curve PNG. The loop's
body (episodes, updates, state) is ``agents.learn.loop.PPOLoop``; this module drives one loop
to its step budget and writes the files around it.

**Episodes.** See ``agents/learn/loop.py``: synthetic workloads are regenerated per episode
(seeds ``TRAIN_SEED_BASE + i``), file traces cut into windows of ``train_jobs`` jobs from their
first ``train_fraction``; validation uses ``VAL_SEED_BASE + i`` (held-back windows), the
benchmark seeds 0–4.

**Metrics** (one JSON object per update in ``metrics.jsonl``): ``charts/episodic_return``,
``charts/jct_mean_s``, ``charts/score``, ``charts/steps_per_s``, ``losses/...``,
``comm/msgs_sent_frac``, ``comm/bits_per_msg``, ``comm/bytes_per_msg``,
``comm/raw_state_bytes``, ``eval/jct_mean_s``, ``eval/score`` (greedy, validation seeds).
A *step* is one bidding round (every agent acts once), as a ``ParallelEnv`` step.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.loop import (TRAIN_SEED_BASE, VAL_SEED_BASE, EpisodeSource, MixedSource,
                                     PPOLoop, TrainConfig, run_episode, validate)
from agora.agents.learn.tracking import make_tracker
from agora.agents.sim.runner import Scenario

__all__ = ["TRAIN_SEED_BASE", "VAL_SEED_BASE", "EpisodeSource", "MixedSource", "PPOLoop",
           "TrainConfig", "run_episode", "validate", "train", "validation_references",
           "plot_curve"]


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          log=print, track: str | None = None, workers: int = 1) -> dict:
    """Train; returns the final summary (also the last line of ``metrics.jsonl``).
    ``track``: also write the rows to TensorBoard (``agents/learn/tracking.py``);
    ``workers``: processes that play the episodes (``rollouts.EpisodeRunner``: the teacher's,
    the K rollouts of an update, the validation runs); the results do not depend on it."""
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loop = PPOLoop(cfg, workers=workers)
    try:
        return _train(loop, cfg, out, resume=resume, progress=progress, log=log, track=track)
    finally:
        loop.close()


def _train(loop: PPOLoop, cfg: TrainConfig, out: Path, *, resume: bool, progress: bool, log,
           track: str | None) -> dict:
    tracker = make_tracker(track, out)
    src, st = loop.src, loop.progress
    ck = out / "last.pt"
    if resume and not ck.exists():
        log(f"--resume: {ck} does not exist, so this is a new run")
        resume = False
    scenario = Scenario(**cfg.scenario)
    digests = scenario.file_digests()    # the files read once: compared, then saved
    if resume:
        blob = checkpoint.read(ck)
        checkpoint.require(ck, blob, checkpoint.RESUME_PARTS)
        saved = TrainConfig.from_dict(blob["train_config"])
        saved = replace(saved, scenario=scenario.known_by_content(
            saved.scenario, blob["progress"].get("digests")))
        if replace(saved, steps=cfg.steps) != cfg:
            diff = checkpoint.config_differences(replace(saved, steps=cfg.steps).to_dict(),
                                                 cfg.to_dict())
            raise checkpoint.CheckpointMismatch(
                f"{ck}: --resume with a different configuration ({'; '.join(diff[:5])}"
                f"{'; ...' if len(diff) > 5 else ''}); expected the run's own settings")
        checkpoint.load_agents(ck, expect=cfg.agent)  # says what differs
        done = int(blob["progress"]["step"])
        if cfg.steps and done >= cfg.steps:
            if (out / "summary.json").exists():
                # nothing to do, and it rewrote best.pt's record saying nothing (a probe)
                raise ValueError(f"--steps {cfg.steps} with --resume: {ck} is at step {done} "
                                 f"already; expected --steps above {done} to train further")
            # stopped after its last step, before its end's files: finished below
            log(f"{ck}: all {cfg.steps} steps done (at {done}); writing what a run writes "
                f"at its end")
        _same_files(ck, blob["progress"].get("digests"), digests, cfg)
        _metrics_to_resume(out / "metrics.jsonl", int(blob["progress"]["update"]))
        loop.load_state(blob)
        st = loop.progress
        log(f"resumed from {ck} at step {st['step']}")
    st["digests"] = digests              # what a resume checks (saved with the progress)
    mode = "a" if resume else "w"
    mlog = (out / "metrics.jsonl").open(mode)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    log(f"train config: {json.dumps(cfg.to_dict())}")

    def emit(rec: dict) -> None:
        rec = {"step": st["step"], "update": st["update"], "wall_s": round(st["wall_s"], 2),
               "seed": cfg.seed, **rec}
        mlog.write(json.dumps(rec) + "\n")
        mlog.flush()
        tracker.log(rec, rec["step"])

    t_start = time.perf_counter() - st["wall_s"]
    if not resume:
        refs = validation_references(src, cfg.val_episodes)
        emit({"phase": "references", **refs})
        log(f"validation references: {refs}")
    if cfg.bc_episodes and not st["bc_done"]:
        logs = loop.bc_warm_start()
        st["wall_s"] = time.perf_counter() - t_start
        emit({"phase": "bc", **logs, **loop.validate()})
        loop.save(out / "bc.pt")                # the imitation-only policy, for comparison
        log(f"behaviour cloning on {cfg.bc_episodes} SRPT episodes: {logs}")

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=st["step"], unit="step", desc="train", smoothing=0.1)
    while st["step"] < cfg.steps:
        row, pol = loop.update()
        n = row["charts/rounds"]
        st["wall_s"] = time.perf_counter() - t_start
        if st["update"] % cfg.eval_every == 0 or st["step"] >= cfg.steps:
            row.update(loop.validate())
            jct = row["eval/jct_mean_s"]      # NaN: some episode completed no job
            if not math.isnan(jct) and (st["best"] is None or jct < st["best"]):
                st["best"] = jct
                loop.save(out / "best.pt")
        emit(row)
        loop.save(ck)
        if bar is not None:
            bar.update(n)
            bar.set_postfix(ret=f"{row['charts/episodic_return']:.1f}",
                            jct=f"{row['charts/jct_mean_s']:.0f}",
                            loss=f"{row['losses/policy']:+.3f}/{row['losses/value']:.3f}",
                            sent=f"{pol.sent_frac:.2f}")
    if bar is not None:
        bar.close()
    if not (out / "best.pt").exists():
        loop.save(out / "best.pt")
    from agora.agents.learn import competence
    comp = competence.measure_checkpoint(out / "best.pt", scenario=cfg.scenario)
    competence.stamp(out / "best.pt", comp)
    log(f"competence of best.pt: windows of up to {comp['max_choices']} candidates and pools "
        f"of up to {comp['max_open']} open tasks ({comp['quantile']:.0%} of "
        f"{comp['decisions']} decisions); beyond, the SRPT teacher ranks when acting")
    mlog.close()
    tracker.close()
    png = plot_curve(out / "metrics.jsonl", out / "learning_curve.png")
    summary = {"steps": st["step"], "updates": st["update"], "wall_s": st["wall_s"],
               "best_val_jct_mean_s": st["best"], "curve": str(png),
               "checkpoint": str(out / "best.pt"), "max_choices": comp["max_choices"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _same_files(ck: Path, saved: dict | None, now: dict, cfg: TrainConfig) -> None:
    """A resume trains on the cluster and workload files the run began with: a changed one
    is refused by name, as a federated run's are (a probe: an edited cluster -- cpu 8 to 2
    -- was taken, and the validation JCT jumped 534 to 1,724 s). A run saved before the
    digests were kept is not checked."""
    if saved is None:
        return
    changed = [k for k in sorted({*saved, *now}) if saved.get(k) != now.get(k)]
    if changed:
        files = ", ".join(f"{k} {cfg.scenario.get(k)}" for k in changed)
        raise checkpoint.CheckpointMismatch(
            f"{ck}: --resume with a changed file ({files}: sha256 differs from the run's "
            f"start); expected the files the run began with, or a new --out")


def _metrics_to_resume(path: Path, update: int) -> None:
    """``metrics.jsonl`` before a resume appends to it: a last row cut by a kill mid-append
    dropped (every row is written whole with its newline; the resume redoes that update), and
    so are the rows of updates past ``update``, the checkpoint's (a row is written before
    ``last.pt``: a stop between the two wrote the row again on resume -- a probe); any other
    row that is not JSON named -- before anything is trained, not after: the run's end reads
    every row back for the curve (a review: a cut row was joined to the next, and a finished
    resume failed naming no file, its summary.json left as the old run's)."""
    if not path.exists():
        return
    original = path.read_bytes()
    data = original
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
    kept = []
    for i, line in enumerate(data.splitlines(keepends=True), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"{path}:{i}: not a row of the run's metrics (JSON); expected "
                             f"the rows the run wrote: mend or remove the line to --resume"
                             ) from None
        if not (isinstance(row, dict) and isinstance(row.get("update"), int)
                and row["update"] > update):
            kept.append(line)
    if b"".join(kept) != original:
        path.write_bytes(b"".join(kept))


def validation_references(src: EpisodeSource, n: int) -> dict:
    """SJF and the SRPT-market reference on the validation episodes (logged once, so the
    curve can be read against them)."""
    from agora.agents.learn.evaluate import run_srpt
    from agora.agents.sim.runner import run_one

    out: dict[str, list[float]] = {}
    for i in range(n):
        cl, wl = src.episode(i, validation=True)
        for name, r in (("sjf", run_one(cl, wl, "sjf", seed=VAL_SEED_BASE + i)),
                        ("srpt", run_srpt(cl, wl, seed=VAL_SEED_BASE + i))):
            out.setdefault(f"eval/ref_{name}_jct_mean_s", []).append(r.metrics["jct_mean_s"])
            out.setdefault(f"eval/ref_{name}_score", []).append(r.metrics["score"])
    return {k: float(np.mean(v)) for k, v in out.items()}


def plot_curve(jsonl: Path, png: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in jsonl.read_text().splitlines() if x.strip()]
    refs = next((r for r in rows if r.get("phase") == "references"), {})
    rows = [r for r in rows if "charts/episodic_return" in r]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    if rows:
        s = [r["step"] for r in rows]
        ax[0].plot(s, [r["charts/episodic_return"] for r in rows], lw=0.8)
        ax[0].set_title("episodic return (train)")
        ax[1].plot(s, [r["charts/jct_mean_s"] for r in rows], lw=0.8, label="train episodes")
        ev = [r for r in rows if "eval/jct_mean_s" in r]
        ax[1].plot([r["step"] for r in ev], [r["eval/jct_mean_s"] for r in ev], "o-",
                   label="validation (greedy)")
        for key, style in (("eval/ref_sjf_jct_mean_s", "k--"), ("eval/ref_srpt_jct_mean_s", "g:")):
            if key in refs:
                ax[1].axhline(refs[key], color=style[0], ls=style[1:],
                              label=key.split("_")[1].upper() + " (validation)")
        ax[1].set_title("mean JCT, s")
        ax[1].legend()
        ax[2].plot(s, [r["losses/value"] for r in rows], lw=0.8, label="value")
        ax[2].plot(s, [r["losses/policy"] for r in rows], lw=0.8, label="policy")
        ax[2].set_title("losses")
        ax[2].legend()
    for a in ax:
        a.set_xlabel("steps (bidding rounds)")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
