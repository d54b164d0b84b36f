"""The coordinator's sub-commands of ``agora`` (wired in by ``deploy/cli.py`` through
``register(subparsers)``):

    agora keys --replicas 4 --clients site:dc-east,site:dc-west --out keys.yaml
    agora coordinator --config deploy/configs/coordinator-local.yaml --replica 0
    agora schedule get [--site S | --job J | --task J/T | --since-version V]
    agora schedule watch [--since-version V]
    agora status

``schedule`` and ``status`` talk to a running group: an answer is printed once f+1 replicas
(2f+1 for the read-only fast path) gave it identically. They sign as ``--client`` (default
``operator``, which ``agora keys`` always adds) with its key from the key file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from agora.agents.limits import MAX_REPLICAS
from agora.deploy.arg_types import _whole, check_replicas
from agora.deploy.service_client import CLIENT_ID

VERSION = _whole(ge=0, le=2**63 - 1, text="a committed version, a whole number >= 0")

DEFAULT_CONFIG = str(Path(__file__).parent / "configs" / "coordinator-local.yaml")
OPERATOR = "operator"


def register(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("keys", help="generate the coordinator's replica and client keys")
    k.add_argument("--replicas", required=True, type=_whole(
        ge=1, le=MAX_REPLICAS, text=f"a whole number >= 1 and <= {MAX_REPLICAS} (3f+1: 1, 4, "
                                    f"7, 10, ...)"),
                   help="number of replicas, 3f+1")
    k.add_argument("--clients", default="",
                   help="comma-separated client ids, e.g. site:dc-east,site:dc-west "
                        f"('{OPERATOR}' is always added)")
    k.add_argument("--out", required=True, help="YAML file to write (mode 0600)")
    k.add_argument("--force", action="store_true",
                   help="replace an existing --out (its keys are lost for good)")
    k.add_argument("--json", action="store_true", help="print machine-readable JSON")
    k.set_defaults(fn=cmd_keys)

    c = sub.add_parser("coordinator", help="run one coordinator replica (PBFT over gRPC)")
    c.add_argument("--config", default=DEFAULT_CONFIG, help="coordinator YAML")
    c.add_argument("--replica", type=int, required=True, help="this replica's index, 0..n-1")
    c.add_argument("--log-level", default="INFO", type=str.upper,
                   choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                   help="how much the replica logs (default INFO)")
    c.add_argument("--byzantine", metavar="BEHAVIOUR", default=None,
                   help="fault harness only: this replica misbehaves (silent, equivocate, "
                   "double_vote, forge, wrong_digest, censor, ...)")
    c.set_defaults(fn=cmd_coordinator)

    s = sub.add_parser("schedule", help="read the committed global schedule")
    ssub = s.add_subparsers(dest="schedule_command", required=True)
    g = ssub.add_parser("get", help="allocations by site, job, task or version (default all)")
    _client_args(g)
    by = g.add_mutually_exclusive_group()
    by.add_argument("--site")
    by.add_argument("--job")
    by.add_argument("--task", metavar="JOB/TASK")
    by.add_argument("--since-version", type=VERSION, metavar="V",
                    help="allocations committed at or after version V")
    by.add_argument("--version", type=VERSION, metavar="V", dest="at_version",
                    help="the schedule as of version V: allocations committed at or before V")
    g.add_argument("--json", action="store_true", help="print machine-readable JSON")
    g.set_defaults(fn=_schedule("cmd_schedule_get"))
    w = ssub.add_parser("watch", help="stream committed changes (each confirmed by f+1)")
    _client_args(w)
    w.add_argument("--since-version", type=VERSION, default=0)
    w.add_argument("--count", type=_whole(ge=1), default=None,
                   help="stop after this many updates that allocate or change an "
                        "instance (each prints its lines)")
    w.add_argument("--json", action="store_true",
                   help="one JSON object per line (default: one readable line per change)")
    w.set_defaults(fn=_schedule("cmd_schedule_watch"))

    t = sub.add_parser("status", help="each replica's view, progress and counters")
    _client_args(t)
    t.add_argument("--json", action="store_true", help="print machine-readable JSON")
    t.set_defaults(fn=cmd_status)


def _schedule(name: str):
    """``deploy/cli_schedule.py``'s command ``name``, imported when it runs (that module
    imports this one)."""
    def run(a: argparse.Namespace) -> int:
        from agora.deploy import cli_schedule

        return getattr(cli_schedule, name)(a)
    return run


def _client_args(p: argparse.ArgumentParser) -> None:
    from agora.deploy.service_client import DEFAULT_UP_CONFIG

    p.add_argument("--config", default=DEFAULT_UP_CONFIG,
                   help="an agora up config (default: %(default)s) or a coordinator YAML")
    p.add_argument("--keys", default=None, help="key file (default: the config's keys_file)")
    p.add_argument("--client", default=OPERATOR, help="client id to sign as")


def _client(a: argparse.Namespace):
    """(coordinator config, client) of a serving system; ``NotRunning`` otherwise."""
    from agora.deploy.service_client import target

    t = target(a.config)
    if not t.serving():
        raise t.not_running()
    return t.coordinator, t.client(a.client, a.keys)


async def _check_answering(client) -> None:
    """``NotRunning`` unless f+1 replicas answer (a watch would otherwise wait forever)."""
    from agora.deploy.service_client import NotRunning

    statuses = await client.status()
    if sum(1 for s in statuses if not isinstance(s, str)) < client.f + 1:
        raise NotRunning(f"nothing answers at {', '.join(client.config.replicas)} (fewer "
                         f"than f+1 = {client.f + 1} replicas); start it with agora up")


def cmd_keys(a: argparse.Namespace) -> int:
    import yaml

    from agora.coordinator.pbft.keys import generate_keys

    check_replicas(a.replicas)
    clients = [c.strip() for c in a.clients.split(",") if c.strip()]
    if OPERATOR not in clients:
        clients.append(OPERATOR)
    if len(set(clients)) != len(clients):
        raise ValueError(f"--clients: {a.clients!r} names a client twice; expected distinct ids")
    for c in clients:
        if len(c) > 256 or not CLIENT_ID.fullmatch(c):
            raise ValueError(f"--clients: {c[:80]!r} is no client id; expected operator, "
                             f"site:<site name>, site:<site name>/<k> or auditor:<name> "
                             f"(names: 1-64 letters, digits, '.', '_', '-', starting with a "
                             f"letter or digit)")
    out = Path(a.out)
    if out.exists() and not out.is_file() and not out.is_dir():
        # a pipe, socket or device: the rename below replaced it (a review)
        raise ValueError(f"--out: {a.out} is not a regular file (a pipe, socket or device); "
                         f"expected the path of a key file to write")
    if out.is_file() and not a.force:    # a probe: a group's keys were replaced
        raise ValueError(f"--out: {a.out} exists (a group's keys: replacing them locks out "
                         f"every replica and client that has them); expected a new file, or "
                         f"--force to replace it")
    keys = generate_keys(a.replicas, clients)
    from agora.coordinator.private_file import write_private

    out = write_private(a.out, "# Agora coordinator keys: every secret of the group. Give "
                        "each process only its own\n# (KeySet.for_replica / for_client) "
                        "outside a single machine.\n"
                        + yaml.safe_dump(keys.to_dict(), sort_keys=True))
    if getattr(a, "json", False):
        print(json.dumps({"out": str(out), "replicas": a.replicas, "clients": clients,
                          "mode": "0600"}))
        return 0
    print(f"wrote {out}: {a.replicas} replicas, clients {', '.join(clients)}")
    return 0


def cmd_coordinator(a: argparse.Namespace) -> int:
    import logging

    from agora.coordinator.config import load_config
    from agora.coordinator.server import serve

    logging.basicConfig(level=a.log_level,
                        format="%(asctime)s replica %(name)s %(levelname)s %(message)s")
    cfg = load_config(a.config)
    _claim_replica(cfg, a.replica, a.config)
    print(f"coordinator config: {json.dumps(cfg.to_dict())}", file=sys.stderr)

    async def main() -> int:
        server = await serve(cfg, a.replica, byzantine=a.byzantine)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"replica {a.replica} serving on {cfg.replicas[a.replica]} as pid {os.getpid()} "
              f"(event loop: {type(loop).__module__.split('.')[0]})", file=sys.stderr,
              flush=True)
        ends = [asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(server.host.failed.wait())]
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        for e in ends:
            e.cancel()
        await server.stop()
        if server.host.failed.is_set():
            print(f"replica {a.replica} stopped: it could not go on (the log above says why); "
                  f"start it again: it recovers from its log", file=sys.stderr, flush=True)
            return 1
        return 0

    profile = os.environ.get("AGORA_PROFILE_DIR")
    if profile:  # where a replica's time goes (bench/coordinator_throughput.py --profile)
        import cProfile
        import time
        prof = cProfile.Profile(time.process_time)      # CPU time, not time waited
        try:
            return prof.runcall(run_event_loop, main())
        finally:
            prof.dump_stats(str(Path(profile) / f"replica-{a.replica}.prof"))
    return run_event_loop(main())


def _claim_replica(cfg, replica: int, config: str) -> None:
    """Hold replica ``replica``'s lock (``<data_dir>/replica-<i>.sqlite.lock``) for this
    process's life; ValueError when another process holds it. A replica started twice from
    one config served twice -- gRPC binds its port with SO_REUSEPORT, so the kernel split
    the clients between the two -- and both wrote its log: jobs each had accepted were
    missing from the other's answers and, after a restart, from the log (a review)."""
    from agora.deploy import pid_file

    if not 0 <= replica < cfg.n:
        return                      # serve() refuses it, naming --replica
    db = cfg.database(replica)
    db.parent.mkdir(parents=True, exist_ok=True)
    if not pid_file.claim(db.with_name(db.name + ".lock")):
        raise ValueError(f"--replica {replica}: {db} is in use by another process serving "
                         f"replica {replica} of {config}; expected one process per replica "
                         f"(stop that one first: two would split its clients and overwrite "
                         f"each other's log)")


def run_event_loop(coro) -> int:
    """Run a replica's ``coro`` on uvloop (libuv's event loop: its handles, timers and
    futures in C) when it is installed, else on asyncio's own loop; ``AGORA_EVENT_LOOP=asyncio``
    picks asyncio's. A replica's CPU per request is a third asyncio's bookkeeping -- a dozen
    callbacks and futures per message -- and on uvloop one client waits ~20% less
    (docs/benchmarks.md, "The replicas' event loop")."""
    if os.environ.get("AGORA_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            uvloop = None
        if uvloop is not None:
            return uvloop.run(coro)
    return asyncio.run(coro)


def cmd_status(a: argparse.Namespace) -> int:
    from agora.coordinator.queries import agreed_status
    from agora.deploy.service_client import target
    from agora.protos.plain import plain

    t = target(a.config)
    if not t.serving():
        if t.coordinator is not None:
            t.client(a.client, a.keys)  # its key and TLS files are told (named) even so
        return _offline_status(t, a.json)
    cfg, client = _client(a)

    async def main():
        async with client:
            return await client.status()

    statuses = asyncio.run(main())
    agreed = agreed_status(statuses, cfg.f)
    answering = sum(not isinstance(s, str) for s in statuses)
    can_commit = answering >= 2 * cfg.f + 1
    if a.json:
        print(json.dumps({"agreed": agreed, "can_commit": can_commit,
                          "replicas": [plain(s) if not isinstance(s, str) else {"error": s}
                                       for s in statuses]}, indent=1))
        return 0 if agreed and can_commit else 1
    print(f"coordinator: n={cfg.n} f={cfg.f}; agreed by f+1: " +
          (", ".join(f"{k}={v}" for k, v in agreed.items()) or "nothing (too few replicas)"))
    print(f"{'replica':>7} {'address':<20} {'view':>5} {'primary':>7} {'executed':>9} "
          f"{'committed':>9} {'stable':>7} {'round':>6} {'allocs':>7}  seen / rejected")
    for i, s in enumerate(statuses):
        if isinstance(s, str):
            print(f"{i:>7} {cfg.replicas[i]:<20} no answer (down, or too busy to answer "
                  f"in time): {s}")
            continue
        rej = ", ".join(f"{c.name}={c.count}" for c in s.rejected) or "-"
        print(f"{i:>7} {cfg.replicas[i]:<20} {s.view:>5} {s.primary:>7} {s.last_executed:>9} "
              f"{s.last_committed:>9} {s.stable_checkpoint:>7} {s.round:>6} "
              f"{s.allocations:>7}  {list(s.replicas_seen)} / {rej}")
    if not can_commit:     # a probe: "agreed by f+1" and exit 0 with two of four
        print(f"warning: {answering} of {cfg.n} replicas answer; ordering needs 2f+1 = "
              f"{2 * cfg.f + 1}: nothing new is committed until more answer")
    return 0 if agreed and can_commit else 1


def _offline_status(t, as_json: bool) -> int:
    """``agora status`` of an ``agora up`` that is not running: what each replica's log on
    disk holds and what f+1 of them agree on (a probe: only "nothing is running", where
    ``agora jobs`` and ``schedule get`` answer from the logs); exit 1, as nothing serves."""
    from agora.coordinator.offline import OfflineError, read_offline
    from agora.deploy.service_client import NotRunning

    pid = t.restarting()
    said = None if pid is None else \
        f"agora up (pid {pid}) is starting its service from {t.out}, not serving yet"
    starting = None if said is None else NotRunning(f"{said}: retry in a moment")
    if t.coordinator is None:
        raise starting or t.not_running()
    try:
        view = read_offline(t.coordinator)
    except OfflineError as e:
        if starting is not None:
            raise starting from None
        raise NotRunning(f"{t.not_running()} (and the replicas' logs agree on no state: "
                         f"{e})") from None
    if as_json:
        print(json.dumps({"offline": True, "version": view.version, "executed": view.executed,
                          "agreed_by": view.agreed, "replicas": [
                              {"replica": r.index, "status": r.status, "executed": r.executed,
                               "stable": r.stable, "detail": r.detail}
                              for r in view.replicas]}, indent=1))
        return 1
    where = (f"{said} (retry in a moment)" if said is not None else
             f"no agora up runs from {t.out}" if t.out is not None else
             f"no replica listens at {t.addresses}")
    print(f"offline: {where}; {view.describe()}")
    print(f"{'replica':>7} {'status':<12} {'executed':>9} {'stable':>7}  detail")
    for r in view.replicas:
        print(f"{r.index:>7} {r.status:<12} {r.executed if r.executed is not None else '-':>9} "
              f"{r.stable if r.stable is not None else '-':>7}  {r.detail}")
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run these sub-commands alone (``python -m agora.deploy.cli_coordinator ...``), as ``agora``
    does once it registers them."""
    from agora.agents.workloads.errors import InputError

    p = argparse.ArgumentParser(prog="agora", description="coordinator commands")
    register(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(argv)
    try:
        return a.fn(a)
    except (InputError, ValueError, OSError) as e:
        print(f"agora: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
