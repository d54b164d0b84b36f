"""``agora up``'s keeper: the service runs in a child process, and a child that dies without
having been asked to stop is started again, from its state, a bounded number of times.

Why: the serving process is a Ray driver, and Ray ends a driver whose raylet died at once,
with no clean-up (measured: ~35 s after the head raylet was killed). The replicas went with
it (they are bound to it, ``agents/process.py``), Ray's per-node agents stayed behind
(~870 MB), ``agora.pid`` and ``ready.json`` stayed, and the scheduler was simply gone, with
nothing said about it (a soak of ``agora up``, 2026-12-03).

Now the ``agora up`` process (foreground or ``--detach``) is this keeper. It never imports
Ray. It owns ``agora.pid`` (what ``agora down`` signals) and starts ``agora up --supervised``
as its child, in a process group of its own, bound to it (a keeper killed takes its service
with it, as before). SIGTERM and SIGINT are passed on to the child, which stops as
``agora up`` always did. The keeper is the children's subreaper (Linux): whatever the child
started and left behind when it died -- Ray's processes, replicas, runners' work -- becomes
the keeper's, and is killed before the next start. A child that exits without a stop asked:

- after it served (its ``ready.json`` named it): said in one line, ready.json removed, its
  leftovers killed, started again after a back-off -- its state (the replicas' logs, the
  runs' folders) is on disk and it resumes it as ``agora up`` does after a crash; at most
  ``restarts`` times in any hour (``UpConfig.restarts``), then the keeper gives up;
- before it ever served: not started again (a configuration or environment error would
  fail again), unless it was itself a restart, which counts against the same budget.

A serving child that hangs (stopped, deadlocked: it touches ``out/alive`` at every progress
line) is killed after ``HANG_S`` and then treated as one that died.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from agora.agents.process import descendants, process_table
from agora.deploy import pid_file

SUPERVISED = "--supervised"
"""the hidden flag of ``agora up`` that makes it the keeper's child (``live.serve``)"""
KEEPER_ENV = "AGORA_KEEPER"
"""the keeper's pid, in its child's environment (``keeper_of_this_process``)"""
WINDOW_S = 3600.0
"""``restarts`` counts the restarts within this many seconds"""
PR_SET_CHILD_SUBREAPER = 36
REAP_EVERY = 10
"""polls between two collections of the orphans that died while the service runs"""
HANG_S = 120.0
"""a serving child that has not touched its ``alive`` file (every progress line, 2 s) for
this long is hung (stopped, deadlocked) and is killed, then started again"""


class _Signals:
    """SIGINT and SIGTERM: a stop is asked, and the signal is passed on to the child."""

    def __init__(self, out: Path | None = None) -> None:
        self.asked: str | None = None
        self.child: subprocess.Popen | None = None
        self.event = threading.Event()
        self.out = out
        """where a stop asked is written (``service_files.STOPPING``): commands then tell
        it from a restart (a probe: during agora down they said it was starting again)"""

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on)

    def _on(self, signum, _frame) -> None:
        self.asked = signal.Signals(signum).name
        if self.out is not None:
            from agora.deploy.service_files import STOPPING

            try:
                (self.out / STOPPING).write_text(f"{os.getpid()}\n")
            except OSError:          # a full or read-only disk: the stop goes on
                pass
        child = self.child
        if child is not None and child.poll() is None:
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass
        # as live._Stop: set from a thread, never from the handler (the main thread may be
        # inside event.wait() holding the event's lock)
        threading.Thread(target=self.event.set, daemon=True).start()


def keeper_of_this_process() -> int:
    """The pid of the keeper that started this process (``agora up --supervised``). Started
    otherwise -- by hand, its parent a shell -- it would name that shell as the service's
    owner in ready.json: refused (ValueError, one line)."""
    parent = os.getppid()
    if os.environ.get(KEEPER_ENV) != str(parent):
        raise ValueError(f"{SUPERVISED}: agora up's own flag for the service it keeps; "
                         f"expected agora up --config FILE without it")
    return parent


def _become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1) == 0
    except (OSError, AttributeError):
        return False


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux's /proc; [] elsewhere)."""
    return [p for p, (parent, _state, _start) in process_table().items() if parent == pid]


def tree(roots: list[int]) -> list[int]:
    """``roots`` and every process under them that still runs (not zombies)."""
    table = process_table()
    return [p for p in descendants(roots, table) if table[p][1] != b"Z"]


def kill_tree(roots: list[int]) -> int:
    """Stop, then kill, ``roots`` and everything under them; how many. Stopped first, all of
    them: a runner killed after the command it watched would have recorded that command's
    death as a failed attempt."""
    pids = tree(roots)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    return len(pids)


def kill_orphans(keep: int | None = None, settle_s: float = 3.0) -> int:
    """Kill every process this keeper inherited (as subreaper) and everything under them,
    except ``keep`` (the running child), looking again until none is left or ``settle_s``
    passed (a process orphaned after the first look -- its parent killed in it -- was missed
    and ran on beside the next service: a probe); reap the dead; how many were killed."""
    killed, deadline = 0, time.monotonic() + settle_s
    while True:
        orphans = [p for p in children_of(os.getpid()) if p != keep]
        alive = tree(orphans)
        if alive:
            killed += kill_tree(alive)
        reap(keep)
        if not alive or time.monotonic() > deadline:
            return killed
        time.sleep(0.05)


def reap(keep: int | None = None) -> None:
    """Collect this process's dead children other than ``keep`` (orphans it inherited)."""
    for pid in children_of(os.getpid()):
        if pid == keep:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _served_by(ready: Path, child_pid: int) -> bool:
    try:
        return json.loads(ready.read_text()).get("serving_pid") == child_pid
    except (OSError, ValueError, AttributeError):
        return False


def _how(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def _hung(alive: Path, hang_s: float) -> float | None:
    """Seconds since a serving child last touched ``alive``, when past ``hang_s``."""
    try:
        idle = time.time() - alive.stat().st_mtime
    except OSError:
        return None
    return idle if idle > hang_s else None


def supervise(cfg, argv: list[str], *, echo=None, backoff_s: float = 2.0,
              poll_s: float = 0.5, hang_s: float = HANG_S) -> int:
    """Keep the service of ``cfg`` (an ``UpConfig``) running as ``argv`` (the child's
    command line) until a stop is asked (see the module doc); the exit status."""
    from agora.agents.process import bound_to_parent
    from agora.deploy.service_files import ALIVE, PID, READY, STOPPING, already_running

    say = echo or (lambda *a, **k: print(*a, **k, flush=True))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    refusal = already_running(out, cfg.source, os.getpid(), claim=True)
    if refusal is not None:
        say(refusal, file=sys.stderr)
        return 1
    pid_file.write(out / PID)
    (out / STOPPING).unlink(missing_ok=True)      # an earlier keeper's
    sig = _Signals(out)
    sig.install()
    subreaper = _become_subreaper()
    recent: deque[float] = deque()
    restarted = False
    try:
        while True:
            # SIGTERM when the keeper dies (SIGKILL, the OOM killer): the service stops as on
            # agora down, Ray with it (SIGKILLed, it left Ray's processes running: a probe)
            # the service holds agora.lock too (the same open file): its keeper killed
            # before it served, it still starts, and no second agora up may start beside it
            child = subprocess.Popen(bound_to_parent(argv, signal.SIGTERM),
                                     stdin=subprocess.DEVNULL, pass_fds=pid_file.claims(),
                                     process_group=0,
                                     env={**os.environ, KEEPER_ENV: str(os.getpid())})
            sig.child = child
            started = time.monotonic()
            served = False
            if sig.asked:                        # a stop asked while it was being started
                os.kill(child.pid, signal.SIGTERM)
            polls = 0
            (out / ALIVE).unlink(missing_ok=True)
            while child.poll() is None:
                sig.event.wait(poll_s)
                served = served or _served_by(out / READY, child.pid)
                idle = _hung(out / ALIVE, hang_s) if served and not sig.asked else None
                if idle is not None:
                    say(f"agora up: the service (pid {child.pid}) has not gone on for "
                        f"{idle:.0f} s (hung: stopped or deadlocked); killing it",
                        file=sys.stderr)
                    kill_tree([child.pid])
                    child.wait()
                    break
                polls += 1
                if subreaper and polls % REAP_EVERY == 0:   # a scan of /proc: not each poll
                    reap(child.pid)
            rc = child.returncode
            if sig.asked:                       # its own stop; or killed by the signal
                return rc if rc > 0 else 0      # before it could catch it
            if rc == 0:                         # stopped by a signal sent to it directly
                say(f"agora up: the service (pid {child.pid}) stopped on its own (a signal "
                    f"sent to it, not to agora up, pid {os.getpid()}); agora up stops too",
                    file=sys.stderr)
                return 0
            if _served_by(out / READY, child.pid):
                (out / READY).unlink(missing_ok=True)
                served = True
            killed = kill_orphans() if subreaper else 0
            left = f"; {killed} process(es) it left were killed" if killed else ""
            if not served and not restarted:
                say(f"agora up: the service could not start ({_how(rc)}); the lines above "
                    f"say why", file=sys.stderr)
                return rc if rc > 0 else 1
            now = time.monotonic()
            while recent and now - recent[0] > WINDOW_S:
                recent.popleft()
            what = (f"stopped unexpectedly ({_how(rc)}) after "
                    f"{now - started:.0f} s" + (" serving" if served else " starting"))
            if len(recent) >= cfg.restarts:
                say(f"agora up: the service {what}{left}; not started again: "
                    f"{len(recent)} restart(s) within the last hour already (restarts: "
                    f"{cfg.restarts}); its state stays in {out} (agora up resumes it)",
                    file=sys.stderr)
                return 1
            recent.append(now)
            say(f"agora up: the service {what}{left}; starting it again from its state in "
                f"{out} (restart {len(recent)} of at most {cfg.restarts} an hour)",
                file=sys.stderr)
            restarted = True
            if sig.event.wait(backoff_s * len(recent)) and sig.asked:
                return 0
    finally:
        if subreaper:
            kill_orphans(keep=None)
        if pid_file.mine(out / PID):
            (out / PID).unlink(missing_ok=True)
            (out / STOPPING).unlink(missing_ok=True)
