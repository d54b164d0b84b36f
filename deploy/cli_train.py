"""``agora train``, alone or ``--federated``: the flags checked (what a run would take and
ignore is refused, in one line), the workload or every organisation's checked runnable, then
``agents.learn.trainer.train`` or ``federation.train.train_federated``. ``cli.parser`` wires
it; it takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

from agora.deploy import json_out
from agora.deploy.cli_args import _build, _scenario
from agora.deploy.cli_sim import _threshold_needs_trigger


RUN_FILES = ("last.pt", "state.json", "summary.json", "best.pt", "config.json",
             "metrics.jsonl")
"""Files of a training run (alone or federated): a folder holding any of them holds a run,
which a new run without --resume would overwrite (a probe: a --steps 0 run writes no
last.pt, and a second one overwrote its best.pt and config.json)."""


def _agent_config(a: argparse.Namespace):
    from agora.agents.learn.learned_policy import AgentConfig

    return AgentConfig(k=a.k, hidden=a.hidden, code_dim=a.code_dim, bits=a.bits,
                       threshold=a.threshold, comm=a.comm, peers=a.peers, encoder=a.encoder)


FEDERATED_DEFAULTS = {"setup": "synthetic-noniid", "rounds": 10, "local_steps": 2000,
                      "strategy": "fedavg", "trim_beta": 0.2}
"""``agora train --federated``'s options not given (None in the parser, so that one given
without --federated is refused)"""


TRAIN_DEFAULTS = {"steps": 50_000, "threshold": 0.5}
"""``agora train``'s options that are None in the parser so that one given where it changes
nothing is refused (``_refuse_ignored_train_flags``)"""


def _refuse_ignored_train_flags(a: argparse.Namespace) -> None:
    """Flags that a training run would take and ignore (a probe), refused in one line; then
    ``TRAIN_DEFAULTS`` for those not given."""
    if a.federated and a.steps is not None:
        raise ValueError(f"--steps {a.steps} with --federated: each organisation trains "
                         f"--rounds x --local-steps PPO steps; expected --rounds and "
                         f"--local-steps, or no --steps")
    _threshold_needs_trigger(a)
    if not a.federated:                           # --federated: --setup's workloads
        _training_workload(a.workload, a.workload_option or [])
    _fill(a, TRAIN_DEFAULTS)


def _training_workload(workload: str, options: list[str]) -> None:
    """A synthetic ``--workload``'s ``jobs=`` and ``seed=`` (in its spec or its options)
    would be taken and ignored by training. (A setup's are refused by ``read_setup``.)"""
    from agora.agents.workloads.loader import parse_synthetic

    if workload.split(":")[0] != "synthetic":
        return
    given = {*parse_synthetic(workload), *(t.split("=", 1)[0].strip() for t in options)}
    if "jobs" in given:
        raise ValueError(f"--workload {workload}: jobs= sets no training episode's length; "
                         f"expected --train-jobs N (default 150; --curriculum-jobs for "
                         f"shorter first episodes)")
    if "seed" in given:
        raise ValueError(f"--workload {workload}: seed= would draw every training and "
                         f"validation episode alike; training draws each from --seed; "
                         f"expected no seed= (or --seed N)")


def _fill(a: argparse.Namespace, defaults: dict) -> None:
    """Each option of ``defaults`` not given (None) set to its default."""
    for name, default in defaults.items():
        if getattr(a, name) is None:
            setattr(a, name, default)


def cmd_train(a: argparse.Namespace) -> int:
    from agora.agents.learn.ppo import PPOConfig
    from agora.agents.learn.trainer import TrainConfig, train

    if not a.federated:
        given = [f for f, v in (("--setup", a.setup), ("--rounds", a.rounds),
                                ("--local-steps", a.local_steps), ("--strategy", a.strategy),
                                ("--trim-beta", a.trim_beta), ("--max-nodes", a.max_nodes),
                                ("--setup-load", a.setup_load), ("--traces", a.traces),
                                ("--secagg", a.secagg or None))
                 if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} without --federated: "
                             f"{'they apply' if len(given) > 1 else 'it applies'} to federated "
                             f"training only; expected --federated, or no {given[0]}")
    # flags that would change nothing were taken and ignored (a probe)
    if a.trim_beta is not None and a.strategy != "trimmed":
        raise ValueError(f"--trim-beta {a.trim_beta:g} with --strategy {a.strategy or 'fedavg'}"
                         f": it sets what --strategy trimmed cuts; expected --strategy "
                         f"trimmed, or no --trim-beta")
    if a.curriculum_steps and a.curriculum_jobs is None:
        raise ValueError(f"--curriculum-steps {a.curriculum_steps} without --curriculum-jobs: "
                         f"it sets how long episodes of --curriculum-jobs jobs last; expected "
                         f"--curriculum-jobs N too")
    if a.curriculum_jobs is not None and a.curriculum_jobs >= a.train_jobs:
        # a probe: 100 with --train-jobs 10 ran episodes of 100 jobs shrinking to 10
        raise ValueError(f"--curriculum-jobs {a.curriculum_jobs} with --train-jobs "
                         f"{a.train_jobs}: the first episodes' length, growing to "
                         f"--train-jobs; expected fewer than {a.train_jobs}")
    if a.imitation_steps and not a.imitation_coef:
        raise ValueError(f"--imitation-steps {a.imitation_steps} with --imitation-coef 0: it "
                         f"sets how long the imitation penalty decays; expected "
                         f"--imitation-coef > 0 too")
    _refuse_ignored_train_flags(a)
    _fill(a, FEDERATED_DEFAULTS)
    if a.steps == 0 and a.bc_episodes == 0 and not a.federated:
        raise ValueError("--steps 0 --bc-episodes 0: nothing to train; expected --steps > 0 "
                         "(PPO) or --bc-episodes > 0 (imitation of the SRPT teacher)")
    if a.federated and a.workers != 1:
        raise ValueError(f"--workers {a.workers} with --federated: episode workers serve one "
                         f"learner; a federated run's organisations each train in their own "
                         f"process. Expected --workers 1 (the default) with --federated")
    if not a.out.strip():        # a probe: '' wrote the run into the current folder
        raise ValueError(f"--out {a.out!r}: an empty path; expected a folder for the run's "
                         f"checkpoints and metrics")
    _refuse_a_held_run(a)       # (told before the run's set-up; again under the lock)
    sc = _scenario(a)
    cluster, wl = _build(a, sc, 0)                      # bad input: fail before any run
    _require_runnable(cluster, wl, sc.workload)
    cfg = TrainConfig(scenario=asdict(sc), steps=a.steps, seed=a.seed, train_jobs=a.train_jobs,
                      bc_episodes=a.bc_episodes, val_episodes=a.val_episodes,
                      rollouts=a.rollouts, curriculum_jobs=a.curriculum_jobs,
                      curriculum_steps=a.curriculum_steps, bc_target_prob=a.bc_target_prob,
                      agent=_agent_config(a),
                      ppo=PPOConfig(lr=a.lr, ent_final=a.ent_final,
                                    imitation_coef=a.imitation_coef,
                                    imitation_steps=a.imitation_steps))
    if a.federated:
        return _train_federated(a, cfg)
    with _only_run_in(a):
        summary = train(cfg, a.out, resume=a.resume, progress=not a.quiet,
                        log=lambda m: print(m, file=sys.stderr), track=a.track,
                        workers=a.workers)
    _print_summary(summary, a.json)
    return 0


def _refuse_a_held_run(a: argparse.Namespace) -> None:
    """A new run into a folder that holds one (a probe: it overwrote the old run's files,
    silently)."""
    held = [f for f in RUN_FILES if (Path(a.out) / f).exists()]
    if held and not a.resume:
        raise ValueError(f"--out {a.out}: holds a run already ({held[0]}); expected --resume "
                         f"to continue it, or another --out for a new run")
    from agora.federation.run_files import federated_folder

    if a.resume and not a.federated and federated_folder(Path(a.out)):
        # a probe: "last.pt: no field 'optimizer'", naming a checkpoint's insides
        raise ValueError(f"--resume --out {a.out}: holds a federated run; expected --federated "
                         f"--resume with its --setup and settings, or another --out")


@contextlib.contextmanager
def _only_run_in(a: argparse.Namespace):
    """``--out`` locked (``train.lock``, flock) for this run, and looked at again under the
    lock: a probe started two runs into one folder at once, both passed the "holds a run
    already" check, and both wrote there (a checkpoint of one seed, metrics of both, a cut
    row; both failed at their end). The kernel drops the lock when the process ends."""
    import fcntl

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / "train.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"--out {a.out}: another agora train writes there now; expected "
                             f"another --out, or --resume once it ended") from None
        except OSError as e:          # a file system without locks (some NFS, FUSE mounts)
            print(f"agora train: --out {a.out}: cannot lock it ({e.strerror or e}); a second "
                  f"run into it at once would not be refused", file=sys.stderr)
        _refuse_a_held_run(a)
        yield
    finally:
        os.close(fd)


def _require_runnable(cluster, wl, workload: str) -> None:
    """A workload of which no job fits a node has nothing to train on: one line naming the
    first job and why, not a traceback from the learner's empty batch (a probe)."""
    from agora.agents.bounds import runnable

    run_wl, left_out = runnable(wl, cluster)
    if run_wl.jobs or not left_out:
        return
    job, task, why = left_out[0]
    more = f" (and {len(left_out) - 1} more jobs)" if len(left_out) > 1 else ""
    raise ValueError(f"--workload {workload}: no job can run on this cluster: job {job} task "
                     f"{task} {why}{more}; nothing to train on; expected jobs some node fits")


def _print_summary(summary: dict, as_json: bool) -> None:
    """``--json``: the summary as JSON; else one ``name: value`` line per entry."""
    if as_json:
        print(json_out.dumps(summary, indent=1))
        return
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk}={vv:.4g}" if isinstance(vv, float) else f"{kk}={vv}"
                          for kk, vv in v.items())
        elif isinstance(v, float):
            v = f"{v:.4g}"
        print(f"{k}: {v}")


def _train_federated(a: argparse.Namespace, site_cfg) -> int:
    from agora.agents.sim.runner import Scenario
    from agora.federation.domains import load_setup
    from agora.federation.train import FedTrainConfig, train_federated

    default = asdict(Scenario())
    given = [f"--{k.replace('_', '-')}" for k, v in site_cfg.scenario.items() if v != default[k]]
    if given:
        raise ValueError(f"{', '.join(given)}: with --federated every organisation's cluster "
                         f"and workload come from --setup")
    only = [f for f, v in (("--traces", a.traces), ("--max-nodes", a.max_nodes),
                           ("--setup-load", a.setup_load)) if v is not None]
    if only and a.setup != "alibaba-by-type":   # a probe: ignored, or named by field only
        raise ValueError(f"{', '.join(only)} with --setup {a.setup}: "
                         f"{'they apply' if len(only) > 1 else 'it applies'} to --setup "
                         f"alibaba-by-type only; expected no {only[0]}")
    kw = {k: v for k, v in (("max_nodes", a.max_nodes), ("load", a.setup_load)) if v is not None}
    setup = load_setup(a.setup, traces=a.traces, cache=Path(a.out) / "setup", **kw)
    for org in setup.sites:      # a probe: one that could run nothing trained "JCT 0"
        try:
            cluster, wl = org.scenario.build(0)
            _require_runnable(cluster, wl, org.scenario.workload)
        except ValueError as e:
            raise ValueError(f"--setup {a.setup}: organisation {org.name!r}: {e}") from None
    # an organisation's run is rounds x local steps: what the schedules span (--ent-final)
    site_cfg = replace(site_cfg, steps=a.rounds * a.local_steps)
    cfg = FedTrainConfig(rounds=a.rounds, local_steps=a.local_steps, strategy=a.strategy,
                         secagg=a.secagg, trim_beta=a.trim_beta, seed=a.seed, site=site_cfg)
    with _only_run_in(a):
        summary = train_federated(setup, cfg, a.out, resume=a.resume, progress=not a.quiet,
                                  log=lambda m: print(m, file=sys.stderr), track=a.track)
    _print_summary(summary, a.json)
    return 0
