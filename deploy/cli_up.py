"""``agora up`` / ``agora down`` (the live service, ``deploy/live.py``) and ``agora replay``
(the cluster engine with simulated executors on a scaled wall clock, ``deploy/replay.py``)."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path

from agora.deploy import json_out
from agora.deploy.service_client import DEFAULT_UP_CONFIG

DEFAULT_REPLAY_CONFIG = str(Path(__file__).parent / "configs" / "local.yaml")
"""the embedded ``deploy/configs/local.yaml``, found from the installed package (not the
current folder), as ``agora up``'s default is"""


def _load(a: argparse.Namespace):
    from agora.deploy.up_config import load_up_config

    cfg = load_up_config(a.config)
    if getattr(a, "out", None):
        cfg = replace(cfg, out=Path(a.out).resolve())
    return cfg


def cmd_replay(a: argparse.Namespace) -> int:
    from agora.deploy.replay import replay

    cfg = _load(a)
    if a.workload:
        cfg = replace(cfg, workload=a.workload)
    if a.speed is not None:
        if not 1e-3 <= a.speed <= 1e6:           # also nan and inf
            raise ValueError(f"--speed: {a.speed}; expected a number >= 0.001 and <= "
                             f"1,000,000 (workload seconds per wall-clock second), as the "
                             f"config's speed")
        cfg = replace(cfg, speed=a.speed)
    echo = (lambda *x, **k: print(*x, file=sys.stderr, **k)) if a.json else print
    terminated = []

    def on_sigterm(signum, _frame):
        if terminated:          # stopping already: a second SIGTERM must not cut the close
            return
        terminated.append(signum)
        raise KeyboardInterrupt("SIGTERM")

    def sigterm_stops():
        # SIGTERM (timeout, kill, a batch scheduler) stops a replay as Ctrl-C does: Ray's
        # driver took it with a native stack dump and no word of the stop (a probe); Ray
        # puts its own handler in place as it starts, so this is put back after it
        signal.signal(signal.SIGTERM, on_sigterm)
    sigterm_stops()
    try:
        result = replay(cfg, echo=echo, progress=not a.json, after_ray=sigterm_stops)
    except KeyboardInterrupt:
        how = "stopped by SIGTERM" if terminated else "interrupted"
        print(f"agora {a.cmd}: {how}; the system was stopped", file=sys.stderr)
        return 143 if terminated else 130
    if a.json:
        print(json_out.dumps({k: v for k, v in result.items()}, indent=1, default=str))
    return 0 if result["metrics"]["tasks_lost"] == 0 else 1


def cmd_up(a: argparse.Namespace) -> int:
    from agora.deploy import live

    cfg = _load(a)
    # resumed only on the cluster it began with: refused here, one line and exit 2, before
    # anything starts or detaches (the service checks again as it starts)
    from agora.deploy.cluster_record import check, rules

    folder = Path(cfg.out) / "coordinator"
    check(folder, cfg.load_cluster(), str(cfg.cluster), rules(dict(cfg.coordinator), folder))
    if not a.supervised:
        _before_start(cfg)
    if a.detach:
        return live.detach(cfg, a.config)
    if a.supervised:                    # the child of the keeper below (deploy/supervise.py)
        from agora.deploy.supervise import keeper_of_this_process

        return live.serve(cfg, keeper=keeper_of_this_process())
    if cfg.restarts == 0:
        return live.serve(cfg)
    from agora.agents.process import python_module
    from agora.deploy.supervise import SUPERVISED, supervise

    return supervise(cfg, python_module("agora.deploy.cli", "up", "--config", a.config,
                                        SUPERVISED))


def _before_start(cfg) -> None:
    """What would fail only once the service starts, told first, naming its field, exit 2 (a
    probe: a policy file that is no checkpoint, or a replica_host that does not resolve or is
    not this machine's, failed after the keeper started, exit 1, no field): a state made by
    a larger group is refused, the policy is read as the agents read it, and the replicas'
    host is bound once."""
    import re
    import socket

    from agora.deploy.up_config import UpConfigError

    data = Path(cfg.out) / "coordinator" / "data"
    names = [f.name for f in data.glob("replica-*.sqlite")] if data.is_dir() else []
    held = sorted(int(m.group(1)) for m in (re.fullmatch(r"replica-(\d+)\.sqlite", n)
                                            for n in names) if m)
    if held and held[-1] >= cfg.replicas:
        # a probe: a 7-replica state resumed as 4 replicas without a word, the logs of
        # replicas 4-6 abandoned (a group's quorums are its size's)
        raise UpConfigError(path=cfg.source, line=None, field="replicas",
                            problem=f"{cfg.replicas}, and {data} holds the logs of replicas "
                                    f"up to {held[-1]}: the state was made by a group of "
                                    f"{held[-1] + 1} or more",
                            expected=f"replicas: {held[-1] + 1} (the state's group), or a "
                                     f"fresh out for another group size")
    if held:
        for line in _rebuildable(cfg.replicas, data):
            print(f"agora up: {line}; it starts empty and catches up from its peers",
                  file=sys.stderr)
    cfg.acting_policy()
    host = cfg.replica_host
    if host is None:
        return
    try:
        # IPv4, as the replicas' ports are picked (deploy/local_group.free_ports): a name
        # whose first answer is an unusable IPv6 address is not refused (a review)
        infos = socket.getaddrinfo(host, 0, socket.AF_INET, socket.SOCK_STREAM)
        problem: OSError | None = None
        for family, _, _, _, address in infos:
            try:
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.bind(address)
                return
            except OSError as e:
                problem = e
        raise problem or OSError("no IPv4 address")
    except (OSError, UnicodeError) as e:
        raise UpConfigError(path=cfg.source, line=None, field="replica_host",
                            problem=f"{host!r}: the replicas cannot listen there "
                                    f"({getattr(e, 'strerror', None) or e})",
                            expected="a name or address of this machine, e.g. 127.0.0.1, or "
                                     "null") from None


def _rebuildable(n: int, data: Path) -> list[str]:
    """Refuse a start where more than f replicas have no usable log (missing, unreadable, or
    empty) while the others have executed requests: PBFT rebuilds a replica from its peers,
    at most f of them at once. A probe moved two damaged logs aside, one at a time, as the
    replicas' own message advises: the service said it was up and never committed again.
    Returns the replicas that start empty (no log, or an empty one: at most f), one line
    each, for the start to say; one with an unreadable log refuses to start, saying what to
    do."""
    import sqlite3

    from agora.coordinator.offline import executed_of

    f = (n - 1) // 3
    done: dict[int, int] = {}
    lost: list[tuple[str, bool]] = []     # (its line, whether it starts empty)
    for i in range(n):
        db = data / f"replica-{i}.sqlite"
        try:
            done[i] = executed_of(db)
        except FileNotFoundError:
            lost.append((f"replica {i}: no log", True))
        except (sqlite3.Error, OSError, ValueError) as e:
            lost.append((f"replica {i}: an unreadable log "
                         f"({' '.join(str(e).split())[:80]})", False))
    most = max(done.values(), default=0)
    lost += [(f"replica {i}: an empty log", True) for i, x in done.items()
             if x == 0 and most > 0]
    if most > 0 and len(lost) > f:
        have = [i for i, x in done.items() if x > 0]
        said = "; ".join(line for line, _ in lost)
        raise ValueError(f"{data}: {len(lost)} replicas have no usable log ({said}) "
                         f"while replicas {', '.join(map(str, have))} executed up to sequence "
                         f"{most}; a group of {n} rebuilds at most f = {f} from its peers: "
                         f"expected at most {f} without its log -- put the others back (the "
                         f".damaged file moved aside, or a backup), or start a new state under "
                         f"another out")
    return [line for line, fresh in lost if fresh] if most > 0 else []


def cmd_down(a: argparse.Namespace) -> int:
    from agora.deploy import live

    return live.down(_load(a), a.config)


def register(sub) -> None:
    r = sub.add_parser("replay", help="replay a workload through the cluster engine: "
                       "autonomous site agents on Ray, the PBFT coordinator, simulated "
                       "executors on a scaled wall clock")
    r.add_argument("--config", default=DEFAULT_REPLAY_CONFIG,
                   help="the run's YAML (default: the embedded %(default)s)")
    r.add_argument("--workload", help="the workload (overrides the config's workload)")
    r.add_argument("--speed", type=float, default=None,
                   help="workload seconds per wall-clock second (overrides the config's)")
    r.add_argument("--out", help="output folder (overrides the config's out)")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.set_defaults(fn=cmd_replay, cmd="replay")

    u = sub.add_parser("up", help="run Agora: coordinator replicas, a runner per node and an "
                       "agent per site on Ray, until Ctrl-C or agora down")
    u.add_argument("--config", default=DEFAULT_UP_CONFIG,
                   help="the system's YAML (default: the embedded %(default)s)")
    u.add_argument("--detach", action="store_true",
                   help="run in the background; return once it serves")
    u.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    u.set_defaults(fn=cmd_up, cmd="up")

    d = sub.add_parser("down", help="stop the Agora that agora up --config runs")
    d.add_argument("--config", default=DEFAULT_UP_CONFIG,
                   help="the system's YAML (default: %(default)s)")
    d.set_defaults(fn=cmd_down, cmd="down")
