"""``agora up`` says when replicas stop answering and when they answer again (a probe: two
of four replicas stopped for a minute, nothing committed, and ``agora.log`` said nothing
while the commands did). Real replica processes, two of them stopped (SIGSTOP) and resumed;
the watch reads their status as ``agora up`` does, through the operator's client on a loop
thread (the "system" here holds only those three parts)."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest

from agora.deploy.live_progress import QuorumWatch
from agora.deploy.loop_thread import LoopThread
from tests.coordinator.grpc_helpers import make_group

pytestmark = pytest.mark.timeout(120)


def lines_until(watch: QuorumWatch, want: int, within_s: float = 30.0) -> list[str]:
    got: list[str] = []
    end = time.monotonic() + within_s
    while time.monotonic() < end and len(got) < want:
        got += watch.poll()
        time.sleep(0.05)
    return got


def test_replicas_that_stop_answering_and_answer_again_are_said(tmp_path):
    g = make_group(tmp_path)
    loop = LoopThread()
    with g.serving():
        operator = g.client("operator", timeout_s=2.0)
        system = SimpleNamespace(group=g, loop=loop, operator=operator)
        watch = QuorumWatch(system, every_s=0.2)
        assert lines_until(watch, 1, within_s=2.0) == []        # all answer: nothing said
        stopped = [g.procs[1].pid, g.procs[2].pid]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            said = lines_until(watch, 2)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        assert said[0].startswith("replicas 1, 2 do not answer; their logs: ")
        assert str(g.log(1)) in said[0]
        assert said[1].startswith("only 2 of 4 replicas answer: nothing new commits")
        back = lines_until(watch, 2)
        assert back == ["replicas 1, 2 answer again", "4 of 4 replicas answer again: commits "
                        "resume"]
        loop.run(operator.close(), 10)
    loop.close()


def test_one_silent_replica_is_said_without_a_quorum_line():
    w = QuorumWatch.__new__(QuorumWatch)          # its change lines alone
    w.n, w.need, w.silent, w.logs = 4, 3, set(), lambda i: f"/x/replica-{i}.log"
    assert w.changes({3}) == ["replica 3 does not answer; its log: /x/replica-3.log"]
    assert w.changes({3}) == []
    assert w.changes({0, 3}) == ["replica 0 does not answer; its log: /x/replica-0.log",
                                 "only 2 of 4 replicas answer: nothing new commits (no job "
                                 "is admitted, placed or ended) until 3 do; work already "
                                 "running goes on"]
    assert w.changes(set()) == ["replicas 0, 3 answer again",
                                "4 of 4 replicas answer again: commits resume"]
