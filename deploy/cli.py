"""The ``agora`` command: one entry point, a sub-command per job.

Every sub-command has ``--help``; those that print results take ``--json``. Bad input exits
with status 2 and one line naming the file, line and field (``InputError``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from agora.agents.baselines import BASELINES, FAMILIES, choices, is_baseline, make_policy
from agora.agents.workloads.errors import InputError
from agora.deploy import cli_coordinator, cli_jobs, cli_sites, cli_up
from agora.deploy.cli_args import (_build, _check_out, _number, _policies_arg, _scenario,
                                   _scenario_args, _seed, _sim_config, _threshold,
                                   _transforms, _whole)


def cmd_simulate(a: argparse.Namespace) -> int:
    from agora.agents.sim.report import metrics_table
    from agora.agents.sim.runner import run_one

    if is_baseline(a.policy):
        for opt, v in (("--comm", a.comm), ("--threshold", a.threshold)):
            if v is not None:
                raise ValueError(f"{opt} {v}: applies to a checkpoint policy only, and "
                                 f"--policy {a.policy} is a baseline; expected no {opt} "
                                 f"with it")
    sc = _scenario(a)
    cfg, given = _sim_config(a)
    # A value the file sets is used unless its option is given: the option then wins, and
    # the result's config says the value that ran.
    seed = cfg.seed if a.seed is None else a.seed
    check = cfg.check_invariants if a.check is None else a.check
    cfg = replace(cfg, seed=seed, check_invariants=check)
    if a.out and not a.no_gantt and not cfg.record_attempts:
        raise InputError(path=a.config, line=given.get("record_attempts"),
                         field="record_attempts",
                         problem="false, so the Gantt charts that --out writes would be empty",
                         expected="record_attempts: true, or --no-gantt")
    cluster, wl = _build(a, sc, seed)
    d = _check_out(a.out) if a.out else None
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
           "config": cfg.to_dict(), "metrics": r.metrics,
           "unschedulable": [list(u) for u in r.unschedulable],
           "failed": [list(f) for f in r.failed]}
    if d is not None:
        (d / "result.json").write_text(json.dumps(out, indent=1))
        if not a.no_gantt:
            from agora.agents.sim.gantt import write_gantt
            out["gantt"] = [str(p) for p in write_gantt(r, d)]
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        print(metrics_table(r.metrics))
        for job, task, why in r.unschedulable[:10]:
            print(f"unschedulable: job {job} task {task}: {why}")
        if len(r.unschedulable) > 10:
            print(f"... {len(r.unschedulable) - 10} more unschedulable tasks (see --json)")
        for job, task, why in r.failed[:10]:
            print(f"failed: job {job} task {task}: {why}")
        if len(r.failed) > 10:
            print(f"... {len(r.failed) - 10} more failed tasks (see --json)")
        if a.out:
            print(f"wrote {a.out}/result.json" + ("" if a.no_gantt else " and Gantt charts"))
    return 0 if r.metrics["tasks_lost"] == 0 else 1


def cmd_baselines(a: argparse.Namespace) -> int:
    from agora.agents.sim.report import comparison_table, summarise
    from agora.agents.sim.runner import run_baselines

    sc = _scenario(a)
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
        print(json.dumps({"scenario": asdict(sc), "seeds": a.seeds,
                          "policies": summarise(runs)}, indent=1))
    else:
        print(comparison_table(runs))
        print(f"{a.seeds} seeds, mean ± 95% interval; {time.perf_counter() - t0:.1f} s wall")
    return 0 if all(m["tasks_lost"] == 0 for ms in runs.values() for m in ms) else 1


def cmd_bound(a: argparse.Namespace) -> int:
    from agora.agents.bounds import analytic_lower_bounds, cpsat_schedule

    cluster, wl = _build(a, _scenario(a), a.seed)
    out = {"analytic": analytic_lower_bounds(wl, cluster)}
    if wl.instance_count <= a.max_instances:
        for objective in ("makespan", "weighted_completion"):
            r = cpsat_schedule(wl, cluster, objective=objective, time_limit_s=a.time_limit)
            out[objective] = {"model_status": r.status, "value": r.value,
                              "best_bound": r.best_bound, "proven_optimal": r.proven_optimal,
                              "resolution_s": r.resolution_s, "solve_s": r.solve_time_s}
    else:
        out["cpsat"] = f"skipped: {wl.instance_count} instances > --max-instances {a.max_instances}"
    if a.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    print("analytic lower bounds (seconds unless named otherwise):")
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
        print(f"CP-SAT {objective}: {val} (lower bound {bnd}; {verdict}; {r['solve_s']:.1f} s)")
    if "cpsat" in out:
        print(f"CP-SAT: {out['cpsat']}")
    return 0


def _policy_arg(v: str) -> str:
    if is_baseline(v) or Path(v).is_file():
        return v
    if v.partition(":")[0] in FAMILIES:
        try:
            make_policy(v)                    # a known family with a bad value: say why
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    raise argparse.ArgumentTypeError(
        f"{v!r} is neither a baseline ({choices()}) nor a checkpoint file")


def _agent_config(a: argparse.Namespace):
    from agora.agents.learn.learned_policy import AgentConfig

    return AgentConfig(k=a.k, hidden=a.hidden, code_dim=a.code_dim, bits=a.bits,
                       threshold=a.threshold, comm=a.comm)


def cmd_train(a: argparse.Namespace) -> int:
    from agora.agents.learn.ppo import PPOConfig
    from agora.agents.learn.trainer import TrainConfig, train

    sc = _scenario(a)
    cfg = TrainConfig(scenario=asdict(sc), steps=a.steps, seed=a.seed, train_jobs=a.train_jobs,
                      bc_episodes=a.bc_episodes, val_episodes=a.val_episodes,
                      agent=_agent_config(a), ppo=PPOConfig(lr=a.lr))
    if a.federated:
        return _train_federated(a, cfg)
    summary = train(cfg, a.out, resume=a.resume, progress=not a.quiet,
                    log=lambda m: print(m, file=sys.stderr), track=a.track)
    _print_summary(summary, a.json)
    return 0


def _print_summary(summary: dict, as_json: bool) -> None:
    """``--json``: the summary as JSON; else one ``name: value`` line per entry."""
    if as_json:
        print(json.dumps(summary, indent=1))
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
    kw = {k: v for k, v in (("max_nodes", a.max_nodes), ("load", a.setup_load)) if v is not None}
    setup = load_setup(a.setup, traces=a.traces, cache=Path(a.out) / "setup", **kw)
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
        print(json.dumps({"scenario": asdict(sc), "seeds": a.seeds, "checkpoint": a.checkpoint,
                          "comm": res["comm"], "wall_s": res["wall_s"],
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
        print(f"{a.seeds} seeds, mean ± 95% interval; {time.perf_counter() - t0:.1f} s wall")
    return 0


class AgoraParser(argparse.ArgumentParser):
    """Every ``agora`` parser, sub-commands included (argparse builds those with the type of
    their parent): no abbreviated options (``--seed`` is never read as ``--seeds``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def show_defaults(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Every option of ``p`` and its sub-commands says its default in ``--help`` (where it
    has one: not None, not a switch that is off)."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                show_defaults(sub)
            continue
        if not action.option_strings or action.help == argparse.SUPPRESS or \
                action.default is None or action.default is False or \
                action.default == argparse.SUPPRESS:
            continue
        if "%(default)" not in (action.help or ""):
            action.help = f"{action.help} (default: %(default)s)" if action.help \
                else "default: %(default)s"
    return p


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("agora")
    except PackageNotFoundError:       # run from a checkout that was not pip-installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    p = AgoraParser(prog="agora", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"agora {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="replay a workload on a cluster under one policy")
    _scenario_args(s)
    s.add_argument("--policy", default="tetris", type=_policy_arg,
                   help=f"a baseline ({choices()}) or the path of a "
                        "checkpoint written by `agora train`")
    s.add_argument("--comm", default=None, choices=["trigger", "always", "none"],
                   help="checkpoint policies: override the message mode")
    s.add_argument("--threshold", type=_threshold, default=None,
                   help="checkpoint policies: override the send trigger's threshold (>= 0)")
    s.add_argument("--seed", type=_seed, default=None,
                   help="default: 0, or the seed of the --config file")
    s.add_argument("--out", default=None, help="directory for result.json and Gantt PNGs")
    s.add_argument("--no-gantt", action="store_true", help="skip the Gantt charts")
    s.add_argument("--check", action=argparse.BooleanOptionalAction, default=None,
                   help="verify capacity invariants after every decision (slower; default: "
                        "the --config file's check_invariants, else off)")
    s.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s.set_defaults(fn=cmd_simulate)

    b = sub.add_parser("baselines", help="every baseline side by side over seeds")
    _scenario_args(b)
    b.add_argument("--seeds", type=_whole(ge=1), default=5, help="seeds 0..N-1")
    b.add_argument("--policies", type=_policies_arg, default=None,
                   help="comma-separated subset, each once (default: all)")
    b.add_argument("--json", action="store_true", help="print machine-readable JSON")
    b.set_defaults(fn=cmd_baselines)

    c = sub.add_parser("bound", help="lower bounds and, for small instances, the CP-SAT optimum")
    _scenario_args(c, config=False)   # a bound does not depend on the simulation settings
    c.add_argument("--seed", type=_seed, default=0)
    c.add_argument("--time-limit", type=_number(gt=0, le=1e6, unit="seconds"), default=10.0,
                   help="CP-SAT seconds per objective")
    c.add_argument("--max-instances", type=_whole(ge=0), default=50,
                   help="run CP-SAT only up to this many instances")
    c.add_argument("--json", action="store_true", help="print machine-readable JSON")
    c.set_defaults(fn=cmd_bound)

    t = sub.add_parser("train", help="train the site agents (SRPT warm start, then PPO); "
                                     "--federated: over several organisations with Flower")
    _scenario_args(t, config=False)   # training builds its own simulations
    t.add_argument("--steps", type=int, default=50_000, help="bidding rounds of PPO experience")
    t.add_argument("--out", required=True, help="directory for checkpoints, metrics, curve")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--train-jobs", type=int, default=150, help="jobs per training episode")
    t.add_argument("--bc-episodes", type=int, default=4,
                   help="SRPT teacher episodes to imitate first (0: PPO from scratch)")
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--k", type=int, default=16, help="candidate slots per round")
    t.add_argument("--hidden", type=int, default=64)
    t.add_argument("--code-dim", type=int, default=8)
    t.add_argument("--bits", type=int, default=8)
    t.add_argument("--threshold", type=_threshold, default=0.5,
                   help="send-trigger threshold (>= 0)")
    t.add_argument("--comm", default="trigger", choices=["trigger", "always", "none"])
    t.add_argument("--val-episodes", type=int, default=4,
                   help="held-back validation episodes per evaluation (per site)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true", help="print the summary as JSON")
    t.add_argument("--track", default="none", choices=["none", "tensorboard"],
                   help="also write the curves to TensorBoard (OUT/tensorboard), under the "
                        "names of metrics.jsonl")
    f = t.add_argument_group("federated (--federated: Flower rounds over organisations, "
                             "each training on its own scenario; see federation/train.py)")
    f.add_argument("--federated", action="store_true",
                   help="federated training over the organisations of --setup (the budget is "
                        "--rounds x --local-steps per organisation; --steps is not used)")
    f.add_argument("--setup", default="synthetic-noniid",
                   help="synthetic-noniid, alibaba-by-type, or a setup YAML "
                        "(deploy/configs/federation/synthetic-noniid.yaml shows the form)")
    f.add_argument("--rounds", type=int, default=10, help="federated rounds")
    f.add_argument("--local-steps", type=int, default=2000,
                   help="environment steps of local PPO per site per round")
    f.add_argument("--strategy", default="fedavg", choices=["fedavg", "median", "trimmed"],
                   help="Flower's FedAvg, FedMedian or FedTrimmedAvg")
    f.add_argument("--trim-beta", type=float, default=0.2,
                   help="trimmed: fraction cut from each end")
    f.add_argument("--secagg", action="store_true",
                   help="aggregate with Flower's SecAgg+ (fedavg only)")
    f.add_argument("--traces", default=None,
                   help="alibaba-by-type: the folder holding alibaba-openb-2023/ "
                        "(default ../shared/workloads)")
    f.add_argument("--max-nodes", type=int, default=None,
                   help="alibaba-by-type: most nodes per organisation (default 8)")
    f.add_argument("--setup-load", type=float, default=None,
                   help="alibaba-by-type: offered load of each organisation's pods (default 10)")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("evaluate", help="a checkpoint side by side with every baseline")
    _scenario_args(e)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--seeds", type=_whole(ge=1), default=5, help="seeds 0..N-1")
    e.add_argument("--policies", type=_policies_arg, default=None,
                   help="baselines to compare, comma-separated, each once (default: all)")
    e.add_argument("--comm", default=None, choices=["trigger", "always", "none"])
    e.add_argument("--threshold", type=_threshold, default=None,
                   help="override the send trigger's threshold (>= 0)")
    e.add_argument("--json", action="store_true", help="print machine-readable JSON")
    e.set_defaults(fn=cmd_evaluate)

    cli_coordinator.register(sub)     # keys, coordinator, schedule get|watch, status
    cli_up.register(sub)              # replay, up, down
    cli_jobs.register(sub)            # submit, jobs, logs, cancel
    cli_sites.register(sub)           # site key|admit|remove|list

    k = sub.add_parser("certs", help="a private CA and a TLS certificate per site and replica")
    k.add_argument("--sites", default="", help="comma-separated site names")
    k.add_argument("--replicas", type=int, default=4)
    k.add_argument("--hosts", default="localhost,127.0.0.1",
                   help="comma-separated DNS names / IPs the certificates are valid for")
    k.add_argument("--days", type=int, default=365)
    k.add_argument("--out", required=True, help="directory for ca.crt and <name>.crt/.key")
    k.add_argument("--json", action="store_true", help="print machine-readable JSON")
    k.set_defaults(fn=cmd_certs)
    return show_defaults(p)


def cmd_certs(a: argparse.Namespace) -> int:
    from agora.deploy.certs import make_all
    sites = [s for s in a.sites.split(",") if s]
    if a.replicas < 0 or a.days < 1:
        raise ValueError("--replicas must be >= 0 and --days >= 1")
    made = make_all(Path(a.out), sites, a.replicas, [h for h in a.hosts.split(",") if h], a.days)
    if a.json:
        print(json.dumps({"out": str(a.out), "certificates": [
            {"name": m.name, "cert": str(m.cert), "key": str(m.key)} for m in made]}, indent=1))
        return 0
    print(f"wrote {len(made)} certificates to {a.out}: {', '.join(m.name for m in made)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. A user sees one line, never a traceback: bad input exits 2, a
    system that is not running or refuses exits 1, Ctrl-C 130."""
    from agora.coordinator.client import CoordinatorError
    from agora.deploy.service_client import NotRunning

    a = parser().parse_args(argv)
    name = f"agora {a.command}" if getattr(a, "command", None) else "agora"
    try:
        return a.fn(a)
    except (InputError, ValueError, FileNotFoundError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except NotRunning as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except CoordinatorError as e:
        print(f"{name}: the coordinator refused: {e.code.name}: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (agora jobs | head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        # a file or folder it was given cannot be read or written (permissions, a file
        # where a folder should be, a full disk): name it, without a traceback
        if e.filename:
            print(f"{name}: {e.filename}: {e.strerror or e}; expected a path this user can "
                  f"read and write", file=sys.stderr)
        else:
            print(f"{name}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
