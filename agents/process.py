"""Child processes that do not outlive their parent.

An instance whose Ray worker or node went away, a replica whose ``agora up`` (or test) was
killed, must not run on unwatched: the child asks Linux for SIGKILL when the thread that
started it ends (``prctl(PR_SET_PDEATHSIG)``). It asks from a tiny Python launcher that then
``exec``s the command, not from a ``preexec_fn``: a ``preexec_fn`` makes ``subprocess`` use a
plain ``fork()`` and run Python in the child before ``exec``, which in a process with gRPC
threads runs gRPC's fork handlers in the child -- CI saw a restarted replica die there, before
its ``exec``, with "epoll_wait error: Bad file descriptor" (2026-12-01). Without a
``preexec_fn``, ``subprocess`` spawns with ``vfork``/``exec`` and runs no Python in between.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager

_LAUNCHER = """\
import ctypes, os, sys
try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sys.argv[2]))   # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass                                              # no glibc: run unbound, as before
else:
    if os.getppid() != int(sys.argv[1]):
        os._exit(137)                                 # the parent is already gone
report = os.environ.pop("AGORA_START_REPORT", None)     # not the command's
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as e:
    why = f"cannot start {sys.argv[3]!r}: {e.strerror or e}"
    sys.stderr.write(why + "\\n")
    if report:
        try:
            with open(report, "w") as f:
                f.write(why)
        except OSError:
            pass
    os._exit(127 if isinstance(e, FileNotFoundError) else 126)
"""

START_REPORT = "AGORA_START_REPORT"
"""Environment variable naming a file where the launcher (``bound_to_parent``) writes why
the command could not be ``exec``'d (an exec format error, ...); removed from the command's
own environment."""


def bound_to_parent(argv: Sequence[str], death_signal: int = 9) -> list[str]:
    """``argv`` wrapped so that the command, once started, gets ``death_signal`` (SIGKILL;
    SIGTERM for one that must stop what it started itself) when the thread that started it
    ends (its pid is the command's: the launcher ``exec``s it). A launcher that cannot start
    the command exits 127 (not found) or 126 with a line on stderr. Linux only: elsewhere
    ``argv`` as it is."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()),
            str(int(death_signal)), *argv]


def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m module args`` with this interpreter, without
    the current folder on ``sys.path`` (``-P``): started from a folder that holds an
    ``agora`` folder of its own (a checkout's parent, a run's output), ``python -m agora...``
    imported that folder instead of the package (a probe: ``agora up --detach`` failed with
    "cannot import name 'IMPORT_ROOT' from 'agora'")."""
    return [sys.executable, "-P", "-m", module, *args]


def cannot_start(program: str, env: Mapping[str, str], cwd: str) -> OSError | None:
    """Why ``program`` (``argv[0]``) could not be ``exec``'d from ``cwd`` with ``env``'s
    PATH, as the OSError ``subprocess.Popen`` would raise (a ``cwd`` that is no folder: its
    ``filename`` is ``cwd``); None when it looks startable. Checked before a bound start,
    whose launcher can only exit non-zero."""
    if not os.path.isdir(cwd):
        no = errno.ENOTDIR if os.path.exists(cwd) else errno.ENOENT
        return (NotADirectoryError if no == errno.ENOTDIR else FileNotFoundError)(
            no, os.strerror(no), cwd)
    if os.sep in program:
        path = os.path.join(cwd, program)
        if not os.path.exists(path):
            return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        return None
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return None


def start_failure(program: str, cwd: str, e: OSError) -> str:
    """The reason a run that could not start reports: the program, or the folder it was to
    start in when that is what is missing (not the program it never looked for)."""
    where = f"its cwd {cwd!r}: " if e.filename == cwd and program != cwd else ""
    return f"cannot start {program!r}: {where}{e.strerror or e}"


_held = [0]
"""runs this process waits on (``holding``): ``exit_with_parent`` lets them end first"""
_held_lock = threading.Lock()


@contextmanager
def holding():
    """While inside, ``exit_with_parent`` does not end this process: a run's Ray worker
    whose raylet died first fences its run itself (``instance_run.wait_fenced``: kills the
    command's group and records the run lost)."""
    with _held_lock:
        _held[0] += 1
    try:
        yield
    finally:
        with _held_lock:
            _held[0] -= 1


def exit_with_parent(every_s: float = 1.0) -> threading.Thread:
    """End this process (exit status 1) once its parent is gone and nothing is ``holding``
    it. In a Ray worker the parent is its node's raylet: an actor outliving it runs for a
    dead node -- a re-probe: a dead node's site agent and runner lived on (~0.5 GB) beside
    the ones Ray and ``agora up`` started again. Looks every ``every_s`` seconds, from a
    daemon thread."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent or _held[0]:
            time.sleep(every_s)
        os._exit(1)

    t = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    t.start()
    return t


def end_with_raylet() -> None:
    """Every Ray worker's setup (``worker_process_setup_hook`` of the Ray ``agora up`` and
    ``agora replay`` use, ``deploy/ray_runtime.py``): a worker ends once its raylet is gone.
    Ray's own idle workers outlived a dead raylet for good (5 of 5 after 8 s, a raylet
    SIGKILLed on a local two-node Ray, 2026-12-04; ~100 MB each)."""
    exit_with_parent()


def in_ray_worker() -> bool:
    """Does this code run in a Ray worker process (an actor or a task), not a driver?"""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE


def proc_files(name: str):
    """(pid, bytes of /proc/<pid>/``name``) of every process this user can read (Linux);
    None when there is no /proc."""
    try:
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return None
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                out.append((pid, f.read()))
        except OSError:
            continue
    return out


def stat_fields(stat: bytes) -> list[bytes]:
    """The fields of a /proc/<pid>/stat after the command's name: [state, ppid, pgrp, ...,
    start time at index 19]."""
    return stat.rsplit(b")", 1)[-1].split()


def process_table() -> dict[int, tuple[int, bytes, bytes]]:
    """pid -> (parent pid, state, start time) of every process /proc shows, read in one scan
    (a walk that scanned /proc once per process it visited read it ~70 times over to kill
    one service); {} without /proc."""
    table = {}
    for pid, stat in proc_files("stat") or ():
        fields = stat_fields(stat)
        table[pid] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(roots, table: dict[int, tuple[int, bytes, bytes]]) -> list[int]:
    """``roots`` that ``table`` (``process_table``) holds and every process under them."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = [r for r in dict.fromkeys(roots) if r in table]
    seen, todo = set(found), list(found)
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in seen:
                seen.add(c)
                found.append(c)
                todo.append(c)
    return found


def niced(command: list[str], niceness: int) -> list[str]:
    """``command`` started through ``nice`` when it is to run nicer than this worker, so that
    it execs at its niceness and whatever it starts inherits it (a review: raised from here
    once started, a command that forks at once could leave children at the worker's).
    ``command`` itself when there is nothing to raise or no ``nice`` here."""
    lift = niceness - os.getpriority(os.PRIO_PROCESS, 0)
    tool = shutil.which("nice") if lift > 0 else None
    return [tool, "-n", str(lift), *command] if tool else command


def nicer(pid: int, niceness: int) -> None:
    """Raise process ``pid``'s niceness to ``niceness`` (never lower it: that needs
    privileges, and a worker Ray started nicer keeps its runs as nice), where ``niced``
    could not (no ``nice`` on the node). A process already gone is left."""
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < niceness:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except (ProcessLookupError, PermissionError):
        pass
