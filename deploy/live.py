"""``agora up`` / ``agora down``: Agora as a long-running service.

``agora up --config FILE`` starts the coordinator replicas (resuming the state under
``out/coordinator`` when there is one: their logs are the system's state), Ray (a local Ray,
a local multi-node Ray, or the cluster at ``ray.address``), a runner on every node and an
autonomous agent per site, then keeps running -- printing a progress line -- until Ctrl-C,
SIGTERM or ``agora down --config FILE``, and stops cleanly. ``--detach`` starts it in the
background and returns once it is ready.

Files under ``out``: ``agora.pid`` (the serving process), ``agora.lock``, ``ready.json``
(written once it serves: pid, config, coordinator config; ``service_files.py`` reads them),
``served`` (once it has served: the schedule has
begun), ``agora.log`` (a detached service's output),
``coordinator/`` (replica databases, keys, the coordinator config clients use), ``runs/``
(each instance's folder: its command's stdout and stderr, its end).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from agora.deploy import pid_file
from agora.deploy.live_progress import Follower, ProgressLine, QuorumWatch, stamp
from agora.deploy.service_files import (ALIVE, LOG, PID, READY, already_running,
                                        running_service, serving_process)

log = logging.getLogger("agora.live")

class _Stop:
    """SIGINT and SIGTERM set the event (the main thread then stops the system); while the
    system starts (``install(starting=True)``) they raise KeyboardInterrupt instead, so that a
    start-up blocked in Ray (workers being spawned, agents being admitted: minutes on a busy
    machine) stops at once -- an event nobody looked at until the start-up ended left a
    Ctrl-C there unanswered (a probe: 1 in 3 stops hung past 60 s)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: str | None = None
        self.starting = False

    def install(self, *, starting: bool = False) -> None:
        self.starting = starting
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on)

    def _on(self, signum, _frame) -> None:
        self.signal = signal.Signals(signum).name
        if self.starting:
            raise KeyboardInterrupt(self.signal)   # bring_up closes what it started
        # not event.set() here: the handler runs on the main thread, which may be inside
        # event.wait() holding the event's (non-reentrant) lock -- set() then waited for it
        # for ever (a probe's Ctrl-C, 1 in 5, never stopped agora up). A thread sets it as
        # soon as the main thread lets go.
        threading.Thread(target=self.event.set, name="agora-stop", daemon=True).start()


def serve(cfg, *, echo=print, progress_s: float = 2.0, keeper: int | None = None) -> int:
    """Run the live service of ``cfg`` (an ``UpConfig``) until stopped; the exit status.
    ``keeper``: the pid of the ``agora up`` that keeps this process (``deploy/supervise.py``):
    it owns ``agora.pid``, and ``ready.json`` names it (what ``agora down`` signals) and this
    process as ``serving_pid``."""
    from agora.agents.cluster.ray_executor import RayExecutorSpec
    from agora.deploy.launch import SERVED, ReplicaDidNotStart, bring_up
    from agora.deploy.observability import StepFailureWatch

    # warnings read as its other lines do (a probe: "WARNING:agora.deploy.ray_runtime:..."),
    # with the time (a probe could not place a replica's restart among a fault's lapses)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="agora up: %(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    said = StartWarnings()
    logging.getLogger().addHandler(said)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    refusal = already_running(out, cfg.source, os.getpid(), keeper, claim=keeper is None)
    if refusal is not None:
        echo(refusal, file=sys.stderr)
        return 1
    if keeper is None:
        pid_file.write(out / PID)
    (out / READY).unlink(missing_ok=True)
    stop = _Stop()
    stop.install(starting=True)
    system = view = None
    try:
        cluster = cfg.load_cluster()
        weights, pconf = cfg.acting_policy()
        spec = cfg.cluster if cfg.cluster == "default" else str(Path(cfg.cluster).resolve())
        resumed = (out / "coordinator" / "data").is_dir()
        echo(f"agora up: {len(cluster.sites)} sites, {len(cluster.nodes)} nodes, "
             f"{cfg.replicas} replicas; state {out}{' (resumed)' if resumed else ''}")
        if cfg.ray.address:     # a probe: which Ray it joined was said nowhere
            echo(f"agora up: joining the Ray cluster at {cfg.ray.address}")
        if cfg.run_as is None and os.geteuid() == 0:
            echo("agora up: jobs run as root, with the runners' rights (a job can read its "
                 "site's key); set run_as to an unprivileged user (docs/security.md)")
        t0 = time.perf_counter()
        # ray.init puts Ray's own SIGTERM handler in place of ours (a stack dump, then death:
        # `agora down` never reached the stop below, and agents, runners, Ray and the local
        # cluster's address file were left to die with the process or go stale): ours again
        # as soon as Ray is up, and once more when the system serves
        system = bring_up(cfg, cluster, spec, out, weights=weights, policy_config=pconf,
                          executor_spec=RayExecutorSpec(namespace="agora"), live=True,
                          after_ray=lambda: stop.install(starting=True))
        stop.install()
        if stop.event.is_set():
            return _stopped(system, out, echo, stop)
        owner = os.getpid() if keeper is None else keeper
        info = {"pid": owner, "pid_start": pid_file.start_ticks(owner),
                "serving_pid": os.getpid(), "serving_start": pid_file.start_ticks(os.getpid()),
                "config": str(cfg.source), "out": str(out),
                "coordinator": str(out / "coordinator" / "coordinator.yaml"),
                "sites": list(cluster.site_names), "started": time.time(),
                "start_warnings": said.close()}
        follower = Follower(system)
        found, view, targets = _observability(system, cluster, cfg, out, follower.state)
        info["start_warnings"] += found.pop("start_warnings")
        info.update(found)
        tmp = out / (READY + ".tmp")      # whole or not at all: its keeper reads it
        tmp.write_text(json.dumps(info))
        tmp.replace(out / READY)
        (out / SERVED).touch()
        if keeper is not None:
            (out / ALIVE).touch()
        show_addresses(info, echo)
        echo(f"Agora is up in {time.perf_counter() - t0:.0f} s. Submit jobs with: agora "
             f"submit JOBS.jsonl --config {cfg.source}; stop with Ctrl-C or agora down "
             f"--config {cfg.source}")
        line = ProgressLine(echo)
        watch = StepFailureWatch(system.actors, every_s=30.0)
        quorum = QuorumWatch(system)
        while not stop.event.wait(progress_s):
            if keeper is not None:
                if os.getppid() != keeper:
                    break
                (out / ALIVE).touch()
            line.show(follower.summary())
            if targets is not None:
                targets.poll()
            for warning in [*follower.drain(), *watch.poll(), *quorum.poll()]:
                echo(f"agora up: {stamp()} {warning}")
        why = None
        if keeper is not None and _keeper_gone(keeper, stop):
            # its keeper was killed (SIGKILL, the OOM killer): its parent-death SIGTERM (or
            # this look, where there is none) stops the service as agora down would
            why = f"its keeper, pid {keeper}, is gone"
            _forget_keeper(out, keeper)
        line.close()
        follower.close()
        return _stopped(system, out, echo, stop, view, why=why)
    except KeyboardInterrupt:
        return _stopped(system, out, echo, stop, view)
    except Exception as e:  # noqa: BLE001 - one line for the user, the rest in the log
        log.debug("agora up failed", exc_info=True)
        what = "stopped on an error" if (out / READY).is_file() else "could not start"
        # bad input, or a replica that did not start: its line as it is
        kind = "" if isinstance(e, (ValueError, ReplicaDidNotStart)) else \
            f"{type(e).__name__}: "
        echo(f"agora up: {what}: {kind}{e}", file=sys.stderr)
        _close(system, out, view)
        return 1
    finally:
        said.close()


class StartWarnings(logging.Handler):
    """The warnings logged while the service starts (the first ``most``), for ``ready.json``:
    ``agora up --detach`` prints them, since it shows no log. ``close()`` stops collecting
    and returns them."""

    def __init__(self, most: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.most = most

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < self.most:
            try:
                self.lines.append(record.getMessage())
            except Exception:  # noqa: BLE001 - a malformed record: not worth the start
                pass

    def close(self) -> list[str]:
        logging.getLogger().removeHandler(self)
        super().close()
        return list(self.lines)


def _keeper_gone(keeper: int, stop: _Stop, wait_s: float = 1.0) -> bool:
    """Is this process's keeper gone? A SIGTERM may be its parent-death signal, sent when
    the keeper's thread that started this process ended -- while its other threads still
    end, this process's parent is still the keeper's pid (a race the live test saw): after
    a SIGTERM, look again for up to ``wait_s``."""
    deadline = time.monotonic() + (wait_s if stop.signal == "SIGTERM" else 0.0)
    while os.getppid() == keeper:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _forget_keeper(out: Path, keeper: int) -> None:
    """Remove ``agora.pid`` when it names ``keeper`` (gone: the file is stale)."""
    got = pid_file.read(out / PID)
    if got is not None and got[0] == keeper:
        (out / PID).unlink(missing_ok=True)


def show_addresses(info: dict, echo) -> None:
    """The addresses a running service serves people at (``ready.json``), a line each."""
    for what, label in (("web", "web view"), ("dashboard", "Ray dashboard"),
                        ("prometheus", "prometheus")):
        if info.get(what):
            echo(f"  {label}: {info[what]}")


def _observability(system, cluster, cfg, out: Path, followed: dict):
    """({dashboard, prometheus, web}: addresses, the web view or None, the scrape targets'
    keeper or None): Ray's dashboard address, with metrics on the Prometheus files (kept
    current: ``ScrapeTargets``), with web on the live web view (each logged when it fails,
    never fatal: the scheduler runs without them)."""
    from agora.deploy.ray_runtime import dashboard_url

    found: dict = {"dashboard": dashboard_url(), "start_warnings": []}
    replicas: list[str] = []
    agents: dict[str, str] = {}
    targets = None
    if cfg.metrics.enabled:
        from agora.deploy.observability import (ScrapeTargets, system_targets,
                                                write_prometheus_files)
        try:
            replicas, agents = system_targets(system, cfg.metrics.host)
            folder = write_prometheus_files(out, replicas, agents)
            found["prometheus"] = str(folder / "prometheus.yml")
            targets = ScrapeTargets(system, cfg.metrics.host, out, replicas, agents)
        except Exception as e:  # noqa: BLE001
            found["start_warnings"].append(f"could not write the Prometheus scrape targets: "
                                           f"{e}")
            log.warning("%s", found["start_warnings"][-1])
    view = None
    if cfg.web.enabled:
        from agora.deploy.webview import WebView
        try:
            view = WebView(system, cluster, followed, out, replicas, agents)
            found["web"] = system.loop.run(view.start(cfg.web.host, cfg.web.port), 30)
        except Exception as e:  # noqa: BLE001
            # said where --detach prints the start's warnings too (a probe: in the log alone)
            found["start_warnings"].append(f"could not serve the web view on {cfg.web.host}:"
                                           f"{cfg.web.port}: {e}")
            log.warning("%s", found["start_warnings"][-1])
            view = None
    return found, view, targets


def _stopped(system, out: Path, echo, stop: _Stop, view=None, why: str | None = None) -> int:
    echo(f"agora up: stopping ({why or stop.signal or 'interrupted'}) ...", file=sys.stderr)
    _close(system, out, view)
    echo(f"agora up: stopped; the state stays in {out} (agora up resumes it, agora jobs "
         f"reads it)", file=sys.stderr)
    return 0


def _close(system, out: Path, view=None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)        # a second Ctrl-C must not cut the stop
    try:
        if view is not None:
            try:
                system.loop.run(view.stop(), 10)
            except Exception:  # noqa: BLE001 - the system must close all the same
                log.debug("stopping the web view failed", exc_info=True)
        if system is not None:
            system.close()
    except Exception:  # noqa: BLE001 - best effort on the way out
        log.debug("closing the system failed", exc_info=True)
    finally:
        if serving_process(out) in (None, os.getpid()):     # never another service's
            (out / READY).unlink(missing_ok=True)
        if pid_file.mine(out / PID):
            (out / PID).unlink(missing_ok=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT
                          else signal.SIG_DFL)


def detach(cfg, config_arg: str, *, timeout_s: float = 300.0) -> int:
    """Start ``agora up --config`` in the background (its output in ``out/agora.log``) and
    return once it serves."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    refusal = already_running(out, config_arg)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 1
    logf = open(out / LOG, "ab")
    from agora.agents.process import python_module

    p = subprocess.Popen(python_module("agora.deploy.cli", "up", "--config", config_arg),
                         stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                         start_new_session=True, cwd=os.getcwd())
    try:
        return _until_ready(p, out, config_arg, timeout_s)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM while it starts stops what it started, as without --detach (a
        # probe: this process said "stopped" and the service went on in its own session)
        print(f"agora up: stopping the service it started (pid {p.pid}) ...", file=sys.stderr,
              flush=True)
        _stop_started(p)
        raise


def _stop_started(p: subprocess.Popen, wait_s: float = 90.0) -> None:
    """SIGTERM to the keeper ``p`` (it stops what started, also while starting), SIGKILL to
    its session after ``wait_s``; a second Ctrl-C does not cut the wait short."""
    old = [signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        except ProcessLookupError:
            pass
    finally:
        for sig, handler in zip((signal.SIGINT, signal.SIGTERM), old):
            signal.signal(sig, handler)


def _until_ready(p: subprocess.Popen, out: Path, config_arg: str, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = running_service(out)
        if info is not None and info["pid"] == p.pid:
            print(f"Agora is up (pid {p.pid}, log {out / LOG}); agora down --config "
                  f"{config_arg} stops it")
            show_addresses(info, print)
            # what it warned of while starting (a node started down, a site without its
            # agent) was in the log alone (a probe)
            for line in info.get("start_warnings") or ():
                print(f"agora up: {line}", file=sys.stderr)
            return 0
        if p.poll() is not None:
            tail = (out / LOG).read_text(errors="replace").strip().splitlines()[-5:]
            print(f"agora up: the service exited ({p.returncode}) before it was ready; "
                  f"the end of {out / LOG}:", file=sys.stderr)
            for line in tail:
                print("  " + line, file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"agora up: not ready after {timeout_s:.0f} s (pid {p.pid} goes on starting; "
          f"see {out / LOG})", file=sys.stderr)
    return 1


def down(cfg, config_arg: str, *, timeout_s: float = 90.0) -> int:
    """Stop the service serving from ``cfg.out`` (SIGTERM, then SIGKILL after
    ``timeout_s``)."""
    out = Path(cfg.out)
    got = pid_file.read(out / PID)
    if got is None or not pid_file.same_process(*got):
        serving = serving_process(out)      # its keeper gone, the service runs on
        if serving is None:
            print(f"agora down: nothing is running from {out} (agora up --config "
                  f"{config_arg} starts it)")
            return 0
        got = (serving, pid_file.start_ticks(serving))
    pid = got[0]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid_file.same_process(*got):
        time.sleep(0.3)
    if pid_file.same_process(*got):
        # it and everything under it: killed alone, a keeper whose service hung left Ray's
        # agents (~850 MB), the runs and the pid files behind (a probe)
        from agora.deploy.supervise import kill_tree

        n = kill_tree([pid])
        (out / READY).unlink(missing_ok=True)
        (out / PID).unlink(missing_ok=True)
        print(f"agora down: pid {pid} did not stop in {timeout_s:.0f} s; killed it and the "
              f"{n - 1} process(es) under it", file=sys.stderr)
        return 1
    print(f"agora down: stopped pid {pid}; the state stays in {out}")
    return 0
