"""The malleable-stage lever, learned: how many instances each job may run at once, as a
function of the job and of the cluster's state, with weights searched by the cross-entropy
method (``placement.cem``) on simulated episodes, starting from the better of the tuned
``srpt-cap:P`` and the tuned ``weighted-fair:A``.

The tuned cap is one number for a whole scenario. A load that changes within a run (bursts
of arrivals, a backlog draining) asks for different widths at different times, and a job
near its end can take a wider share than one just arrived; the learned rule sees both:

    cap_j = clip(exp(w · φ_j), 1, MAX_CAP)

with φ_j, known to a scheduler at its decision (no clairvoyance):

- ``bias``: 1 (w = (log P, 0, ...) is ``srpt-cap:P``);
- ``work_left``: log(1 + the job's work left in instance-seconds / 100);
- ``open``: log(1 + the job's open instances);
- ``pressure``: log(1 + all open instances / the instances the cluster can hold);
- ``free_cpu``: the share of the cluster's cpu free now;
- ``rank``: the job's place in the SRPT order / the number of jobs with open work;
- ``fair_share``: log of the job's weighted-fair share with the rule's exponent A
  (``parallelism.fair_shares``; w = (0, ..., 0, 1) with exponent A is ``weighted-fair:A``).

Jobs are served in job-level SRPT order (``ordering.JobSrpt``); placement is the ordering
baselines'. The policy is deterministic given the weights; episodes are the simulator's.
"""

from __future__ import annotations

import math

import numpy as np

from agora.agents.baselines.ordering import srpt_order
from agora.agents.baselines.parallelism import fair_shares, serve_capped, slots_of
from agora.agents.sim.engine import Decision, Simulator

FEATURES = ("bias", "work_left", "open", "pressure", "free_cpu", "rank", "fair_share")
MAX_CAP = 4096
"""the most instances of one task (``agents.workloads``): a cap this high caps nothing"""


def start_weights(cap: float | None = None) -> np.ndarray:
    """The weights that reproduce ``srpt-cap:cap``, or with no cap ``weighted-fair:A`` (A the
    rule's exponent)."""
    w = np.zeros(len(FEATURES))
    if cap is None:
        w[FEATURES.index("fair_share")] = 1.0
    else:
        w[0] = math.log(min(cap, MAX_CAP))
    return w


class LearnedWidth:
    name = "learned-width"

    def __init__(self, weights, alpha: float = 0.0) -> None:
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(FEATURES),) or not np.isfinite(w).all():
            raise ValueError(f"learned-width: expected {len(FEATURES)} finite weights "
                             f"({', '.join(FEATURES)}), got {weights!r}")
        self.w, self.alpha = w, alpha

    def reset(self, sim: Simulator) -> None:
        pass

    def caps(self, ctx: Decision, open_tasks: list) -> dict[int, int]:
        """Each job's cap at this decision (``open_tasks`` in SRPT order)."""
        jobs: dict[int, list] = {}
        for t in open_tasks:
            entry = jobs.setdefault(t.job.seq, [t.job, 0])
            entry[1] += t.open
        total_open = sum(n for _, n in jobs.values())
        slots, free = slots_of(ctx)            # open_tasks: the whole open pool
        pressure = math.log1p(total_open / max(slots, 1.0))
        share = fair_shares({s: js for s, (js, _) in jobs.items()}, slots, self.alpha)
        phi = np.empty((len(jobs), len(FEATURES)))
        for i, (seq, (js, n_open)) in enumerate(jobs.items()):
            phi[i] = (1.0, math.log1p(js.work_left / 100.0), math.log1p(n_open), pressure,
                      free, i / len(jobs), math.log(share[seq]))
        caps = np.clip(np.exp(np.clip(phi @ self.w, -50, 50)), 1, MAX_CAP)
        return {seq: int(c + 1e-9) for seq, c in zip(jobs, caps)}

    def schedule(self, ctx: Decision) -> None:
        open_tasks = srpt_order(ctx)
        if open_tasks:
            caps = self.caps(ctx, open_tasks)
            serve_capped(ctx, open_tasks, lambda js: caps[js.seq])
