"""``agora evaluate``: a checkpoint's greedy policy side by side with every baseline (and the
job-level SRPT reference heuristic played through the same market), on the same seeds, mean
± 95% interval (``agents.sim.report``); plus the message statistics of the learned run."""

from __future__ import annotations

import time
from dataclasses import replace

from agora.agents.baselines import BASELINES, is_baseline
from agora.agents.learn import checkpoint
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import SimResult, Simulator
from agora.agents.sim.runner import Scenario, run_one
from agora.agents.step.codes import code_bytes
from agora.agents.step.observe import LOCAL_DIM
from agora.agents.step.simulation import AgentsPolicy

SRPT_NAME = "srpt-market (ref.)"


def is_checkpoint_path(policy: str) -> bool:
    return not is_baseline(policy) and (policy.endswith(".pt") or "/" in policy)


def learned_policy(path: str, *, comm: str | None = None, threshold: float | None = None,
                   expect: AgentConfig | None = None, name: str = "learned") -> AgentsPolicy:
    agents, _ = checkpoint.load_agents(path, expect=expect)
    return AgentsPolicy(agents.policy(comm=comm, threshold=threshold), name=name)


def run_learned(path: str, cluster, wl, *, seed: int, config: SimConfig | None = None,
                comm: str | None = None, threshold: float | None = None,
                progress: bool = False) -> tuple[SimResult, AgentsPolicy]:
    pol = learned_policy(path, comm=comm, threshold=threshold)
    cfg = replace(config or SimConfig(), seed=seed)
    return Simulator(cluster, wl, cfg).run(pol, progress=progress), pol


def messages_of(pol: AgentsPolicy, comm: str | None = None,
                threshold: float | None = None) -> dict:
    """What the agents of a run of ``pol`` sent: the mode and threshold that ran (``comm``
    and ``threshold`` when given, else the checkpoint's) and codes sent of those possible."""
    sent = sum(a.sent for a in pol.agents)
    possible = sum(a.sent + a.suppressed for a in pol.agents)
    cfg = pol.policy
    return {"mode": cfg.comm if comm is None else comm,
            "threshold": cfg.threshold if threshold is None else threshold,
            "msgs_sent": sent, "msgs_possible": possible,
            "msgs_sent_frac": sent / possible if possible else 0.0}


def run_srpt(cluster, wl, *, seed: int, config: SimConfig | None = None) -> SimResult:
    """The job-level SRPT reference: shortest job work left first, every site bidding for all
    it fits, cleared by the same market (origin-preferred, best-fit)."""
    pol = AgentsPolicy(Agents(AgentConfig()).policy(comm="none"), name=SRPT_NAME,
                       teacher="srpt")
    return Simulator(cluster, wl, replace(config or SimConfig(), seed=seed)).run(pol)


def evaluate(path: str, sc: Scenario, *, seeds: list[int], baselines: list[str] | None = None,
             srpt: bool = True, comm: str | None = None, threshold: float | None = None,
             config: SimConfig | None = None, on_result=None) -> dict:
    """Returns {"runs": policy -> [metrics per seed], "comm": {...}, "wall": {...}}.
    ``seeds``: at least one (ValueError otherwise)."""
    if not seeds:
        raise ValueError("evaluate: no seeds; expected at least one seed (agora evaluate "
                         "--seeds N with N >= 1)")
    names = list(BASELINES) if baselines is None else baselines
    runs: dict[str, list[dict]] = {"learned": []}
    if srpt:
        runs[SRPT_NAME] = []
    runs.update({p: [] for p in names})
    sent = possible = by_teacher = 0
    wall = {k: 0.0 for k in runs}
    rounds = 0
    pol = None
    for seed in seeds:
        cluster, wl = sc.build(seed)
        t0 = time.perf_counter()
        r, pol = run_learned(path, cluster, wl, seed=seed, config=config, comm=comm,
                             threshold=threshold)
        wall["learned"] += time.perf_counter() - t0
        m = messages_of(pol)
        sent, possible = sent + m["msgs_sent"], possible + m["msgs_possible"]
        by_teacher += sum(a.by_teacher for a in pol.agents)
        rounds += pol.rounds
        runs["learned"].append(r.metrics)
        if on_result:
            on_result("learned", seed, r)
        if srpt:
            t0 = time.perf_counter()
            r = run_srpt(cluster, wl, seed=seed, config=config)
            wall[SRPT_NAME] += time.perf_counter() - t0
            runs[SRPT_NAME].append(r.metrics)
            if on_result:
                on_result(SRPT_NAME, seed, r)
        for p in names:
            t0 = time.perf_counter()
            r = run_one(cluster, wl, p, seed=seed, config=config)
            wall[p] += time.perf_counter() - t0
            runs[p].append(r.metrics)
            if on_result:
                on_result(p, seed, r)
    cfg = pol.policy
    return {"runs": runs, "wall_s": wall,
            "comm": {"mode": cfg.comm if comm is None else comm,
                     "threshold": cfg.threshold if threshold is None else threshold,
                     "msgs_sent_frac": sent / possible if possible else 0.0,
                     "msgs_sent": sent, "msgs_possible": possible, "rounds": rounds,
                     "bytes_per_msg": code_bytes(cfg.code_dim, cfg.bits),
                     "bits_per_msg": 8 * code_bytes(cfg.code_dim, cfg.bits),
                     "raw_state_bytes": 4 * LOCAL_DIM},
            "competence": {"max_choices": cfg.max_choices,
                           "max_open": cfg.max_open, "by_teacher": by_teacher,
                           "decisions": possible}}
