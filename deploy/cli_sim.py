"""The ``agora`` sub-commands of the one-process simulator: ``simulate``, ``baselines``,
``bound`` and ``evaluate`` (``train``, alone or ``--federated``, is ``cli_train``).
``cli.parser`` wires them; each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, replace

from agora.agents.baselines import BASELINES, is_baseline
from agora.agents.workloads.errors import InputError
from agora.deploy import json_out
from agora.deploy.cli_args import (_build, _check_out, _scenario, _sim_config, _transforms,
                                    missing_folders, remove_if_empty)

def _threshold_needs_trigger(a: argparse.Namespace, checkpoint=None) -> None:
    """``--threshold`` with ``--comm`` none or always -- or, without ``--comm``, with a
    ``checkpoint`` (its path, or its loaded ``Agents``) that does not use the trigger --
    would be taken and ignored."""
    if a.threshold is None:
        return
    comm, by = a.comm, "--comm"
    if comm is None and checkpoint is not None:
        if isinstance(checkpoint, str):
            from agora.agents.learn.checkpoint import load_agents

            checkpoint = load_agents(checkpoint)[0]
        comm, by = checkpoint.cfg.comm, "the checkpoint's comm"
    if comm is not None and comm != "trigger":
        raise ValueError(f"--threshold {a.threshold:g} with {by} {comm}: it sets when the "
                         f"trigger sends a code; expected --comm trigger, or no --threshold")


def cmd_simulate(a: argparse.Namespace) -> int:
    from agora.agents.sim.report import metrics_table, shown

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
    made = missing_folders(a.out) if a.out is not None else []
    d = _check_out(a.out) if a.out is not None else None
    try:
        r, messages = _run(a, sc, cluster, wl, cfg, seed, given)
    except BaseException:
        remove_if_empty(made)
        raise
    out = {"scenario": asdict(sc), "seed": seed, "policy": a.policy, "seeds": r.seeds,
           "config": cfg.to_dict(), "metrics": shown(r.metrics),
           "unschedulable": [list(u) for u in r.unschedulable],
           "failed": [list(f) for f in r.failed],
           "cancelled": [list(c) for c in r.cancelled],
           **({"messages": messages} if messages is not None else {})}
    if d is not None:
        if not a.no_gantt:
            from agora.agents.sim.gantt import write_gantt
            out["gantt"] = [str(p) for p in write_gantt(r, d)]
        # whole or not at all, and as --json says it (a probe: written before the charts,
        # it lacked their "gantt")
        tmp = d / ".result.json.tmp"
        tmp.write_text(json_out.dumps(out, indent=1))
        os.replace(tmp, d / "result.json")
    if a.json:
        print(json_out.dumps(out, indent=1))
    else:
        print(metrics_table(r.metrics))
        if "messages" in out:
            m = out["messages"]
            print(f"messages ({m['mode']}, threshold {m['threshold']}): {m['msgs_sent']} of "
                  f"{m['msgs_possible']} possible codes sent ({m['msgs_sent_frac']:.3f})")
        for outcome, rows in (("unschedulable", r.unschedulable), ("failed", r.failed),
                              ("cancelled", r.cancelled)):
            for job, task, why in rows[:10]:
                print(f"{outcome}: job {job} task {task}: {why}")
            if len(rows) > 10:
                print(f"... {len(rows) - 10} more {outcome} tasks (see --json)")
        if a.out:
            print(f"wrote {a.out}/result.json" + ("" if a.no_gantt else " and Gantt charts"))
    return 0 if r.metrics["tasks_lost"] == 0 else 1


def _run(a: argparse.Namespace, sc, cluster, wl, cfg, seed: int, given: dict):
    """The run of ``agora simulate``: what runs said on stderr, then the policy's run;
    (result, what a learned policy's agents sent, or None for a baseline)."""
    from agora.agents.sim.runner import run_one

    if not a.json:
        src = "--seed" if a.seed is not None else a.config if "seed" in given else "default"
        print(f"scenario: {sc.shown()}\nseed: {seed} (from {src})  policy: {a.policy}\n"
              f"config: {cfg.to_dict()}\ncluster: {len(cluster.sites)} sites, "
              f"{len(cluster.nodes)} nodes  workload: {len(wl.jobs)} jobs, "
              f"{wl.instance_count} instances ({wl.source})", file=sys.stderr)
    if is_baseline(a.policy):
        return run_one(cluster, wl, a.policy, seed=seed, config=cfg, progress=not a.json), None
    from agora.agents.learn.evaluate import messages_of, run_learned

    r, pol = run_learned(a.policy, cluster, wl, seed=seed, config=cfg, comm=a.comm,
                         threshold=a.threshold, progress=not a.json)
    # what the agents sent, said beside the metrics (a probe: --comm none and always could
    # not be told apart in simulate's output)
    return r, messages_of(pol, a.comm, a.threshold)


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
        print(f"scenario: {sc.shown()}  seeds: 0..{a.seeds - 1}", file=sys.stderr)
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
    except (ValueError, TypeError) as e:    # (an empty name is the API's TypeError: argparse
        # said "invalid policy_arg value: ''", a probe)
        raise argparse.ArgumentTypeError(str(e).removeprefix("policy: ")) from None


def cmd_evaluate(a: argparse.Namespace) -> int:
    from agora.agents.learn.checkpoint import load_agents
    from agora.agents.learn.evaluate import evaluate
    from agora.agents.sim.report import comparison_table, paired_differences, paired_table, summarise

    sc = _scenario(a)
    cfg, _ = _sim_config(a, fixed_seed=f"agora evaluate runs seeds 0..{a.seeds - 1} "
                                       f"(--seeds {a.seeds})")
    _build(a, sc, 0)                                    # bad input: fail before any run
    agents, _ = load_agents(a.checkpoint)               # fail early, saying what differs
    _threshold_needs_trigger(a, agents)
    policies = a.policies
    t0 = time.perf_counter()
    if not a.json:
        print(f"scenario: {sc.shown()}  seeds: 0..{a.seeds - 1}  checkpoint: {a.checkpoint}",
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
