"""The ``agora`` sub-commands of the one-process simulator: ``simulate``, ``baselines``,
``bound``, ``train`` (alone or ``--federated``) and ``evaluate``. ``cli.parser`` wires them;
each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from agora.agents.baselines import BASELINES, is_baseline
from agora.agents.workloads.errors import InputError
from agora.deploy import json_out
from agora.deploy.cli_args import _build, _check_out, _scenario, _sim_config, _transforms

def _threshold_needs_trigger(a: argparse.Namespace, checkpoint: str | None = None) -> None:
    """``--threshold`` with ``--comm`` none or always -- or, without ``--comm``, with a
    ``checkpoint`` that does not use the trigger -- would be taken and ignored."""
    if a.threshold is None:
        return
    comm, by = a.comm, "--comm"
    if comm is None and checkpoint is not None:
        from agora.agents.learn.checkpoint import load_agents

        comm, by = load_agents(checkpoint)[0].cfg.comm, "the checkpoint's comm"
    if comm is not None and comm != "trigger":
        raise ValueError(f"--threshold {a.threshold:g} with {by} {comm}: it sets when the "
                         f"trigger sends a code; expected --comm trigger, or no --threshold")


def cmd_simulate(a: argparse.Namespace) -> int:
    from agora.agents.sim.report import metrics_table, shown
    from agora.agents.sim.runner import run_one

    if is_baseline(a.policy):
        for opt, v in (("--comm", a.comm), ("--threshold", a.threshold)):
            if v is not None:
                raise ValueError(f"{opt} {v}: applies to a checkpoint policy only, and "
                                 f"--policy {a.policy} is a baseline; expected no {opt} "
                                 f"with it")
    else:
        _threshold_needs_trigger(a, a.policy)
    sc = _scenario(a)
    cfg, given = _sim_config(a)
    # A value the file sets is used unless its option is given: the option then wins, and
    # the result's config says the value that ran.
    seed = cfg.seed if a.seed is None else a.seed
    check = cfg.check_invariants if a.check is None else a.check
    cfg = replace(cfg, seed=seed, check_invariants=check)
    if a.out is not None and not a.no_gantt and not cfg.record_attempts:
        raise InputError(path=a.config, line=given.get("record_attempts"),
                         field="record_attempts",
                         problem="false, so the Gantt charts that --out writes would be empty",
                         expected="record_attempts: true, or --no-gantt")
    cluster, wl = _build(a, sc, seed)
    d = _check_out(a.out) if a.out is not None else None
    if not a.json:
        src = "--seed" if a.seed is not None else a.config if "seed" in given else "default"
        print(f"scenario: {asdict(sc)}\nseed: {seed} (from {src})  policy: {a.policy}\n"
              f"config: {cfg.to_dict()}\ncluster: {len(cluster.sites)} sites, "
              f"{len(cluster.nodes)} nodes  workload: {len(wl.jobs)} jobs, "
              f"{wl.instance_count} instances ({wl.source})", file=sys.stderr)
    if is_baseline(a.policy):
        r = run_one(cluster, wl, a.policy, seed=seed, config=cfg, progress=not a.json)
    else:
        from agora.agents.learn.evaluate import run_learned
        r, _ = run_learned(a.policy, cluster, wl, seed=seed, config=cfg, comm=a.comm,
                           threshold=a.threshold, progress=not a.json)
    out = {"scenario": asdict(sc), "seed": seed, "policy": a.policy, "seeds": r.seeds,
           "config": cfg.to_dict(), "metrics": shown(r.metrics),
           "unschedulable": [list(u) for u in r.unschedulable],
           "failed": [list(f) for f in r.failed],
           "cancelled": [list(c) for c in r.cancelled]}
    if d is not None:
        (d / "result.json").write_text(json_out.dumps(out, indent=1))
        if not a.no_gantt:
            from agora.agents.sim.gantt import write_gantt
            out["gantt"] = [str(p) for p in write_gantt(r, d)]
    if a.json:
        print(json_out.dumps(out, indent=1))
    else:
        print(metrics_table(r.metrics))
        for outcome, rows in (("unschedulable", r.unschedulable), ("failed", r.failed),
                              ("cancelled", r.cancelled)):
            for job, task, why in rows[:10]:
                print(f"{outcome}: job {job} task {task}: {why}")
            if len(rows) > 10:
                print(f"... {len(rows) - 10} more {outcome} tasks (see --json)")
        if a.out:
            print(f"wrote {a.out}/result.json" + ("" if a.no_gantt else " and Gantt charts"))
    return 0 if r.metrics["tasks_lost"] == 0 else 1


def cmd_baselines(a: argparse.Namespace) -> int:
    from agora.agents.sim.report import comparison_table, summarise
    from agora.agents.sim.runner import run_baselines

    sc = _scenario(a)
    _build(a, sc, 0)                                    # bad input: fail before any run
    policies = a.policies
    cfg, _ = _sim_config(a, fixed_seed=f"agora baselines runs seeds 0..{a.seeds - 1} "
                                       f"(--seeds {a.seeds})")
    t0 = time.perf_counter()
    progress = None
    if not a.json:
        print(f"scenario: {asdict(sc)}  seeds: 0..{a.seeds - 1}", file=sys.stderr)
        from tqdm import tqdm
        progress = tqdm(total=a.seeds * len(policies or BASELINES), unit="run", leave=False)
    with _transforms(a):
        runs = run_baselines(sc, seeds=a.seeds, policies=policies, config=cfg,
                             on_result=(lambda *_: progress.update(1)) if progress else None)
    if progress:
        progress.close()
    if a.json:
        print(json_out.dumps({"scenario": asdict(sc), "seeds": a.seeds,
                          "policies": summarise(runs)}, indent=1))
    else:
        print(comparison_table(runs))
        print(f"{a.seeds} seeds, mean ± 95% interval; {time.perf_counter() - t0:.1f} s wall")
    return 0 if all(m["tasks_lost"] == 0 for ms in runs.values() for m in ms) else 1


def cmd_bound(a: argparse.Namespace) -> int:
    from agora.agents.bounds import analytic_lower_bounds, cpsat_schedule, runnable
    from agora.agents.bounds_cpsat import ModelRejected

    cluster, wl = _build(a, _scenario(a), a.seed)
    # the bounds are of what can run: a job with a task that fits no node is refused by the
    # simulator and left out here, named
    run_wl, left_out = runnable(wl, cluster)
    out = {"analytic": analytic_lower_bounds(wl, cluster),
           "left_out": [list(x) for x in left_out]}
    if not run_wl.jobs:
        out["cpsat"] = "skipped: no job can run on this cluster"
    elif run_wl.instance_count <= a.max_instances:
        for objective in ("makespan", "weighted_completion"):
            try:
                r = cpsat_schedule(run_wl, cluster, objective=objective,
                                   time_limit_s=a.time_limit)
            except ModelRejected as e:      # numbers too large for its integers (a probe)
                out["cpsat"] = (f"{objective} skipped: the solver rejected the model ({e}: "
                                f"the workload's durations, arrivals and weights together are "
                                f"too large for its 64-bit integers); the analytic bounds "
                                f"above stand")
                break
            out[objective] = {"model_status": r.status, "value": r.value,
                              "best_bound": r.best_bound, "proven_optimal": r.proven_optimal,
                              "resolution_s": r.resolution_s, "solve_s": r.solve_time_s,
                              "message": r.message}
    else:
        out["cpsat"] = (f"skipped: {run_wl.instance_count} instances > --max-instances "
                        f"{a.max_instances}")
    if a.json:
        print(json_out.dumps(out, indent=1, default=str))
        return 0
    for job, task, why in left_out[:10]:
        print(f"left out (fits no node, the simulator refuses it): job {job} task {task}: {why}")
    if len(left_out) > 10:
        print(f"... {len(left_out) - 10} more jobs left out (see --json)")
    print("analytic lower bounds (seconds unless named otherwise; compare `agora simulate`'s "
          "makespan with makespan_span, its mean JCT with mean_jct):")
    for k, v in out["analytic"].items():
        print(f"  {k:<28} {v:,.3f}" if isinstance(v, float) else f"  {k:<28} {v}")
    for objective in ("makespan", "weighted_completion"):
        r = out.get(objective)
        if r is None:
            continue
        verdict = ("optimal for this instance" if r["proven_optimal"] else
                   f"model status {r['model_status']}: optimal for the model rounded up to "
                   f"{r['resolution_s']:g} s steps, not proven for this instance"
                   if r["model_status"] == "OPTIMAL" else f"model status {r['model_status']}")
        val = "-" if r["value"] is None else f"{r['value']:,.3f}"
        bnd = "-" if r["best_bound"] is None else f"{r['best_bound']:,.3f}"
        print(f"CP-SAT {objective}: {val} (lower bound {bnd}; {verdict}; {r['solve_s']:.1f} s)"
              + (f": {r['message']}" if r["message"] else ""))
    if "cpsat" in out:
        print(f"CP-SAT: {out['cpsat']}")
    return 0


def policy_arg(v: str) -> str:
    """``--policy``: the Python API's check (``api_args.policy``), as an argparse error."""
    from agora.deploy.api_args import policy

    try:
        return policy(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("policy: ")) from None


def _agent_config(a: argparse.Namespace):
    from agora.agents.learn.learned_policy import AgentConfig

    return AgentConfig(k=a.k, hidden=a.hidden, code_dim=a.code_dim, bits=a.bits,
                       threshold=a.threshold, comm=a.comm, peers=a.peers)


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
        _training_workload(a.workload, a.workload_option or [], "--workload")
    _fill(a, TRAIN_DEFAULTS)


def _training_workload(workload: str, options: list[str], where: str) -> None:
    """A synthetic workload's ``jobs=`` and ``seed=`` would be taken and ignored by training
    (``where`` names the flag or the setup's field)."""
    kind, _, spec = workload.partition(":")
    if kind != "synthetic":
        return
    given = {p.split("=", 1)[0].strip() for p in spec.split(",") if "=" in p}
    given |= {t.split("=", 1)[0].strip() for t in options}
    if "jobs" in given:
        raise ValueError(f"{where} {workload}: jobs= sets no training episode's length; "
                         f"expected --train-jobs N (default 150; --curriculum-jobs for "
                         f"shorter first episodes)")
    if "seed" in given:
        raise ValueError(f"{where} {workload}: seed= would draw every training and "
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
    held = [f for f in ("last.pt", "state.json") if (Path(a.out) / f).exists()]
    if held and not a.resume:   # a probe: a new run overwrote the old one's files, silently
        raise ValueError(f"--out {a.out}: holds a run already ({held[0]}); expected --resume "
                         f"to continue it, or another --out for a new run")
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
    summary = train(cfg, a.out, resume=a.resume, progress=not a.quiet,
                    log=lambda m: print(m, file=sys.stderr), track=a.track, workers=a.workers)
    _print_summary(summary, a.json)
    return 0


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
    summary = train_federated(setup, cfg, a.out, resume=a.resume, progress=not a.quiet,
                              log=lambda m: print(m, file=sys.stderr), track=a.track)
    _print_summary(summary, a.json)
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from agora.agents.learn.checkpoint import load_agents
    from agora.agents.learn.evaluate import evaluate
    from agora.agents.sim.report import comparison_table, paired_differences, paired_table, summarise

    sc = _scenario(a)
    cfg, _ = _sim_config(a, fixed_seed=f"agora evaluate runs seeds 0..{a.seeds - 1} "
                                       f"(--seeds {a.seeds})")
    _build(a, sc, 0)                                    # bad input: fail before any run
    load_agents(a.checkpoint)                           # fail early, saying what differs
    _threshold_needs_trigger(a, a.checkpoint)
    policies = a.policies
    t0 = time.perf_counter()
    if not a.json:
        print(f"scenario: {asdict(sc)}  seeds: 0..{a.seeds - 1}  checkpoint: {a.checkpoint}",
              file=sys.stderr)
    with _transforms(a):
        res = evaluate(a.checkpoint, sc, seeds=list(range(a.seeds)), baselines=policies,
                       comm=a.comm, threshold=a.threshold, config=cfg,
                       on_result=None if a.json else (lambda p, s, r: print(
                           f"  seed {s} {p}: JCT {r.metrics['jct_mean_s']:.1f} s, "
                           f"score {r.metrics['score']:.4f}", file=sys.stderr)))
    if a.json:
        print(json_out.dumps({"scenario": asdict(sc), "seeds": a.seeds, "checkpoint": a.checkpoint,
                          "comm": res["comm"], "competence": res["competence"],
                          "wall_s": res["wall_s"],
                          "policies": summarise(res["runs"]),
                          "paired_jct": paired_differences(res["runs"], "learned")}, indent=1))
    else:
        print(comparison_table(res["runs"]))
        print()
        print(paired_table(res["runs"], "learned"))
        c = res["comm"]
        print(f"messages ({c['mode']}, threshold {c['threshold']}): {c['msgs_sent_frac']:.3f} of "
              f"{c['msgs_possible']} possible sent; {c['bytes_per_msg']} bytes per code vs "
              f"{c['raw_state_bytes']} bytes of raw float32 state")
        g = res["competence"]
        if g["max_choices"] is not None:
            print(f"competence: windows of up to {g['max_choices']} candidates"
                  + (f" and pools of up to {g['max_open']} open tasks"
                     if g["max_open"] is not None else "")
                  + f" ranked by the policy; {g['by_teacher']} of {g['decisions']} decisions "
                  f"beyond, ranked by its SRPT teacher (python -m agora.agents.learn.competence)")
        print(f"{a.seeds} seeds, mean ± 95% interval; {time.perf_counter() - t0:.1f} s wall")
    return 0
