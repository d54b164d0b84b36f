"""PPO (Schulman et al., arXiv 1707.06347) for the site agents, MAPPO-style (Yu et al.,
arXiv 2103.01955): clipped surrogate, GAE(λ) (arXiv 1506.02438), value normalisation, a few
epochs over minibatches, one network shared by every site.

**Per-agent buffers.** A rollout is a sequence of bidding rounds; every round holds one row
per site (its observation, ranking, log-probability and value). Each site's rows form its own
trajectory: GAE runs per site along the rounds. Rows where a site had nothing to bid for
(``active`` false) stay in the value regression but carry no policy gradient.

**Reward** (team, per round), shaped from the multi-objective score's QoS part and mean JCT:
every job present in the system (arrived, not finished) costs, per simulated second,
``1 / jct_scale_s + slowdown_w / max(critical_path_j, τ)``. Summed over an episode this is
``Σ_j JCT_j / jct_scale_s + slowdown_w · Σ_j JCT_j / max(cp_j, τ)`` — total JCT plus total
bounded slowdown (Feitelson's, as ``agents/sim/metrics.py`` defines it; the QoS term of the
score is its reciprocal mean). Utilisation, the score's other big term, is what a
work-conserving market gives anyway (every fitting candidate is bid). Round ``t`` receives
the cost accrued between its time and the next round's, so the return telescopes to the
episode's cost exactly (the DeepRM shaping, Mao et al., HotNets 2016).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from agora.agents.learn.ranking import first_choice_entropy, log_prob
from agora.agents.learn.schedules import imitation_loss, teacher_prob
from agora.agents.sim.config import Reward
from agora.agents.step.codes import dequantise


@dataclass(frozen=True)
class PPOConfig:
    lr: float = 3e-4
    """Adam learning rate; typical 1e-4–1e-3"""
    gamma: float = 0.99
    """discount per bidding round (about one decision point; 0.99 ≈ a 100-round horizon)"""
    lam: float = 0.95
    """GAE λ"""
    clip: float = 0.2
    """PPO ratio clip ε; typical 0.1–0.3"""
    epochs: int = 4
    """passes over each rollout batch (MAPPO: few)"""
    minibatch: int = 1024
    """site-rows per gradient step"""
    ent_coef: float = 0.003
    """entropy bonus on the first-choice distribution (at the start, with ``ent_final``)"""
    ent_final: float | None = None
    """entropy bonus at the end of the run, reached linearly (``schedules``); None: constant"""
    imitation_coef: float = 0.0
    """weight of the imitation penalty (cross-entropy of the first choice against the SRPT
    teacher's) at the first PPO update, decaying linearly to 0 (``schedules``); 0: none"""
    imitation_steps: int = 0
    """PPO steps over which the imitation penalty decays to 0"""
    vf_coef: float = 0.5
    """weight of the value regression (on normalised returns)"""
    max_grad_norm: float = 0.5
    """gradient-norm clip, applied to the actor-critic and to the codec separately"""
    codec_coef: float = 1.0
    """weight of the codec's negative ELBO in the joint loss (its gradients touch only the
    codec: the actor reads detached, quantised codes)"""
    jct_scale_s: float = 1000.0
    """reward: seconds of job presence that cost 1"""
    slowdown_w: float = 0.5
    """reward: weight of the bounded-slowdown term"""
    slowdown_tau_s: float = 10.0
    """τ of the bounded slowdown (``Objective.slowdown_bound_s``)"""
    sign: float = 1.0
    """+1: ascend the surrogate. Exists only so a test can flip it and watch learning fail."""

    def __post_init__(self) -> None:
        for name in ("ent_coef", "ent_final", "imitation_coef"):
            v = getattr(self, name)
            if v is not None and not 0 <= v < float("inf"):
                raise ValueError(f"{name}: found {v}; expected a finite number >= 0")
        if self.imitation_steps < 0:
            raise ValueError(f"imitation_steps: found {self.imitation_steps}; expected >= 0")
        if self.imitation_coef and not self.imitation_steps:
            raise ValueError(f"imitation_steps: found 0 with imitation_coef "
                             f"{self.imitation_coef}; expected the steps over which it decays "
                             f"(> 0), or no imitation_coef")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def reward(self) -> Reward:
        return Reward(jct_scale_s=self.jct_scale_s, slowdown_w=self.slowdown_w,
                      slowdown_tau_s=self.slowdown_tau_s)


def round_rewards(now: np.ndarray, jobs, cfg: PPOConfig, end: float) -> np.ndarray:
    """Team reward of every round (times ``now``, non-decreasing): minus the cost of the jobs
    present between the round and the next (the last: until ``end``)."""
    arr, fin, rate = [], [], []
    reward = cfg.reward
    for js in jobs:
        if js.outcome == "unschedulable":
            continue
        arr.append(js.job.arrival)
        fin.append(js.completion if js.completion is not None else end)
        rate.append(reward.rate(js.critical_path))
    arr, fin, rate = map(np.asarray, (arr, fin, rate))
    bounds = np.append(now, max(end, now[-1] if len(now) else end))

    def integral(times: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Σ_j rate_j · max(0, t − start_j) at each t."""
        o = np.argsort(starts)
        s, r = starts[o], rate[o]
        cr, crs = np.concatenate([[0], np.cumsum(r)]), np.concatenate([[0], np.cumsum(r * s)])
        i = np.searchsorted(s, times, side="right")
        return times * cr[i] - crs[i]

    f = integral(bounds, arr) - integral(bounds, fin)
    return -np.diff(f)


def gae(rewards: np.ndarray, values: np.ndarray, gamma: float, lam: float
        ) -> tuple[np.ndarray, np.ndarray]:
    """rewards (T,), values (T, S) of one finished episode -> advantages, returns (T, S)."""
    t_len = len(rewards)
    adv = np.zeros_like(values)
    last = np.zeros(values.shape[1])
    for t in reversed(range(t_len)):
        nxt = values[t + 1] if t + 1 < t_len else 0.0
        delta = rewards[t] + gamma * nxt - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv, adv + values


class ValueNorm:
    """Running mean and variance of the returns; the critic predicts normalised returns."""

    def __init__(self, beta: float = 0.99) -> None:
        self.beta = beta
        self.mean, self.sq, self.debias = 0.0, 1.0, 0.0

    def update(self, x: np.ndarray) -> None:
        b = self.beta
        self.mean = b * self.mean + (1 - b) * float(x.mean())
        self.sq = b * self.sq + (1 - b) * float((x ** 2).mean())
        self.debias = b * self.debias + (1 - b)

    @property
    def stats(self) -> tuple[float, float]:
        if self.debias == 0:
            return 0.0, 1.0
        m, sq = self.mean / self.debias, self.sq / self.debias
        return m, max(sq - m * m, 1e-4) ** 0.5

    def normalise(self, x):
        m, s = self.stats
        return (x - m) / s

    def denormalise(self, x):
        m, s = self.stats
        return x * s + m

    def state(self) -> list[float]:
        return [self.mean, self.sq, self.debias]

    def load(self, st: list[float]) -> None:
        self.mean, self.sq, self.debias = st


def flatten(ep: dict[str, np.ndarray], bits: int) -> dict[str, torch.Tensor]:
    """Rounds × sites -> rows, with each row's peer inputs (mailbox codes of the sites it
    listens to: ``listen``, as the agents acted). Integer codes are wire codes; float ones
    are exact peer states (comm 'global', ``global_state``), read as they are."""
    t_len, s = ep["mask"].shape[:2]
    codes = ep["codes"]
    if codes.dtype.kind != "f":
        codes = dequantise(codes, bits)                                  # (T, S, Z)
    pc = np.broadcast_to(codes[:, None], (t_len, s, *codes.shape[1:]))
    pm = ep["has"][:, None, :] & ep["listen"]
    out = {
        "slots": ep["slots"], "mask": ep["mask"], "own": ep["own"], "local": ep["local"],
        "peer_codes": pc, "peer_mask": pm,
        "state": np.broadcast_to(ep["state"][:, None], (t_len, s, ep["state"].shape[-1])),
        "order": ep["order"], "plen": ep["plen"], "logp": ep["logp"], "active": ep["active"]}
    for k in ("adv", "ret", "teacher_first"):
        if k in ep:
            out[k] = ep[k]
    # writable: a broadcast view of one site is contiguous but read-only, and torch warns
    return {k: torch.from_numpy(np.require(v, requirements=("C", "W")).reshape(
        t_len * s, *v.shape[2:])) for k, v in out.items()}


def _forward(agents, b: dict, idx: torch.Tensor):
    return agents.model(b["slots"][idx], b["mask"][idx], b["own"][idx],
                        b["peer_codes"][idx], b["peer_mask"][idx], b["state"][idx])


@torch.no_grad()
def values_of(agents, ep: dict[str, np.ndarray], bits: int) -> np.ndarray:
    """The critic's value of every (round, site) row of a recorded episode, (T, S): the
    rollout acts in numpy (no critic there), so values are computed once, afterwards."""
    t_len, s = ep["mask"].shape[:2]
    b = flatten(ep, bits)
    out = []
    for i in range(0, t_len * s, 4096):
        idx = torch.arange(i, min(i + 4096, t_len * s))
        out.append(_forward(agents, b, idx)[1])
    return torch.cat(out).numpy().reshape(t_len, s) if out else np.zeros((t_len, s))


def ppo_update(agents, opt: torch.optim.Optimizer, b: dict, cfg: PPOConfig,
               vnorm: ValueNorm, rng: np.random.Generator, *, ent_coef: float | None = None,
               imitation: float = 0.0) -> dict:
    """Clipped-surrogate epochs over the flattened batch ``b``; returns mean losses.
    ``ent_coef``: the entropy bonus now (default ``cfg.ent_coef``); ``imitation``: the
    imitation penalty's weight now (needs ``b['teacher_first']``)."""
    ent_w = cfg.ent_coef if ent_coef is None else ent_coef
    n = len(b["active"])
    act = b["active"].float()
    adv = b["adv"]
    a_act = adv[b["active"]]
    # normalised over the active steps; one (or none) has no spread to normalise by -- its
    # std is NaN, which made every weight NaN on a one-job workload: no gradient from it
    adv = ((adv - a_act.mean()) / (a_act.std() + 1e-8) if a_act.numel() > 1
           else torch.zeros_like(adv))
    ret_n = torch.as_tensor(vnorm.normalise(b["ret"].numpy()), dtype=torch.float32)
    logs: dict[str, list[float]] = {}
    for _ in range(cfg.epochs):
        perm = torch.from_numpy(rng.permutation(n))
        for i in range(0, n, cfg.minibatch):
            idx = perm[i:i + cfg.minibatch]
            logits, value = _forward(agents, b, idx)
            lp = log_prob(logits, b["order"][idx], b["plen"][idx])
            ratio = (lp - b["logp"][idx]).exp()
            a, m = adv[idx], act[idx]
            surr = torch.min(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a)
            denom = m.sum().clamp(min=1.0)
            pg = -cfg.sign * (surr * m).sum() / denom
            ent = (first_choice_entropy(logits) * m).sum() / denom
            vloss = ((value - ret_n[idx]) ** 2).mean()
            closs, clog = agents.codec.loss(b["local"][idx])
            loss = pg - ent_w * ent + cfg.vf_coef * vloss + cfg.codec_coef * closs
            if imitation > 0:
                imit = imitation_loss(logits, b["teacher_first"][idx], b["active"][idx])
                loss = loss + imitation * imit
                logs.setdefault("losses/imitation", []).append(float(imit.detach()))
            opt.zero_grad()
            loss.backward()
            # the codec's own loss must not eat the actor-critic's gradient budget
            torch.nn.utils.clip_grad_norm_(agents.model.parameters(), cfg.max_grad_norm)
            torch.nn.utils.clip_grad_norm_(agents.codec.parameters(), cfg.max_grad_norm)
            opt.step()
            with torch.no_grad():
                kl = ((ratio - 1) - (lp - b["logp"][idx])) * m
                clipfrac = ((ratio - 1).abs() > cfg.clip).float() * m
            for key, v in (("losses/policy", pg), ("losses/value", vloss),
                           ("losses/entropy", ent), ("losses/approx_kl", kl.sum() / denom),
                           ("losses/clipfrac", clipfrac.sum() / denom), *clog.items()):
                logs.setdefault(key, []).append(float(v.detach() if hasattr(v, "detach") else v))
    return {k: float(np.mean(v)) for k, v in logs.items()}


def bc_update(agents, opt: torch.optim.Optimizer, b: dict, *, epochs: int, minibatch: int,
              rng: np.random.Generator, codec_coef: float = 1.0,
              target_prob: float | None = None) -> dict:
    """Behaviour cloning: maximise the Plackett-Luce likelihood of a teacher's rankings
    (recorded as ``order``/``plen``) on the rows where the site could bid; the codec trains
    alongside. The critic is left to PPO. ``target_prob``: stop after the first epoch at
    whose end the policy gives the teacher's first choice at least this mean probability
    (a softened warm start, ``schedules``)."""
    rows = torch.nonzero(b["active"]).squeeze(1)
    logs: dict[str, list[float]] = {}
    first = b["order"][:, 0]
    ran = 0
    for _ in range(epochs):
        if (target_prob is not None and ran
                and _teacher_prob(agents, b, rows, first) >= target_prob):
            break
        ran += 1
        perm = rows[torch.from_numpy(rng.permutation(len(rows)))]
        for i in range(0, len(perm), minibatch):
            idx = perm[i:i + minibatch]
            logits, _ = _forward(agents, b, idx)
            nll = -log_prob(logits, b["order"][idx], b["plen"][idx]).mean()
            closs, clog = agents.codec.loss(b["local"][idx])
            opt.zero_grad()
            (nll + codec_coef * closs).backward()
            opt.step()
            logs.setdefault("losses/bc_nll", []).append(float(nll.detach()))
            for key, v in clog.items():
                logs.setdefault(key, []).append(v)
    out = {k: float(np.mean(v)) for k, v in logs.items()}
    out["losses/bc_epochs"] = float(ran)
    out["losses/bc_teacher_prob"] = _teacher_prob(agents, b, rows, first)
    return out


def _teacher_prob(agents, b: dict, rows: torch.Tensor, first: torch.Tensor) -> float:
    """Mean probability of the teacher's first choice over ``rows`` (``schedules``)."""
    if not len(rows):
        return 0.0
    with torch.no_grad():
        logits, _ = _forward(agents, b, rows)
    return teacher_prob(logits, first[rows], torch.ones(len(rows), dtype=torch.bool))
