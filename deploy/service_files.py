"""Who starts, serves or stops from an ``agora up`` state folder (``out``), read from the
files there -- ``agora.pid`` (the keeper, or an unkept service), ``ready.json`` (written once
it serves), ``agora.lock`` -- so that a second ``agora up`` is refused and ``agora down`` and
the commands find the service (``deploy/live.py``, ``deploy/supervise.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from agora.deploy import pid_file

READY, PID, LOG = "ready.json", "agora.pid", "agora.log"
LOCK = "agora.lock"
"""held (``pid_file.claim``) by the process that owns ``agora.pid`` while it runs"""
ALIVE = "alive"
"""touched by a kept service at every progress line: how its keeper tells a hang"""
STOPPING = "stopping"
"""written by a keeper asked to stop (agora down, a signal); removed when a keeper starts:
what tells a stop from a restart while the keeper lives and nothing serves"""


def stopping(out: Path) -> bool:
    """Was the keeper of ``out`` asked to stop (the service stops, it will not start again)?"""
    return (out / STOPPING).is_file()


def running_service(out: Path) -> dict | None:
    """The service serving from ``out`` ({pid, config, coordinator, ...}), or None when none
    is (no ready file, or its process is gone or is another process: ``pid_file``)."""
    try:
        info = json.loads((out / READY).read_text())
        pid, start = info["pid"], info.get("pid_start")
        if not isinstance(pid, int) or not (start is None or isinstance(start, int)):
            return None
        return info if pid_file.same_process(pid, start) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def starting_pid(out: Path) -> int | None:
    """The pid of a service starting or serving from ``out``, if that process still runs
    (never a pid the file names that is not a valid one, or is another process)."""
    return pid_file.running(out / PID)


def serving_process(out: Path) -> int | None:
    """The pid of the process ``ready.json`` names as serving (``serving_pid``) if that very
    process still runs. Its keeper killed (SIGKILL, the OOM killer), it stops on its own --
    tens of seconds -- while ``agora.pid`` names the dead keeper."""
    try:
        info = json.loads((out / READY).read_text())
        pid, start = info["serving_pid"], info.get("serving_start")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if type(pid) is not int or not (start is None or type(start) is int):
        return None
    return pid if pid_file.same_process(pid, start) else None


def already_running(out: Path, config: str, *ours: int | None,
                    claim: bool = False) -> str | None:
    """The line refusing a start from ``out`` while another process (none of ``ours``)
    starts or serves from it, or still stops there (its keeper gone); None when none
    does. ``claim``: this process is to own ``agora.pid``: it first takes ``LOCK``, which
    another owner holds from before its pid file is written until it exits."""
    claimed = not claim or pid_file.claim(out / LOCK)
    other = starting_pid(out)
    if other is None or other in ours:
        other = serving_process(out)
        if other is None or other in ours:
            if claimed:
                return None
            return (f"agora up: Agora is already starting from {out} (another process "
                    f"holds {out / LOCK}); stop it with agora down --config {config}")
    return (f"agora up: Agora is already running from {out} (pid {other}); stop it with "
            f"agora down --config {config}")
