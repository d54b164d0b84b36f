"""Helpers of the tests that start, kill and watch processes (/proc, Linux)."""

from __future__ import annotations

import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Does ``pid`` run (a zombie does not)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_for(pred, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
