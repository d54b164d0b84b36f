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
from dataclasses import asdict
from pathlib import Path

from agora.agents.baselines import BASELINES, FAMILIES, choices, is_baseline, make_policy
from agora.agents.workloads.errors import InputError
from agora.deploy import cli_coordinator, cli_jobs, cli_sites, cli_up


def _scenario_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scenario")
    g.add_argument("--cluster", default="default",
                   help="'default' (8 mixed sites), a cluster YAML, or an Alibaba node-list CSV")
    g.add_argument("--workload", default="synthetic",
                   help="'synthetic[:jobs=400,load=0.85,...]', a jobs .jsonl, a .swf trace, "
                        "or an Alibaba pod-list CSV")
    g.add_argument("--sites", type=int, default=8, help="sites to split a node-list CSV into")
    g.add_argument("--split", default="stratified", choices=["stratified", "by-model", "contiguous"],
                   help="how to split a node-list CSV into sites")
    g.add_argument("--arrival-window", type=float, default=None, metavar="SECONDS",
                   help="compress the trace's arrivals into this many seconds")
    g.add_argument("--load", type=float, default=None,
                   help="scale arrivals to this offered load on the dominant resource")
    g.add_argument("--inflate", type=float, default=1.0,
                   help="clone jobs to this multiple, arrivals seeded (default 1: none)")
    g.add_argument("--config", default=None, help="simulation YAML (objective weights, ...)")


def _scenario(a: argparse.Namespace):
    from agora.agents.sim.runner import Scenario

    return Scenario(cluster=a.cluster, workload=a.workload, sites=a.sites, split=a.split,
                    arrival_window=a.arrival_window, load=a.load, inflate=a.inflate)


def cmd_simulate(a: argparse.Namespace) -> int:
    from agora.agents.sim.config import load_sim_config
    from agora.agents.sim.report import metrics_table
    from agora.agents.sim.runner import run_one

    sc = _scenario(a)
    cfg = load_sim_config(a.config, check_invariants=a.check)
    cluster, wl = sc.build(a.seed)
    if not a.json:
        print(f"scenario: {asdict(sc)}\nseed: {a.seed}  policy: {a.policy}\n"
              f"config: {cfg.to_dict()}\ncluster: {len(cluster.sites)} sites, "
              f"{len(cluster.nodes)} nodes  workload: {len(wl.jobs)} jobs, "
              f"{wl.instance_count} instances ({wl.source})", file=sys.stderr)
    if is_baseline(a.policy):
        r = run_one(cluster, wl, a.policy, seed=a.seed, config=cfg, progress=not a.json)
    else:
        from agora.agents.learn.evaluate import run_learned
        r, _ = run_learned(a.policy, cluster, wl, seed=a.seed, config=cfg, comm=a.comm,
                           threshold=a.threshold, progress=not a.json)
    out = {"scenario": asdict(sc), "seed": a.seed, "policy": a.policy, "seeds": r.seeds,
           "config": cfg.to_dict(), "metrics": r.metrics,
           "unschedulable": [list(u) for u in r.unschedulable],
           "failed": [list(f) for f in r.failed]}
    if a.out:
        d = Path(a.out)
        d.mkdir(parents=True, exist_ok=True)
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
        if a.out:
            print(f"wrote {a.out}/result.json" + ("" if a.no_gantt else " and Gantt charts"))
    return 0 if r.metrics["tasks_lost"] == 0 else 1


def cmd_baselines(a: argparse.Namespace) -> int:
    from agora.agents.sim.config import load_sim_config
    from agora.agents.sim.report import comparison_table, summarise
    from agora.agents.sim.runner import run_baselines

    sc = _scenario(a)
    policies = a.policies.split(",") if a.policies else None
    for p in policies or []:
        if not is_baseline(p):
            raise SystemExit(f"agora: unknown policy {p!r}; choose from {choices()}")
    t0 = time.perf_counter()
    progress = None
    if not a.json:
        print(f"scenario: {asdict(sc)}  seeds: 0..{a.seeds - 1}", file=sys.stderr)
        from tqdm import tqdm
        progress = tqdm(total=a.seeds * len(policies or BASELINES), unit="run", leave=False)
    runs = run_baselines(sc, seeds=a.seeds, policies=policies,
                         config=load_sim_config(a.config),
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

    cluster, wl = _scenario(a).build(a.seed)
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
    from agora.agents.sim.config import load_sim_config
    from agora.agents.sim.report import comparison_table, paired_differences, paired_table, summarise

    sc = _scenario(a)
    cluster, _ = sc.build(0)
    load_agents(a.checkpoint)                           # fail early, saying what differs
    policies = a.policies.split(",") if a.policies else None
    for p in policies or []:
        if not is_baseline(p):
            raise SystemExit(f"agora: unknown policy {p!r}; choose from {choices()}")
    t0 = time.perf_counter()
    if not a.json:
        print(f"scenario: {asdict(sc)}  seeds: 0..{a.seeds - 1}  checkpoint: {a.checkpoint}",
              file=sys.stderr)
    res = evaluate(a.checkpoint, sc, seeds=list(range(a.seeds)), baselines=policies,
                   comm=a.comm, threshold=a.threshold, config=load_sim_config(a.config),
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
    s.add_argument("--threshold", type=float, default=None,
                   help="checkpoint policies: override the send trigger's threshold")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="directory for result.json and Gantt PNGs")
    s.add_argument("--no-gantt", action="store_true", help="skip the Gantt charts")
    s.add_argument("--check", action="store_true",
                   help="verify capacity invariants after every decision (slower)")
    s.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s.set_defaults(fn=cmd_simulate)

    b = sub.add_parser("baselines", help="every baseline side by side over seeds")
    _scenario_args(b)
    b.add_argument("--seeds", type=int, default=5)
    b.add_argument("--policies", default=None, help="comma-separated subset (default: all)")
    b.add_argument("--json", action="store_true", help="print machine-readable JSON")
    b.set_defaults(fn=cmd_baselines)

    c = sub.add_parser("bound", help="lower bounds and, for small instances, the CP-SAT optimum")
    _scenario_args(c)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--time-limit", type=float, default=10.0, help="CP-SAT seconds per objective")
    c.add_argument("--max-instances", type=int, default=50)
    c.add_argument("--json", action="store_true", help="print machine-readable JSON")
    c.set_defaults(fn=cmd_bound)

    t = sub.add_parser("train", help="train the site agents (SRPT warm start, then PPO); "
                                     "--federated: over several organisations with Flower")
    _scenario_args(t)
    t.add_argument("--steps", type=int, default=50_000, help="bidding rounds of PPO experience")
    t.add_argument("--out", required=True, help="directory for checkpoints, metrics, curve")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--train-jobs", type=int, default=150, help="jobs per training episode")
    t.add_argument("--bc-episodes", type=int, default=4,
                   help="SRPT teacher episodes to imitate first (0: PPO from scratch)")
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--k", type=int, default=16, help="candidate slots per round")
    t.add_argument("--hidden", type=int, default=64)
    t.add_argument("--code-dim", type=int, default=8)
    t.add_argument("--bits", type=int, default=8)
    t.add_argument("--threshold", type=float, default=0.5, help="send-trigger threshold")
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
    e.add_argument("--seeds", type=int, default=5)
    e.add_argument("--policies", default=None, help="baselines to compare (default: all)")
    e.add_argument("--comm", default=None, choices=["trigger", "always", "none"])
    e.add_argument("--threshold", type=float, default=None)
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
