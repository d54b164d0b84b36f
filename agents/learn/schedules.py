"""What changes over a training run so that PPO can move past its teacher (issue 13, item 4;
after Mao et al., SIGCOMM 2019 (Decima), section 5.3, and ICLR 2019):

- **an entropy schedule**: the entropy bonus goes linearly from ``PPOConfig.ent_coef`` to
  ``PPOConfig.ent_final`` over the run's steps (explore early, commit late);
- **an imitation penalty that decays to zero**: the cross-entropy of the policy's first
  choice against the SRPT teacher's, weighted ``PPOConfig.imitation_coef`` at the first PPO
  update and linearly less until ``PPOConfig.imitation_steps`` (then none): the warm start
  keeps its hold while the critic learns, and lets go after;
- **a softened warm start**: imitation stops once the policy gives the teacher's first choice
  a mean probability of ``TrainConfig.bc_target_prob`` (e.g. 0.6), instead of cloning it to
  ~0.85, which leaves sampling too little room to find anything else;
- **a curriculum on episode length**: episodes of ``TrainConfig.curriculum_jobs`` jobs at
  first, growing linearly to ``train_jobs`` over ``TrainConfig.curriculum_steps`` (short
  episodes give a clear credit signal early; Decima grows its episodes the same way).

Every schedule is a pure function of the steps used so far, so a resumed run continues each
one where it stopped.
"""

from __future__ import annotations

import torch


def linear(start: float, end: float, done: float, span: float) -> float:
    """``start`` at ``done`` = 0, ``end`` from ``done`` >= ``span`` on, linear between (``span``
    <= 0: ``end`` at once)."""
    if span <= 0 or done >= span:
        return float(end)
    return float(start + (end - start) * max(done, 0.0) / span)


def ent_coef(ppo, step: int, total: int) -> float:
    """The entropy bonus at ``step`` of a run of ``total`` steps."""
    if ppo.ent_final is None:
        return float(ppo.ent_coef)
    return linear(ppo.ent_coef, ppo.ent_final, step, total)


def imitation_coef(ppo, ppo_steps: int) -> float:
    """The imitation penalty's weight after ``ppo_steps`` steps of PPO (the imitation warm
    start's rounds are not steps)."""
    if ppo.imitation_coef <= 0:
        return 0.0
    return linear(ppo.imitation_coef, 0.0, ppo_steps, ppo.imitation_steps)


def episode_jobs(cfg, step: int) -> int | None:
    """Jobs in the training episode that starts at ``step`` (None: ``train_jobs``)."""
    if cfg.curriculum_jobs is None:
        return None
    return int(round(linear(cfg.curriculum_jobs, cfg.train_jobs, step, cfg.curriculum_steps)))


def imitation_loss(logits: torch.Tensor, first: torch.Tensor, active: torch.Tensor
                   ) -> torch.Tensor:
    """Mean cross-entropy of the policy's first choice against the teacher's ``first`` over
    the ``active`` rows (0 when there are none)."""
    logp = torch.log_softmax(logits, -1).gather(1, first[:, None]).squeeze(1)
    m = active.float()
    return -(logp * m).sum() / m.sum().clamp(min=1.0)


@torch.no_grad()
def teacher_prob(logits: torch.Tensor, first: torch.Tensor, active: torch.Tensor) -> float:
    """Mean probability the policy gives the teacher's first choice on the ``active`` rows."""
    p = torch.softmax(logits, -1).gather(1, first[:, None]).squeeze(1)
    m = active.float()
    return float((p * m).sum() / m.sum().clamp(min=1.0))
