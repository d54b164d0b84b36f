"""The serving process's pid file (``out/agora.pid``), read so that a stale or forged one
can never make ``agora down`` signal another process.

The file holds ``PID START``: the pid and the process's start time (clock ticks since boot,
field 22 of ``/proc/PID/stat``). A pid is only ever used if it is a positive number no larger
than Linux's ``pid_max`` ceiling, its process lives, and it is the same process -- its start
time matches (a pid the kernel reused for another process after a crash has another start
time); a file written without a start time (older Agora, or a system without ``/proc``) is
trusted only if the process's command is ``agora`` or ``python -m agora.deploy.cli``. Anything else reads as "nothing is
running": never ``kill(-1)`` (every process), ``kill(0)`` (our own group) or a stranger.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

PID_MAX = 4_194_304
"""the largest pid Linux hands out (``/proc/sys/kernel/pid_max`` cannot exceed it)"""


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first, start time at
    index 19), or None when /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when /proc cannot say."""
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Does ``pid`` run (a zombie nobody reaped does not)? Only for a valid pid."""
    if not 0 < pid <= PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = stat_fields(pid)
    return not fields or fields[0] != "Z"


def _looks_like_agora(pid: int) -> bool:
    """Is ``pid``'s command ``agora ...`` or ``python -m agora.deploy.cli ...``?"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return not Path("/proc").is_dir()       # no /proc at all: cannot tell, trust it
    return any(a == b"agora.deploy.cli" or os.path.basename(a) == b"agora" for a in argv[:3])


def same_process(pid: int, start: int | None) -> bool:
    """Is ``pid`` the living process that started at ``start`` (None: an Agora process)?"""
    if not alive(pid):
        return False
    if start is None:
        return _looks_like_agora(pid)
    now = start_ticks(pid)
    return now is None or now == start


def parse(text: str) -> tuple[int, int | None] | None:
    """``PID [START]`` -> (pid, start); None for anything else (no valid pid)."""
    parts = text.split()
    if not 1 <= len(parts) <= 2 or not all(p.isascii() and p.isdigit() and len(p) <= 20
                                           for p in parts):
        return None
    pid = int(parts[0])
    if not 0 < pid <= PID_MAX:
        return None
    return pid, int(parts[1]) if len(parts) == 2 else None


_CLAIMS: list[int] = []
"""descriptors of the lock files this process holds, open for its life"""


def claim(path: Path) -> bool:
    """Hold an exclusive lock on ``path`` (made, 0600, if missing) for this process's life;
    False when another process holds it. Two ``agora up`` started together both found no
    pid file and both started (a check, then a write: a review). The kernel lets go of the
    lock when its holder exits, however it dies, so none is ever stale."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if isinstance(e, BlockingIOError):
            return False
        raise                   # no locks on that file system: said, as a path problem
    _CLAIMS.append(fd)
    return True


def claims() -> tuple[int, ...]:
    """The lock descriptors this process holds (for a child to hold them too)."""
    return tuple(_CLAIMS)


def write(path: Path) -> None:
    pid = os.getpid()
    start = start_ticks(pid)
    path.write_text(f"{pid}\n" if start is None else f"{pid} {start}\n")


def read(path: Path) -> tuple[int, int | None] | None:
    """The file's (pid, start), or None when it is missing or not a valid pid file."""
    try:
        return parse(path.read_text(errors="replace")[:200])
    except OSError:
        return None


def running(path: Path) -> int | None:
    """The pid the file names if that very process still runs, else None."""
    got = read(path)
    return got[0] if got is not None and same_process(*got) else None


def mine(path: Path) -> bool:
    """Does the file name this process?"""
    got = read(path)
    return got is not None and got[0] == os.getpid()
