"""A run's processes on its node: its process group (``kill_group``), the processes that
left it but still carry the run's ``AGORA_RUN_DIR`` (``strays``, ``kill_strays``), and
stopping a run found in its folder (``stop_run``) -- only while the group its ``pid`` file
names is still the run's (``runs_group``). Linux's /proc; elsewhere the group alone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from agora.agents.process import proc_files, stat_fields

KILL_GRACE_S = 3.0
"""seconds between SIGTERM and SIGKILL to a run's process group"""


def run_marker(folder: Path) -> bytes:
    """The ``AGORA_RUN_DIR`` entry every process of a run inherits in its environment."""
    return b"AGORA_RUN_DIR=" + str(Path(folder).resolve()).encode()


def strays(marker: bytes) -> list[int]:
    """Processes (readable by this user) whose environment holds ``marker``: a run's processes
    wherever they went -- out of its process group or session, reparented. Linux's /proc; a
    process that rewrote its environment escapes (a cgroup per run would not let it)."""
    return [pid for pid, env in proc_files("environ") or () if marker in env.split(b"\0")]


def kill_strays(marker: bytes, grace_s: float = KILL_GRACE_S) -> int:
    """SIGTERM every process of ``strays(marker)``, SIGKILL those alive after ``grace_s``;
    how many there were."""
    found = pids = strays(marker)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = set(strays(marker))
        pids = [p for p in pids if p in alive]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(found)


def kill_group(pgid: int, grace_s: float = KILL_GRACE_S,
               leader: subprocess.Popen | None = None) -> None:
    """SIGTERM process group ``pgid``, SIGKILL it if any of it is alive after ``grace_s``.
    ``leader``: the group's leader when this process started it (reaped as it ends). A
    member that ended but is not reaped yet -- the leader's zombie, or an orphan waiting for
    init, which a container's init may leave for seconds -- counts as gone."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Does process group ``pgid`` hold a process that has not ended (not a zombie)?"""
    return group_members(pgid) > 0


def group_members(pgid: int) -> int:
    """Processes of group ``pgid`` that have not ended (not zombies). Linux's /proc;
    elsewhere 1 when the group exists at all, else 0."""
    stats = proc_files("stat")
    if not stats:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return 0
        return 1
    want = b"%d" % pgid
    return sum(1 for _, stat in stats
               if len(f := stat_fields(stat)) > 2 and f[2] == want and f[0] != b"Z")


def left_in_group(pgid: int) -> int:
    """``group_members`` of a group whose leader was reaped, with no walk of /proc while
    the group is gone (most runs: a run's end pays one signal, not a read of every process)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return 0
    except PermissionError:       # another user's (``run_as``): count them
        pass
    return group_members(pgid)


def stop_run(folder: Path, grace_s: float = KILL_GRACE_S) -> None:
    """Kill a run that lives in ``folder``: its process group -- if it is still the run's
    (``runs_group``) -- then every process that still carries its ``AGORA_RUN_DIR``."""
    marker = run_marker(folder)
    pid = read_pid(folder)
    if pid is not None and runs_group(pid, marker):
        kill_group(pid, grace_s)
    kill_strays(marker, grace_s)


def runs_group(pgid: int, marker: bytes) -> bool:
    """Is process group ``pgid`` still the run's whose ``run_marker`` is ``marker``: does a
    live member of it carry the marker? A ``pid`` file read after the run ended (a runner
    restarted, the next ``agora up`` after ``agora down``) names a process id the system may
    have given to any other session since (a review: a restarted runner killed an unrelated
    session whose leader got the old run's pid): one of ``strays(marker)`` in the group.
    Linux's /proc; elsewhere True."""
    if not os.path.isdir("/proc"):
        return True
    return any(_group_of(pid) == pgid for pid in strays(marker))


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def read_pid(folder: Path) -> int | None:
    try:
        return int((folder / "pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
