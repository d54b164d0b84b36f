"""``agora train``: behaviour-cloning warm start (optional) then PPO, on short episodes of a
scenario, with a progress bar, JSONL metrics, checkpoints and a learning-curve PNG.

**Episodes.** Training never sees the benchmark's evaluation draws. A synthetic workload is
regenerated per episode with ``jobs = train_jobs`` at the scenario's load, from seeds
``TRAIN_SEED_BASE + i`` (evaluation uses seeds 0–4, validation ``VAL_SEED_BASE + i``). A file
trace (e.g. the Alibaba pod list) is built with seeds ``TRAIN_SEED_BASE + i`` (fresh clone
draws) and cut into windows of ``train_jobs`` consecutive jobs from its first
``train_fraction`` of arrivals.

**Metrics** (one JSON object per update in ``metrics.jsonl``): ``charts/episodic_return``,
``charts/jct_mean_s``, ``charts/score``, ``charts/steps_per_s``, ``losses/...``,
``comm/msgs_sent_frac``, ``comm/bits_per_msg``, ``comm/bytes_per_msg``,
``comm/raw_state_bytes``, ``eval/jct_mean_s``, ``eval/score`` (greedy, validation seeds).
A *step* is one bidding round (every agent acts once), as a ``ParallelEnv`` step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from agents.learn import checkpoint
from agents.learn.codec import code_bytes
from agents.learn.features import LOCAL_DIM, FeatureBuilder
from agents.learn.learned_policy import AgentConfig, Agents, LearnedPolicy, Recorder
from agents.learn.ppo import PPOConfig, ValueNorm, bc_update, flatten, gae, ppo_update, round_rewards
from agents.sim.config import SimConfig
from agents.sim.engine import Simulator
from agents.sim.runner import Scenario

TRAIN_SEED_BASE = 10_000
VAL_SEED_BASE = 5_000


@dataclass(frozen=True)
class TrainConfig:
    scenario: dict = field(default_factory=lambda: asdict(Scenario()))
    """the ``agents.sim.runner.Scenario`` fields (cluster, workload, sites, ...)"""
    steps: int = 50_000
    """bidding rounds of PPO experience to collect"""
    seed: int = 0
    """seeds torch, numpy and the episode stream"""
    train_jobs: int = 150
    """jobs per training episode"""
    train_fraction: float = 0.5
    """file traces: windows are cut from this first fraction of arrivals"""
    bc_episodes: int = 4
    """episodes of the SRPT teacher to imitate before PPO (0: none)"""
    bc_epochs: int = 15
    """passes over the teacher's rounds"""
    eval_every: int = 5
    """updates between greedy validation runs (the best one is kept as best.pt)"""
    val_episodes: int = 4
    agent: AgentConfig = field(default_factory=AgentConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> TrainConfig:
        d = dict(d)
        d["agent"] = AgentConfig(**d["agent"])
        d["ppo"] = PPOConfig(**d["ppo"])
        return TrainConfig(**d)


class EpisodeSource:
    """(cluster, workload) of training and validation episodes (module docstring)."""

    def __init__(self, sc: Scenario, train_jobs: int, train_fraction: float) -> None:
        self.sc = sc
        self.train_jobs = train_jobs
        self.frac = train_fraction
        self.synthetic = sc.workload.split(":")[0] == "synthetic"
        self.cluster, _ = self._build(TRAIN_SEED_BASE)
        self._cache: dict[int, object] = {}

    def _build(self, seed: int):
        sc = self.sc
        if self.synthetic:
            spec = sc.workload
            parts = dict(p.split("=") for p in spec.split(":", 1)[1].split(",")) if ":" in spec else {}
            parts["jobs"] = str(self.train_jobs)
            spec = "synthetic:" + ",".join(f"{k}={v}" for k, v in parts.items())
            sc = replace(sc, workload=spec)
        return sc.build(seed)

    def episode(self, i: int, validation: bool = False):
        seed = (VAL_SEED_BASE if validation else TRAIN_SEED_BASE) + i
        if self.synthetic:
            return self._build(seed)
        base = seed % 4 + (VAL_SEED_BASE if validation else TRAIN_SEED_BASE)
        if base not in self._cache:
            self._cache[base] = self._build(base)[1]
        wl = self._cache[base]
        n = len(wl.jobs)
        hi = max(int(n * self.frac) - self.train_jobs, 1)
        lo = int(np.random.default_rng(seed).integers(hi))
        if validation:                          # validation windows: after the training part
            lo = min(int(n * self.frac) + lo % max(n - int(n * self.frac) - self.train_jobs, 1),
                     max(n - self.train_jobs, 0))
        return self.cluster, replace(wl, jobs=wl.jobs[lo:lo + self.train_jobs],
                                     source=f"{wl.source} jobs[{lo}:{lo + self.train_jobs}]")


def run_episode(agents: Agents, cluster, wl, *, seed: int, rng=None, teacher=None,
                record: bool = True, comm: str | None = None):
    rec = Recorder() if record else None
    pol = LearnedPolicy(agents, rng=rng, recorder=rec, teacher=teacher, comm=comm)
    sim = Simulator(cluster, wl, SimConfig(seed=seed, record_attempts=False))
    res = sim.run(pol)
    return res, rec, pol


def _prepare(ep: dict, res, cfg: TrainConfig, vnorm: ValueNorm) -> tuple[dict, float]:
    end = res.metrics["makespan_s"] + (res.jobs[0].job.arrival if res.jobs else 0.0)
    r = round_rewards(ep["now"], res.jobs, cfg.ppo, end)
    values = vnorm.denormalise(ep["value"].astype(np.float64))
    adv, ret = gae(r, values, cfg.ppo.gamma, cfg.ppo.lam)
    ep["adv"], ep["ret"] = adv.astype(np.float32), ret.astype(np.float32)
    return ep, float(r.sum())


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          log=print) -> dict:
    """Train; returns the final summary (also the last line of ``metrics.jsonl``)."""
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sc = Scenario(**cfg.scenario)
    src = EpisodeSource(sc, cfg.train_jobs, cfg.train_fraction)
    n_sites = len(src.cluster.sites)
    state_dim = FeatureBuilder(src.cluster, cfg.agent.k).state_dim
    torch.manual_seed(cfg.seed)
    agents = Agents(cfg.agent, n_sites, state_dim)
    params = [p for m in agents.modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.ppo.lr, eps=1e-5)
    vnorm = ValueNorm()
    rng = np.random.default_rng(cfg.seed)
    st = {"step": 0, "episode": 0, "update": 0, "best": None, "wall_s": 0.0, "bc_done": False}
    ck = out / "last.pt"
    if resume and ck.exists():
        blob = checkpoint.read(ck)
        saved = TrainConfig.from_dict(blob["train_config"])
        if replace(saved, steps=cfg.steps) != cfg:
            raise checkpoint.CheckpointMismatch(
                f"{ck}: --resume with a different configuration; saved: {saved.to_dict()}")
        agents, _ = checkpoint.load_agents(ck, cluster=src.cluster, expect=cfg.agent)
        params = [p for m in agents.modules for p in m.parameters()]
        opt = torch.optim.Adam(params, lr=cfg.ppo.lr, eps=1e-5)
        opt.load_state_dict(blob["optimizer"])
        vnorm.load(blob["vnorm"])
        st = blob["progress"]
        rng = np.random.default_rng()
        rng.bit_generator.state = blob["rng_state"]
        torch.set_rng_state(blob["torch_rng"])
        log(f"resumed from {ck} at step {st['step']}")
    mode = "a" if resume else "w"
    mlog = (out / "metrics.jsonl").open(mode)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    log(f"train config: {json.dumps(cfg.to_dict())}")
    raw_bytes = LOCAL_DIM * 4
    msg_bytes = code_bytes(cfg.agent.code_dim, cfg.agent.bits)

    def save(path: Path) -> None:
        checkpoint.save(path, agents=agents, extra={
            "train_config": cfg.to_dict(), "optimizer": opt.state_dict(), "vnorm": vnorm.state(),
            "progress": dict(st), "rng_state": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "seeds": {"train": cfg.seed, "episode_seed_base": TRAIN_SEED_BASE,
                      "validation_seed_base": VAL_SEED_BASE}})

    def emit(rec: dict) -> None:
        rec = {"step": st["step"], "update": st["update"], "wall_s": round(st["wall_s"], 2),
               "seed": cfg.seed, **rec}
        mlog.write(json.dumps(rec) + "\n")
        mlog.flush()

    t_start = time.perf_counter() - st["wall_s"]
    if not resume:
        refs = validation_references(src, cfg.val_episodes)
        emit({"phase": "references", **refs})
        log(f"validation references: {refs}")
    if cfg.bc_episodes and not st["bc_done"]:
        eps = []
        for i in range(cfg.bc_episodes):
            cl, wl = src.episode(st["episode"])
            st["episode"] += 1
            _, rec, _ = run_episode(agents, cl, wl, seed=st["episode"], teacher="srpt")
            eps.append(flatten(rec.arrays(), cfg.agent.bits))
        b = {k: torch.cat([e[k] for e in eps]) for k in eps[0]}
        logs = bc_update(agents, opt, b, epochs=cfg.bc_epochs, minibatch=cfg.ppo.minibatch,
                         rng=rng)
        st["bc_done"] = True
        st["wall_s"] = time.perf_counter() - t_start
        emit({"phase": "bc", **logs, **validate(agents, src, cfg.val_episodes)})
        save(out / "bc.pt")                     # the imitation-only policy, for comparison
        log(f"behaviour cloning on {cfg.bc_episodes} SRPT episodes: {logs}")

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=st["step"], unit="step", desc="train", smoothing=0.1)
    while st["step"] < cfg.steps:
        t0 = time.perf_counter()
        cl, wl = src.episode(st["episode"])
        st["episode"] += 1
        res, rec, pol = run_episode(agents, cl, wl, seed=st["episode"], rng=rng)
        ep, ret = _prepare(rec.arrays(), res, cfg, vnorm)
        vnorm.update(ep["ret"])
        t1 = time.perf_counter()
        logs = ppo_update(agents, opt, flatten(ep, cfg.agent.bits), cfg.ppo, vnorm, rng)
        n = len(rec)
        st["step"] += n
        st["update"] += 1
        st["wall_s"] = time.perf_counter() - t_start
        m = res.metrics
        row = {"charts/episodic_return": ret, "charts/jct_mean_s": m["jct_mean_s"],
               "charts/score": m["score"], "charts/rounds": n,
               "charts/steps_per_s": n / max(t1 - t0, 1e-9),
               "comm/msgs_sent_frac": pol.mailbox.sent_frac,
               "comm/bits_per_msg": 8 * msg_bytes, "comm/bytes_per_msg": msg_bytes,
               "comm/raw_state_bytes": raw_bytes, **logs}
        if st["update"] % cfg.eval_every == 0 or st["step"] >= cfg.steps:
            row.update(validate(agents, src, cfg.val_episodes))
            if st["best"] is None or row["eval/jct_mean_s"] < st["best"]:
                st["best"] = row["eval/jct_mean_s"]
                save(out / "best.pt")
        emit(row)
        save(ck)
        if bar is not None:
            bar.update(n)
            bar.set_postfix(ret=f"{ret:.1f}", jct=f"{m['jct_mean_s']:.0f}",
                            loss=f"{logs['losses/policy']:+.3f}/{logs['losses/value']:.3f}",
                            sent=f"{pol.mailbox.sent_frac:.2f}")
    if bar is not None:
        bar.close()
    if not (out / "best.pt").exists():
        save(out / "best.pt")
    mlog.close()
    png = plot_curve(out / "metrics.jsonl", out / "learning_curve.png")
    summary = {"steps": st["step"], "updates": st["update"], "wall_s": st["wall_s"],
               "best_val_jct_mean_s": st["best"], "curve": str(png),
               "checkpoint": str(out / "best.pt")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def validate(agents: Agents, src: EpisodeSource, n: int) -> dict:
    jct, score = [], []
    for i in range(n):
        cl, wl = src.episode(i, validation=True)
        res, _, _ = run_episode(agents, cl, wl, seed=VAL_SEED_BASE + i, record=False)
        jct.append(res.metrics["jct_mean_s"])
        score.append(res.metrics["score"])
    return {"eval/jct_mean_s": float(np.mean(jct)), "eval/score": float(np.mean(score))}


def validation_references(src: EpisodeSource, n: int) -> dict:
    """SJF and the SRPT-market reference on the validation episodes (logged once, so the
    curve can be read against them)."""
    from agents.learn.evaluate import run_srpt
    from agents.sim.runner import run_one

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
