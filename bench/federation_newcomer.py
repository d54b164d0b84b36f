"""Federation where it can help (issue 13, item 6), for the PPO site agents: a new organisation
joining from the federated weights against one starting alone, in environment steps of its
own PPO to a quality threshold.

    python -m bench.federation_newcomer [--setup synthetic-noniid|alibaba-by-type]
        [--rounds 6 --local-steps 1000] [--budget 8000 --checkpoints 8] [--seeds 0,1]
        [--test-episodes 4] [--seed 0] [--newcomers hpc,edge] [--traces ../shared/workloads]

For each organisation k of the setup in turn (the newcomer), the other organisations train
together: ``--rounds`` Flower FedAvg rounds × ``--local-steps`` PPO steps each
(``federation.train.train_federated``, the federated arm of ``bench/federation.py``; federation
seed ``--seed``). Then the newcomer trains alone (PPO on its own episodes only; its learner is
the local arm of ``bench/federation.py`` for organisation k: scenario, ``site_seed(s, k)``,
``--train-jobs``) for ``--budget`` steps, for each newcomer seed s, from two starts:

- **scratch**: ``initial_weights(s)`` + the SRPT warm start (behaviour cloning on
  ``--bc-episodes`` of its own episodes, not counted as steps): what a lone organisation does
  today, identical to ``bench/federation.py``'s local arm;
- **federated**: the federation's final weights and **no** warm start (they already carry the
  other organisations' warm starts and PPO; what a newcomer would do: join instead of
  cloning the teacher). Fresh Adam and value normaliser, as scratch; its PPO plays the same
  episodes as scratch's (the stream skips the ``--bc-episodes`` scratch cloned).
  ``--arms scratch,federated,federated+bc`` adds the federated weights *with* the warm start
  (what a site joining through ``PPOSiteLearner`` runs on its first round).

Both are evaluated greedily at step 0 and every ``budget / checkpoints`` steps on the same
held-out episodes of the newcomer (validation episodes ``TEST_FIRST`` ..; never trained on),
beside SJF and SRPT-market on those episodes. Thresholds on mean JCT, fixed before any
federated run (they use only the scratch arm and the references):

- ``scratch-best``: within 2% of the lowest mean JCT the scratch arm (same seed) reaches at
  any checkpoint of its budget: "what it reaches alone";
- ``srpt+5%``: within 5% of SRPT-market's mean JCT on the same episodes (the teacher).

Steps to a threshold: the steps at the first checkpoint at or below it (``> budget`` when
none is). Target: federated ≤ 50% of scratch's steps. Writes
``bench/results/federation-newcomer.md`` and ``.json`` (every curve, the seeds, the command,
/proc/loadavg at start and end).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.loop import TrainConfig
from agora.agents.learn.networks import get_weights
from agora.agents.sim.report import markdown_table
from agora.federation.domains import DEFAULT_TRACES, Setup, load_setup
from agora.federation.placement_learner import replays_to
from agora.federation.ppo_learner import PPOSiteLearner
from agora.federation.train import FedTrainConfig, initial_weights, site_seed, train_federated
from bench.federation_runs import TEST_FIRST, evaluate_test, references

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
ARMS = ("scratch", "federated", "federated+bc")
THRESHOLDS = {"scratch-best": "mean JCT <= 1.02 x the scratch arm's best checkpoint (same seed)",
              "srpt+5%": "mean JCT <= 1.05 x SRPT-market's on the same episodes"}
"""fixed before the federated arm ran; neither looks at it"""


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def plain(x):
    """``x`` for JSON: inf (not reached within the budget) as null."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return None if isinstance(x, float) and math.isinf(x) else x


def mean_of(ev: dict) -> tuple[float, float]:
    return float(np.mean(ev["jct_mean_s"])), float(np.mean(ev["score"]))


def federate(setup: Setup, k: int, cfg: FedTrainConfig, out: Path) -> tuple[list, dict]:
    """FedAvg over every organisation but ``k``; returns (final weights, its summary)."""
    others = Setup(f"{setup.name}-without-{setup.sites[k].name}",
                   setup.sites[:k] + setup.sites[k + 1:], setup.source)
    summ = train_federated(others, cfg, out, progress=False, log=lambda *_: None)
    w = get_weights(checkpoint.load_agents(out / "last.pt")[0].modules)
    return w, {"sites": [s.name for s in others.sites], "steps": summ["steps"],
               "wall_s": summ["wall_s"], "final": summ["final"]}


def newcomer_learner(setup: Setup, k: int, cfg: FedTrainConfig) -> PPOSiteLearner:
    """Organisation ``k``'s learner as ``build_learners`` makes it (seed ``site_seed``)."""
    s = setup.sites[k]
    return PPOSiteLearner(s.name, replace(cfg.site, scenario=asdict(s.scenario),
                                          seed=site_seed(cfg.seed, k)))


def train_curve(l: PPOSiteLearner, start: list, warm: bool, budget: int, n_ck: int,
                n_test: int) -> list[tuple[int, float, float]]:
    """From ``start`` (+ the SRPT warm start when ``warm``), ``budget`` PPO steps of ``l``'s
    own episodes; (steps, test JCT, test score) at step 0 and after each ``budget / n_ck``."""
    l.set_weights(start)
    if not warm:        # the same PPO episodes as a warm-started run of this seed
        l.loop.progress.update(bc_done=True, episode=l.loop.cfg.bc_episodes)
    l.train(0, {})      # the warm start (if any), no PPO step
    curve = [(0, *mean_of(evaluate_test(l.loop.agents, l.loop.src, n_test)))]
    for c in range(1, n_ck + 1):
        l.train(budget * c // n_ck - budget * (c - 1) // n_ck, {})
        curve.append((l.loop.progress["step"],
                      *mean_of(evaluate_test(l.loop.agents, l.loop.src, n_test))))
    return curve


def steps_to(curve: list, threshold: float) -> float:
    """Steps at the first checkpoint with mean JCT <= ``threshold``; inf if none."""
    return replays_to([(s, j) for s, j, _ in curve], threshold)


def thresholds(scratch: list, srpt_jct: float) -> dict[str, float]:
    return {"scratch-best": 1.02 * min(j for _, j, _ in scratch), "srpt+5%": 1.05 * srpt_jct}


def ratio(fed: float, scr: float, budget: int) -> tuple[str, bool | None]:
    """federated ÷ scratch steps as text, and whether it is <= 50% (None: not measurable)."""
    if scr == 0:
        return "n/a (scratch at step 0)", None
    if math.isinf(fed) and math.isinf(scr):
        return "neither reached", None
    if math.isinf(scr):
        return f"< {fed / budget:.0%}", fed / budget <= 0.5
    if math.isinf(fed):
        return f"> {budget / scr:.0%}", False
    return f"{fed / scr:.0%}", fed / scr <= 0.5


def newcomer(setup: Setup, k: int, cfg: FedTrainConfig, a, work: Path, log) -> dict:
    name = setup.sites[k].name
    t0 = time.perf_counter()
    fed_w, fed = federate(setup, k, cfg, work / f"without-{name}")
    log(f"[{name}] federation of {fed['sites']}: {fed['wall_s']:.0f} s")
    refs = None
    runs = {}
    for s in a.seeds:
        c = replace(cfg, seed=s)
        runs[s] = {}
        for arm in a.arms:
            l = newcomer_learner(setup, k, c)
            start = initial_weights(l, s) if arm == "scratch" else fed_w
            runs[s][arm] = train_curve(l, start, arm != "federated", a.budget, a.checkpoints,
                                       a.test_episodes)
            log(f"[{name}] seed {s} {arm}: " + " ".join(f"{st}:{j:.0f}"
                                                          for st, j, _ in runs[s][arm]))
            if refs is None:
                refs = references(l.loop.src, a.test_episodes)
    srpt = float(np.mean(refs["SRPT-market"]["jct_mean_s"]))
    res = {"federation": fed, "references": refs, "curves": runs, "thresholds": {},
           "steps_to": {}, "wall_s": 0.0}
    for s in a.seeds:
        th = thresholds(runs[s]["scratch"], srpt)
        res["thresholds"][s] = th
        res["steps_to"][s] = {t: {arm: steps_to(runs[s][arm], v) for arm in a.arms}
                              for t, v in th.items()}
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    return res


def table(report: dict, budget: int) -> str:
    rows = []
    fed_arms = [x for x in report["arms"] if x != "scratch"]
    fmt = lambda st: "> %d" % budget if math.isinf(st) else "%d" % st
    q = lambda c: f"{c[1]:.0f} / {c[2]:.3f}"
    for name, r in report["newcomers"].items():
        ref = {n: f"{np.mean(v['jct_mean_s']):.0f} / {np.mean(v['score']):.3f}"
               for n, v in r["references"].items()}
        for s, by_t in r["steps_to"].items():
            cur = r["curves"][s]
            for t, st in by_t.items():
                for arm in fed_arms:
                    txt, met = ratio(st[arm], st["scratch"], budget)
                    rows.append([name, str(s), f"{t}: {r['thresholds'][s][t]:.0f}", arm,
                                 fmt(st["scratch"]), fmt(st[arm]), txt,
                                 {True: "met", False: "not met", None: "n/a"}[met],
                                 q(cur["scratch"][0]), q(cur[arm][0]), q(cur["scratch"][-1]),
                                 q(cur[arm][-1]), ref["SRPT-market"], ref["SJF"]])
    return markdown_table(
        ["newcomer", "seed", "threshold (JCT s)", "start", "scratch steps", "start's steps",
         "ratio", "<= 50%", "scratch step 0 (JCT / score)", "start step 0", "scratch final",
         "start final", "SRPT-market", "SJF"], rows)


def render(report: dict) -> str:
    a = report["args"]
    head = (f"## A newcomer joining from the federated weights vs from scratch "
            f"({a['setup']})\n\n`{report['command']}`: {report['wall_s']:.0f} s wall on "
            f"{report['cpus']} cores (shared), load average at start {report['loadavg_start']}, "
            f"at end {report['loadavg_end']}.\n\nFederation: the other organisations, "
            f"{a['rounds']} FedAvg rounds × {a['local_steps']} steps each (seed {a['seed']}). "
            f"Newcomer: {a['budget']} PPO steps alone, evaluated at step 0 and every "
            f"{a['budget'] // a['checkpoints']} steps on {a['test_episodes']} held-out episodes "
            f"(validation {TEST_FIRST}..{TEST_FIRST + a['test_episodes'] - 1}); {a['train_jobs']} "
            f"jobs per episode; scratch = initial weights + SRPT warm start on "
            f"{a['bc_episodes']} episodes; federated = the federation's weights, no warm start. "
            f"Newcomer seeds {a['seeds']}.\n\nThresholds (fixed before the federated arm ran): "
            + "; ".join(f"`{k}`: {v}" for k, v in THRESHOLDS.items())
            + ". Steps: at the first checkpoint at or below the threshold. Quality: test "
              "mean JCT s / score.\n\n")
    return head + table(report, a["budget"]) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setup", default="synthetic-noniid")
    p.add_argument("--newcomers", default="", help="organisations to take in turn (all)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--local-steps", type=int, default=1000, help="per site per round")
    p.add_argument("--budget", type=int, default=8000, help="the newcomer's PPO steps")
    p.add_argument("--checkpoints", type=int, default=8)
    p.add_argument("--seeds", default="0,1", help="newcomer seeds")
    p.add_argument("--arms", default="scratch,federated", help=f"of {','.join(ARMS)}")
    p.add_argument("--train-jobs", type=int, default=100)
    p.add_argument("--bc-episodes", type=int, default=2)
    p.add_argument("--val-episodes", type=int, default=2, help="federation's own curves")
    p.add_argument("--test-episodes", type=int, default=4)
    p.add_argument("--seed", type=int, default=0, help="the federation's")
    p.add_argument("--traces", default=str(DEFAULT_TRACES))
    p.add_argument("--work", default="out/bench-federation-newcomer")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    a.seeds = [int(x) for x in a.seeds.split(",")]
    a.arms = a.arms.split(",")
    if a.arms[0] != "scratch" or not set(a.arms) <= set(ARMS) or len(a.arms) < 2:
        p.error(f"--arms: {a.arms}; expected scratch and one or more of {ARMS[1:]}")
    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    work, res_dir = Path(a.work) / a.setup, Path(a.out)
    setup = load_setup(a.setup, traces=a.traces, cache=Path(a.work) / "setups")
    names = [s.name for s in setup.sites]
    picked = a.newcomers.split(",") if a.newcomers else names
    if not set(picked) <= set(names):
        p.error(f"--newcomers: {picked}; the organisations of {a.setup} are {names}")
    cfg = FedTrainConfig(rounds=a.rounds, local_steps=a.local_steps, seed=a.seed,
                         site=TrainConfig(train_jobs=a.train_jobs, bc_episodes=a.bc_episodes,
                                          val_episodes=a.val_episodes))
    report = {"command": "python -m bench.federation_newcomer " + " ".join(
        sys.argv[1:] if argv is None else argv), "args": vars(a), "arms": a.arms,
        "config": cfg.to_dict(), "thresholds": THRESHOLDS, "test_first": TEST_FIRST,
        "seeds": {"federation": a.seed, "newcomer": a.seeds,
                  "newcomer_site_seeds": {n: {s: site_seed(s, names.index(n)) for s in a.seeds}
                                          for n in picked}},
        "cpus": os.cpu_count(), "loadavg_start": loadavg(), "newcomers": {}}
    t0 = time.perf_counter()
    for n in picked:
        report["newcomers"][n] = newcomer(setup, names.index(n), cfg, a, work, log)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    report["loadavg_end"] = loadavg()
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "federation-newcomer.json").write_text(json.dumps(plain(report), indent=1))
    md = render(report)
    (res_dir / "federation-newcomer.md").write_text(md)
    print(md, flush=True)
    return report


if __name__ == "__main__":
    main()
