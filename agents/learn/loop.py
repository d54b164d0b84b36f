"""The PPO learner as a reusable object: ``PPOLoop`` holds one learner's agents, optimiser,
value normaliser, random generators and episode stream, and runs the body of the training
loop a step budget at a time. ``agora train`` (``trainer.train``) drives one loop to its
budget; a federation site (``federation/ppo_learner.py``) drives one per site, a round's
``local-steps`` at a time, with the global weights loaded in between.

**Episodes.** Training never sees the benchmark's evaluation draws. A synthetic workload is
regenerated per episode with ``jobs = train_jobs`` at the scenario's load, from seeds
``TRAIN_SEED_BASE + i`` (evaluation uses seeds 0–4, validation ``VAL_SEED_BASE + i``). A file
trace (e.g. the Alibaba pod list) is built with seeds ``TRAIN_SEED_BASE + i`` (fresh clone
draws) and cut into windows of ``train_jobs`` consecutive jobs from its first
``train_fraction`` of arrivals.

A *step* is one bidding round (every agent acts once), as a ``ParallelEnv`` step. An update
consumes one whole episode (GAE runs to the episode's end, never bootstrapped from a cut),
so a budget of ``steps`` is met by whole episodes: the last one may overshoot it, and
``run_updates`` carries the overshoot into the next call's budget so that a run split into
chunks uses the same steps as one run.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from agora.agents.learn import checkpoint, input_baseline, schedules
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.ppo import (PPOConfig, ValueNorm, bc_update, flatten, gae, ppo_update,
                                    round_rewards, values_of)
from agora.agents.learn.rollouts import Episode, EpisodeRunner, Played, play, played
from agora.agents.sim.runner import Scenario
from agora.agents.step.codes import code_bytes
from agora.agents.step.observe import LOCAL_DIM

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
    rollouts: int = 1
    """rollouts of each arrival sequence per update; >= 2: advantages from the
    input-dependent baseline (``input_baseline``) instead of GAE over the critic"""
    curriculum_jobs: int | None = None
    """jobs in the first training episodes, growing to ``train_jobs`` over
    ``curriculum_steps`` (``schedules``); None: every episode has ``train_jobs``"""
    curriculum_steps: int = 0
    bc_target_prob: float | None = None
    """stop imitating once the teacher's first choice has this mean probability (a softened
    warm start, e.g. 0.6; ``schedules``); None: every one of ``bc_epochs``"""
    agent: AgentConfig = field(default_factory=AgentConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.rollouts <= 64:
            raise ValueError(f"rollouts: found {self.rollouts}; expected 1..64")
        if self.curriculum_jobs is not None and self.curriculum_jobs < 1:
            raise ValueError(f"curriculum_jobs: found {self.curriculum_jobs}; expected >= 1 "
                             f"or none")
        if self.curriculum_steps < 0:
            raise ValueError(f"curriculum_steps: found {self.curriculum_steps}; expected >= 0")
        if self.curriculum_jobs is not None and not self.curriculum_steps:
            raise ValueError(f"curriculum_steps: found 0 with curriculum_jobs "
                             f"{self.curriculum_jobs}; expected the steps over which episodes "
                             f"grow (> 0), or no curriculum_jobs")
        if self.bc_target_prob is not None and not 0 < self.bc_target_prob < 1:
            raise ValueError(f"bc_target_prob: found {self.bc_target_prob}; expected a "
                             f"probability in (0, 1) or none")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> TrainConfig:
        d = dict(d)
        # through Scenario and back: a saved run's scenario (JSON: lists, a field added since
        # missing) equals the same scenario made now
        d["scenario"] = asdict(Scenario(**d["scenario"]))
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

    def episode(self, i: int, validation: bool = False, jobs: int | None = None):
        """Episode ``i`` (``jobs``: its length in jobs instead of ``train_jobs``, a
        curriculum's)."""
        if jobs is not None and jobs != self.train_jobs:
            other = copy.copy(self)               # shares the cache of whole traces
            other.train_jobs = jobs
            return other.episode(i, validation)
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


class MixedSource:
    """Episodes drawn from several scenarios in turn (episode ``i`` is episode ``i // n`` of
    source ``i % n``): one learner trained on every source's data (the federation
    benchmark's central reference). The sources' clusters must give the agents the same
    shapes (sites and state size)."""

    def __init__(self, sources: list[EpisodeSource]) -> None:
        if not sources:
            raise ValueError("MixedSource needs at least one episode source")
        self.sources = list(sources)
        self.cluster = self.sources[0].cluster

    def episode(self, i: int, validation: bool = False, jobs: int | None = None):
        n = len(self.sources)
        return self.sources[i % n].episode(i // n, validation=validation, jobs=jobs)


def run_episode(agents: Agents, cluster, wl, *, seed: int, rng=None, teacher=None,
                record: bool = True, comm: str | None = None):
    """One episode of the simulation engine with the agents' current weights (acting in
    numpy, as a site agent does), in this process; returns (result, recorder, policy)."""
    return play(agents.policy(comm=comm), Episode(cluster, wl, seed, teacher=teacher,
                                                  record=record), rng=rng)


EMPTY_EPISODES = 10
"""episodes in a row without a decision after which training gives up"""


def _prepare(ep: dict, res, cfg: TrainConfig, vnorm: ValueNorm,
             agents: Agents) -> tuple[dict, float]:
    end = res.metrics["makespan_s"] + (res.jobs[0].job.arrival if res.jobs else 0.0)
    r = round_rewards(ep["now"], res.jobs, cfg.ppo, end)
    ep["value"] = values_of(agents, ep, cfg.agent.bits)
    values = vnorm.denormalise(ep["value"].astype(np.float64))
    adv, ret = gae(r, values, cfg.ppo.gamma, cfg.ppo.lam)
    ep["adv"], ep["ret"] = adv.astype(np.float32), ret.astype(np.float32)
    ep["reward"] = r
    return ep, float(r.sum())


def validate(agents: Agents, src, n: int, *, first: int = 0,
             runner: EpisodeRunner | None = None) -> dict:
    """Greedy runs on validation episodes ``first .. first + n - 1``: mean JCT and score
    (played by ``runner``'s workers; None: in this process). An episode that completed no
    job has no JCT (the metrics' 0.0 there would read as the best policy): the mean is then
    NaN, which is never the best (``trainer.train``)."""
    eps = [Episode(*src.episode(i, validation=True), VAL_SEED_BASE + i, record=False)
           for i in range(first, first + n)]
    runs = (runner or EpisodeRunner()).run(agents.policy(), eps)
    jct = [p.result.metrics["jct_mean_s"] if p.result.metrics["jobs_completed"] else math.nan
           for p in runs]
    return {"eval/jct_mean_s": float(np.mean(jct)),
            "eval/score": float(np.mean([p.result.metrics["score"] for p in runs]))}


def new_progress() -> dict:
    return {"step": 0, "episode": 0, "update": 0, "best": None, "wall_s": 0.0, "bc_done": False}


class PPOLoop:
    """One learner: agents, Adam, value normaliser, numpy generator, episode stream and its
    progress counters. Construction seeds torch with ``cfg.seed`` and builds the agents from
    it (so two loops of one seed start from the same weights). ``source``: episodes other
    than ``cfg.scenario``'s (e.g. a ``MixedSource``). ``workers``: processes that play the
    episodes (``rollouts.EpisodeRunner``; the results do not depend on it); ``close()``
    stops them."""

    def __init__(self, cfg: TrainConfig, *, source: EpisodeSource | MixedSource | None = None,
                 workers: int = 1) -> None:
        self.cfg = cfg
        self.runner = EpisodeRunner(workers)
        self.src = source if source is not None else EpisodeSource(
            Scenario(**cfg.scenario), cfg.train_jobs, cfg.train_fraction)
        torch.manual_seed(cfg.seed)
        self.agents = Agents(cfg.agent)
        params = [p for m in self.agents.modules for p in m.parameters()]
        self.opt = torch.optim.Adam(params, lr=cfg.ppo.lr, eps=1e-5)
        self.vnorm = ValueNorm()
        self.rng = np.random.default_rng(cfg.seed)
        self.progress = new_progress()
        self.budget = 0
        """steps asked of ``run_updates`` so far (overshoot carries over)"""
        self.msg_bytes = code_bytes(cfg.agent.code_dim, cfg.agent.bits)

    # -- the loop's body ---------------------------------------------------------------------
    def bc_warm_start(self) -> dict:
        """Imitate ``cfg.bc_episodes`` episodes of the SRPT teacher (once); returns the
        behaviour-cloning losses ({} when there is nothing to do)."""
        cfg, st = self.cfg, self.progress
        if not cfg.bc_episodes or st["bc_done"]:
            return {}
        todo = []
        for _ in range(cfg.bc_episodes):
            cl, wl = self.src.episode(st["episode"])
            st["episode"] += 1
            todo.append(Episode(cl, wl, st["episode"], teacher="srpt"))
        eps = [flatten(p.arrays, cfg.agent.bits)
               for p in self.runner.run(self.agents.policy(), todo) if p.arrays is not None]
        if not eps:
            raise ValueError(f"--bc-episodes {cfg.bc_episodes}: the teacher's episodes made no "
                             f"decision, nothing to imitate; expected a workload with jobs "
                             f"some node of the cluster fits")
        b = {k: torch.cat([e[k] for e in eps]) for k in eps[0]}
        logs = bc_update(self.agents, self.opt, b, epochs=cfg.bc_epochs,
                         minibatch=cfg.ppo.minibatch, rng=self.rng,
                         target_prob=cfg.bc_target_prob)
        st["bc_done"] = True
        return logs

    def update(self) -> tuple[dict, object]:
        """One PPO update on a fresh sampled episode (``cfg.rollouts`` rollouts of it);
        returns (metrics row, the last rollout as ``rollouts.Played``). Counts the rounds into
        ``progress['step']``."""
        cfg, st = self.cfg, self.progress
        t0 = time.perf_counter()
        for _ in range(EMPTY_EPISODES):
            cl, wl = self.src.episode(st["episode"],
                                      jobs=schedules.episode_jobs(cfg, st["step"]))
            st["episode"] += 1
            runs = self._rollouts(cl, wl, st["episode"])  # same arrivals and faults, own samples
            if all(p.arrays is not None for p in runs):
                break
            # else a window of jobs none of which fits a node: nothing to learn from, the
            # next is drawn (a review: one such window stopped the run)
        else:
            raise ValueError(f"{EMPTY_EPISODES} episodes in a row made no decision (no job of "
                             f"their {len(wl.jobs)} fits a node of the cluster?): nothing to "
                             f"learn from; expected a workload with jobs some node fits")
        eps = [_prepare(p.arrays, p.result, cfg, self.vnorm, self.agents) for p in runs]
        if cfg.rollouts > 1:
            adv = input_baseline.advantages([e["now"] for e, _ in eps],
                                            [e["reward"] for e, _ in eps],
                                            eps[0][0]["mask"].shape[1], cfg.ppo.gamma)
            for (e, _), a in zip(eps, adv):
                e["adv"] = a.astype(np.float32)
        for e, _ in eps:
            self.vnorm.update(e["ret"])
        t1 = time.perf_counter()
        bs = [flatten(e, cfg.agent.bits) for e, _ in eps]
        batch = {k: torch.cat([b[k] for b in bs]) for k in bs[0]}
        logs = ppo_update(self.agents, self.opt, batch, cfg.ppo, self.vnorm, self.rng,
                          ent_coef=schedules.ent_coef(cfg.ppo, st["step"], cfg.steps),
                          imitation=schedules.imitation_coef(cfg.ppo, st["step"]))
        n = sum(p.rounds for p in runs)
        st["step"] += n
        st["update"] += 1
        m = [p.result.metrics for p in runs]
        row = {"charts/episodic_return": float(np.mean([r for _, r in eps])),
               "charts/jct_mean_s": float(np.mean([x["jct_mean_s"] for x in m])),
               "charts/score": float(np.mean([x["score"] for x in m])), "charts/rounds": n,
               "charts/steps_per_s": n / max(t1 - t0, 1e-9),
               "charts/episode_jobs": len(wl.jobs),
               "comm/msgs_sent_frac": runs[-1].sent_frac,
               "comm/bits_per_msg": 8 * self.msg_bytes, "comm/bytes_per_msg": self.msg_bytes,
               "comm/raw_state_bytes": LOCAL_DIM * 4, **logs}
        return row, runs[-1]

    def _rollouts(self, cl, wl, seed: int) -> list[Played]:
        """The update's ``cfg.rollouts`` rollouts of one episode. One rollout samples from
        the loop's generator (as it always has); K >= 2 each from a generator of its own,
        seeded from the loop's, so they can be played in parallel and give the same result
        whatever the number of workers."""
        pol = self.agents.policy()
        if self.cfg.rollouts == 1:
            return [played(pol, Episode(cl, wl, seed), rng=self.rng)]
        seeds = self.rng.integers(0, 2**63, size=self.cfg.rollouts)
        return self.runner.run(pol, [Episode(cl, wl, seed, sample_seed=int(s)) for s in seeds])

    def run_updates(self, steps: int) -> tuple[int, dict[str, float]]:
        """PPO updates until ``steps`` more steps are used (whole episodes; an overshoot is
        taken off the next call's budget). Returns (steps used by this call, the mean of
        every metric over its updates plus ``charts/updates``)."""
        if steps < 0:
            raise ValueError(f"steps: {steps}; expected >= 0")
        self.budget += steps
        start = self.progress["step"]
        rows = []
        while self.progress["step"] < self.budget:
            rows.append(self.update()[0])
        out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}
        out["charts/updates"] = float(len(rows))
        return self.progress["step"] - start, out

    def validate(self, n: int | None = None, *, first: int = 0) -> dict:
        return validate(self.agents, self.src, self.cfg.val_episodes if n is None else n,
                        first=first, runner=self.runner)

    def close(self) -> None:
        """Stop the episode workers (a loop stays usable: they start again when needed)."""
        self.runner.close()

    # -- checkpointing -----------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resumed loop needs besides the weights (the ``extra`` of a
        checkpoint): configuration, optimiser, value normaliser, progress, generators."""
        return {"train_config": self.cfg.to_dict(), "optimizer": self.opt.state_dict(),
                "vnorm": self.vnorm.state(), "progress": dict(self.progress),
                "budget": self.budget, "rng_state": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "seeds": {"train": self.cfg.seed, "episode_seed_base": TRAIN_SEED_BASE,
                          "validation_seed_base": VAL_SEED_BASE}}

    def load_state(self, blob: dict, *, weights: bool = True) -> None:
        """Inverse of ``state`` (a checkpoint read with ``checkpoint.read``); ``weights``:
        also load its actor-critic and codec. Sets torch's global generator."""
        if weights:
            self.agents.model.load_state_dict(blob["model"])
            self.agents.codec.load_state_dict(blob["codec"])
        self.opt.load_state_dict(blob["optimizer"])
        self.vnorm.load(blob["vnorm"])
        self.progress = dict(blob["progress"])
        self.budget = int(blob.get("budget", self.progress["step"]))
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = blob["rng_state"]
        torch.set_rng_state(blob["torch_rng"])

    def save(self, path, extra: dict | None = None) -> None:
        checkpoint.save(path, agents=self.agents, extra={**self.state(), **(extra or {})})
