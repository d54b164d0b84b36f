"""The ``agora`` command: one entry point, a sub-command per job.

Every sub-command has ``--help``; those that print results take ``--json``. Bad input exits
with status 2 and one line naming the file, line and field (``InputError``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from pathlib import Path


def _interrupted_starting(signum, frame) -> None:
    """Ctrl-C while ``agora`` starts -- its imports take most of a second, before ``main``
    can catch anything: one line and exit 130, as a Ctrl-C later (a review: a 20-line
    traceback of the import under way). ``main`` puts Python's own handler back."""
    os.write(2, b"agora: interrupted\n")
    os._exit(130)


if (os.path.basename((getattr(sys, "argv", None) or [""])[0]) == "agora"
        or __name__ == "__main__") and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    try:
        signal.signal(signal.SIGINT, _interrupted_starting)
    except ValueError:          # not the main thread: nothing to do
        pass

from agora.agents.baselines import choices
from agora.agents.limits import MAX_CERT_DAYS, MAX_REPLICAS
from agora.agents.workloads.errors import InputError
from agora.deploy import cli_coordinator, cli_jobs, cli_sim, cli_sites, cli_train, cli_up
from agora.deploy.arg_types import check_replicas
from agora.deploy.cli_signals import sigterm_as_interrupt
from agora.deploy.cli_args import (MAX_SEEDS, _number, _policies_arg, _scenario_args, _seed,
                                   _seeds, _threshold, _whole)


class AgoraParser(argparse.ArgumentParser):
    """Every ``agora`` parser, sub-commands included (argparse builds those with the type of
    their parent): no abbreviated options (``--seed`` is never read as ``--seeds``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        # an id may start with '-' (docs/inputs.md), which argparse takes for an option: say
        # how to pass it (a probe: agora cancel -x only said "required: job")
        _, _, missing = message.partition("the following arguments are required: ")
        if missing and any(not m.startswith("-") and not m.endswith("command")
                           for m in missing.split(", ")):
            message += ("; an id that starts with '-' goes after --, e.g. "
                        f"{self.prog} -- -x")
        # one line, as every other refusal (a probe: argparse printed its usage block first)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    s.add_argument("--policy", default="tetris", type=cli_sim.policy_arg,
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
    s.set_defaults(fn=cli_sim.cmd_simulate)

    b = sub.add_parser("baselines", help="every baseline side by side over seeds")
    _scenario_args(b)
    b.add_argument("--seeds", type=_seeds, default=5,
                   help=f"seeds 0..N-1 (N <= {MAX_SEEDS:,})")
    b.add_argument("--policies", type=_policies_arg, default=None,
                   help="comma-separated subset, each once (default: all)")
    b.add_argument("--json", action="store_true", help="print machine-readable JSON")
    b.set_defaults(fn=cli_sim.cmd_baselines)

    c = sub.add_parser("bound", help="lower bounds and, for small instances, the CP-SAT optimum")
    _scenario_args(c, config=False)   # a bound does not depend on the simulation settings
    c.add_argument("--seed", type=_seed, default=0)
    c.add_argument("--time-limit", type=_number(gt=0, le=1e6, unit="seconds"), default=10.0,
                   help="CP-SAT seconds per objective")
    c.add_argument("--max-instances", type=_whole(ge=0, le=200), default=50,
                   help="run CP-SAT only up to this many instances (at most 200: an exact "
                        "solve of more does not finish)")
    c.add_argument("--json", action="store_true", help="print machine-readable JSON")
    c.set_defaults(fn=cli_sim.cmd_bound)

    t = sub.add_parser("train", help="train the site agents (SRPT warm start, then PPO); "
                                     "--federated: over several organisations with Flower")
    _scenario_args(t, config=False)   # training builds its own simulations
    t.add_argument("--steps", type=_whole(ge=0, le=10**9), default=None,
                   help="bidding rounds of PPO experience (default 50,000; 0: the imitation "
                        "warm start only; not with --federated)")
    t.add_argument("--out", required=True, help="directory for checkpoints, metrics, curve")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--seed", type=_seed, default=0)
    t.add_argument("--train-jobs", type=_whole(ge=1, le=1_000_000), default=150, help="jobs per training episode")
    t.add_argument("--bc-episodes", type=_whole(ge=0, le=10_000), default=4,
                   help="SRPT teacher episodes to imitate first (0: PPO from scratch)")
    t.add_argument("--lr", type=_number(gt=0, le=1, unit="the optimiser's step size"),
                   default=3e-4)
    t.add_argument("--k", type=_whole(ge=1, le=1024), default=16,
                   help="candidate slots per round")
    t.add_argument("--hidden", type=_whole(ge=1, le=4096), default=64)
    t.add_argument("--code-dim", type=_whole(ge=1, le=256), default=8)
    t.add_argument("--bits", type=_whole(ge=2, le=8), default=8)
    t.add_argument("--threshold", type=_threshold, default=None,
                   help="send-trigger threshold (>= 0; default 0.5; --comm trigger only)")
    t.add_argument("--comm", default="trigger", choices=["trigger", "always", "none"])
    t.add_argument("--peers", type=_whole(ge=1), default=16,
                   help="sites each agent listens to, its nearest by link (>= 1)")
    t.add_argument("--encoder", default="mlp", choices=["mlp", "graph"],
                   help="slot encoder: mlp (the slot's features) or graph (also its job's "
                        "DAG, message passing as in Decima)")
    b = t.add_argument_group("moving past the teacher (docs/training.md; agents/learn/schedules.py)")
    b.add_argument("--rollouts", type=_whole(ge=1, le=64), default=1,
                   help="rollouts of each arrival sequence per update; >= 2: the "
                        "input-dependent baseline instead of the critic's")
    b.add_argument("--bc-target-prob", type=_number(gt=0, le=0.99), default=None,
                   help="stop imitating once the teacher's first choice has this mean "
                        "probability (a softened warm start, e.g. 0.6)")
    b.add_argument("--imitation-coef", type=_number(ge=0, le=100), default=0.0,
                   help="imitation penalty at the first PPO update, decaying to 0")
    b.add_argument("--imitation-steps", type=_whole(ge=0, le=10**9), default=0,
                   help="PPO steps over which the imitation penalty decays to 0")
    b.add_argument("--ent-final", type=_number(ge=0, le=10), default=None,
                   help="entropy bonus at the end of the run (linear from 0.003)")
    b.add_argument("--curriculum-jobs", type=_whole(ge=1, le=1_000_000), default=None,
                   help="jobs of the first episodes, growing to --train-jobs")
    b.add_argument("--curriculum-steps", type=_whole(ge=0, le=10**9), default=0,
                   help="steps over which episodes grow to --train-jobs")
    t.add_argument("--val-episodes", type=_whole(ge=1, le=10_000), default=4,
                   help="held-back validation episodes per evaluation (per site)")
    t.add_argument("--workers", type=_whole(ge=1, le=64), default=1,
                   help="processes playing episodes in parallel (the teacher's, an update's "
                        "--rollouts, validation); 2 uses both cores of a 2-core machine. "
                        "The results do not depend on it")
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
    # defaults None here, filled in by cli_train.cmd_train: given without --federated is refused
    f.add_argument("--setup", default=None,
                   help="synthetic-noniid (the default), alibaba-by-type, or a setup YAML "
                        "(deploy/configs/federation/synthetic-noniid.yaml shows the form)")
    f.add_argument("--rounds", type=_whole(ge=1, le=100_000), default=None,
                   help="federated rounds (default 10)")
    f.add_argument("--local-steps", type=_whole(ge=1, le=10**9), default=None,
                   help="environment steps of local PPO per site per round (default 2000)")
    f.add_argument("--strategy", default=None, choices=["fedavg", "median", "trimmed"],
                   help="Flower's FedAvg (the default), FedMedian or FedTrimmedAvg")
    f.add_argument("--trim-beta", type=_number(ge=0, le=0.49), default=None,
                   help="trimmed: fraction cut from each end (default 0.2)")
    f.add_argument("--secagg", action="store_true",
                   help="aggregate with Flower's SecAgg+ (fedavg only)")
    f.add_argument("--traces", default=None,
                   help="alibaba-by-type: the folder holding alibaba-openb-2023/ "
                        "(default ../shared/workloads)")
    f.add_argument("--max-nodes", type=_whole(ge=4, le=100_000), default=None,
                   help="alibaba-by-type: most nodes per organisation (default 8)")
    f.add_argument("--setup-load", type=_number(gt=0, le=10), default=None,
                   help="alibaba-by-type: offered load of each organisation's pods (default 10)")
    t.set_defaults(fn=cli_train.cmd_train)

    e = sub.add_parser("evaluate", help="a checkpoint side by side with every baseline")
    _scenario_args(e)
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--seeds", type=_seeds, default=5,
                   help=f"seeds 0..N-1 (N <= {MAX_SEEDS:,})")
    e.add_argument("--policies", type=_policies_arg, default=None,
                   help="baselines to compare, comma-separated, each once (default: all)")
    e.add_argument("--comm", default=None, choices=["trigger", "always", "none"])
    e.add_argument("--threshold", type=_threshold, default=None,
                   help="override the send trigger's threshold (>= 0)")
    e.add_argument("--json", action="store_true", help="print machine-readable JSON")
    e.set_defaults(fn=cli_sim.cmd_evaluate)

    cli_coordinator.register(sub)     # keys, coordinator, schedule get|watch, status
    cli_up.register(sub)              # replay, up, down
    cli_jobs.register(sub)            # submit, jobs, logs, cancel
    cli_sites.register(sub)           # site key|admit|remove|list

    k = sub.add_parser("certs", help="a private CA and a TLS certificate per site and replica")
    k.add_argument("--sites", default="", help="comma-separated site names")
    k.add_argument("--replicas", type=_whole(ge=0, le=MAX_REPLICAS), default=4)
    k.add_argument("--hosts", default="localhost,127.0.0.1",
                   help="comma-separated DNS names / IPs the certificates are valid for")
    k.add_argument("--days", type=_whole(ge=1, le=MAX_CERT_DAYS), default=365)
    k.add_argument("--out", required=True, help="directory for ca.crt and <name>.crt/.key")
    k.add_argument("--force", action="store_true",
                   help="replace a CA already in --out (every certificate it signed stops "
                        "being trusted)")
    k.add_argument("--json", action="store_true", help="print machine-readable JSON")
    k.set_defaults(fn=cmd_certs)
    return show_defaults(p)


HOST = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
"""a DNS name (a leading ``*.`` wildcard allowed); IP addresses are checked by ``ipaddress``"""


def _is_host(h: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:              # digits and dots only: a malformed IPv4 (999.1.1.1)
        return (len(h) <= 253 and HOST.fullmatch(h) is not None
                and re.fullmatch(r"[0-9.]+", h) is None)


def cmd_certs(a: argparse.Namespace) -> int:
    from agora.deploy.certs import make_all
    from agora.agents.limits import site_name_problem

    check_replicas(a.replicas)       # as agora keys (a probe: 0 was taken)
    sites = [s.strip() for s in a.sites.split(",") if s.strip()]
    hosts = [h.strip() for h in a.hosts.split(",") if h.strip()]
    for s in sites:            # a site's name names its files (site-<name>.key)
        if (why := site_name_problem(s)) is not None:
            raise ValueError(f"--sites: {why}; expected site names of 1-64 letters, digits, "
                             f"'.', '_' or '-', starting with a letter or digit")
    if len(set(sites)) != len(sites):
        raise ValueError(f"--sites: {a.sites!r} names a site twice; expected distinct names")
    if not hosts:            # a probe: server certificates valid for no host were written
        raise ValueError(f"--hosts: {a.hosts!r} names no host; expected comma-separated DNS "
                         f"names or IP addresses the replicas are reached at")
    for h in hosts:
        if not _is_host(h):
            raise ValueError(f"--hosts: {h[:80]!r} is neither a DNS name nor an IP address")
    if (Path(a.out) / "ca.crt").exists() and not a.force:
        raise ValueError(f"--out: {a.out} holds a CA already (ca.crt): a new one would leave "
                         f"every certificate it signed untrusted; expected a new folder, or "
                         f"--force to replace it")
    made = make_all(Path(a.out), sites, a.replicas, hosts, a.days)
    if a.json:
        print(json.dumps({"out": str(a.out), "certificates": [
            {"name": m.name, "cert": str(m.cert), "key": str(m.key)} for m in made]}, indent=1))
        return 0
    print(f"wrote {len(made)} certificates to {a.out}: {', '.join(m.name for m in made)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. A user sees one line, never a traceback: bad input exits 2 (the
    coordinator's INVALID_ARGUMENT too), a system that is not running or refuses exits 1,
    Ctrl-C 130."""
    if signal.getsignal(signal.SIGINT) is _interrupted_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run(argv)
    except KeyboardInterrupt:       # while it starts: the imports below, the parser
        print("agora: interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str] | None) -> int:
    import grpc

    from agora.coordinator.client import CoordinatorError
    from agora.deploy.api_args import ArgFileError, ArgTypeError, ArgValueError
    from agora.deploy.service_client import NotRunning, check_client

    a = parser().parse_args(argv)
    name = f"agora {a.command}" if getattr(a, "command", None) else "agora"
    # SIGTERM (timeout, kill, a batch scheduler) stops a command as Ctrl-C does, saying so:
    # agora train died without a word (a review). Commands that serve put their own in place.
    terminate = sigterm_as_interrupt()
    try:
        if hasattr(a, "client") and hasattr(a, "keys"):
            check_client(a.client, a.keys)    # before "nothing is running" (a probe)
        return a.fn(a)
    except (ArgTypeError, ArgValueError, ArgFileError) as e:   # the API's check of a flag
        flag = "--" + e.arg.replace("_", "-")
        print(f"{name}: {flag}: {str(e).removeprefix(e.arg + ': ')}", file=sys.stderr)
        return 2
    except (InputError, ValueError, FileNotFoundError) as e:
        if isinstance(e, FileNotFoundError) and e.filename and e.strerror:
            # the system's own (it names the path): as any path that cannot be written
            print(f"{name}: {_path_problem(e)}", file=sys.stderr)
            return 2
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except NotRunning as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except CoordinatorError as e:
        print(f"{name}: the coordinator refused: {e.code.name}: {e.message}", file=sys.stderr)
        # bad input exits 2 wherever it is found (a probe: agora site remove '' exited 1)
        return 2 if e.code == grpc.StatusCode.INVALID_ARGUMENT else 1
    except KeyboardInterrupt as e:
        if e.args == ("SIGTERM",):
            print(f"{name}: stopped by SIGTERM", file=sys.stderr)
            return 143
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (agora jobs | head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        # a file or folder it was given cannot be read or written (permissions, a file
        # where a folder should be, a full disk): name it, without a traceback
        print(f"{name}: {_path_problem(e)}", file=sys.stderr)
        return 2
    finally:
        terminate()


def _path_problem(e: OSError) -> str:
    """A file or folder the command was given that cannot be read or written, in one line
    naming it (when the error does) and what would be right."""
    if e.filename and isinstance(e, (FileExistsError, NotADirectoryError)):
        # a folder was to be made where a file is (a probe: "File exists")
        return (f"{e.filename}: a file is in the way ({e.strerror}); expected a folder, or a "
                f"path where one can be made")
    if e.filename:
        return (f"{e.filename}: {e.strerror or e}; expected a path this user can read and "
                f"write")
    return f"{e.strerror or e}"


if __name__ == "__main__":
    sys.exit(main())
