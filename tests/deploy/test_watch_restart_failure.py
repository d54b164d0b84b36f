"""A replica that dies must be started again even when one attempt to start it fails
(fork refused under memory pressure -- often why the replica died -- a file that cannot be
made on a full disk). Before: the exception from ``group.start`` ended ``system_watch.watch``'s
thread for good, silently: no replica was ever restarted again, and agents that came back
with new keys were never admitted."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from agora.deploy import system_watch


class DeadProc:
    returncode = -9

    def poll(self):
        return self.returncode


class LiveProc:
    returncode = None

    def poll(self):
        return None


class FlakyGroup:
    """replica 0 is dead; its first restart fails with ENOMEM, the next works"""

    def __init__(self):
        self.procs = {0: DeadProc(), 1: LiveProc()}
        self.attempts = 0

    def start(self, i):
        self.attempts += 1
        if self.attempts == 1:
            raise OSError(12, "Cannot allocate memory")      # fork refused, once
        self.procs[i] = LiveProc()


@pytest.mark.timeout(30)
def test_one_failed_replica_restart_does_not_end_supervision(monkeypatch):
    admitted = []
    monkeypatch.setattr(system_watch, "admit_sites", lambda s, timeout_s: admitted.append(1))
    group = FlakyGroup()
    system = SimpleNamespace(group=group, stopping=threading.Event(), waiting=[],
                             replica_restarts=0)
    t = threading.Thread(target=system_watch.watch, args=(system,),
                         kwargs=dict(period_s=0.01, backoff_s=0.02, admit_every_s=0.05),
                         daemon=True)
    t.start()
    try:
        t.join(1.5)
        assert t.is_alive(), "the supervision thread ended on one failed replica restart"
        assert isinstance(group.procs[0], LiveProc), \
            "replica 0 was never started again after one failed attempt"
        assert system.replica_restarts == 1
        n = len(admitted)
        threading.Event().wait(0.3)
        assert len(admitted) > n, "agents' keys are no longer admitted"
    finally:
        system.stopping.set()
        t.join(5)
