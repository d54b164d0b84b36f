"""``agora up`` says when a node goes down or comes back and when a site lapses (a probe: a
node whose Ray node died was placed around in silence, the web view still listing its agent
as normal). The notices come from the committed updates the operator's client follows."""

from __future__ import annotations

import collections

from agora.deploy.live_progress import Follower
from agora.protos.agora.v1 import coordinator_pb2 as pb


def test_node_and_site_changes_become_one_line_each():
    f = Follower.__new__(Follower)          # its update handler alone: no system behind it
    f.notices, f.lapsed = collections.deque(maxlen=10), set()
    f._noticed(pb.ScheduleUpdate(version=7, nodes=[pb.NodeState(node="edge-c/n0", up=False)],
                                 sites=[pb.SiteStatus(site="edge-c", lapsed=True)]))
    f._noticed(pb.ScheduleUpdate(version=9, nodes=[pb.NodeState(node="edge-c/n0", up=True)],
                                 sites=[pb.SiteStatus(site="edge-c"),
                                        pb.SiteStatus(site="dc-a", key=b"k"),   # admitted
                                        pb.SiteStatus(site="gone", removed=True)]))
    assert f.drain() == [
        "node edge-c/n0 is down (its site says so); what ran there is placed again",
        "site edge-c lapsed (its agent went silent, or it held an instance past its "
        "timeout_s); its running work is placed again",
        "node edge-c/n0 is up again (its site says so)",
        "site edge-c is back"]
    assert f.drain() == []


def test_a_site_lapsed_when_the_service_started_is_said_back():
    """A probe: a site lapsed in the resumed state came back (its node returned) and agora
    up never said so -- only lapses it had seen happen were known."""
    f = Follower.__new__(Follower)
    f.notices, f.lapsed = collections.deque(maxlen=10), set()
    f._viewed(pb.LedgerView(version=3, sites=[pb.SiteStatus(site="dc-b", lapsed=True),
                                              pb.SiteStatus(site="gone", lapsed=True,
                                                            removed=True),
                                              pb.SiteStatus(site="dc-a")]))
    f._noticed(pb.ScheduleUpdate(version=4, sites=[pb.SiteStatus(site="dc-b")]))
    assert f.drain() == ["site dc-b is back"]


def test_agora_up_detach_prints_the_warnings_of_its_start(tmp_path, monkeypatch, capsys):
    """A probe: ``agora up --detach`` said "Agora is up" and nothing of a node that started
    down or a site started without its agent -- those warnings were in the log alone. The
    service keeps the warnings logged while it starts (``StartWarnings``) in ``ready.json``,
    and ``--detach`` prints them."""
    import json
    import logging
    import os
    from types import SimpleNamespace

    from agora.deploy import live, pid_file

    said = live.StartWarnings(most=2)
    logging.getLogger().addHandler(said)
    try:
        logging.getLogger("agora.deploy.ray_runtime").warning("no live Ray node carries node "
                                                              "%s: it starts down", "b/n0")
        logging.getLogger("agora.launch").info("not a warning")
        for k in range(3):
            logging.getLogger("agora.launch").warning("more %d", k)
    finally:
        lines = said.close()
    logging.getLogger("agora.launch").warning("after the start")
    assert lines == ["no live Ray node carries node b/n0: it starts down", "more 0"]

    out = tmp_path / "out"
    out.mkdir()
    me = os.getpid()                          # the "service" started: this process
    (out / live.READY).write_text(json.dumps({
        "pid": me, "pid_start": pid_file.start_ticks(me), "config": "up.yaml",
        "start_warnings": lines}))
    monkeypatch.setattr(live, "already_running", lambda *a: None)
    monkeypatch.setattr(live.subprocess, "Popen",
                        lambda *a, **k: SimpleNamespace(pid=me, poll=lambda: None))
    assert live.detach(SimpleNamespace(out=str(out)), "up.yaml", timeout_s=5) == 0
    got = capsys.readouterr()
    assert "Agora is up" in got.out
    assert got.err.splitlines() == ["agora up: no live Ray node carries node b/n0: it starts "
                                    "down", "agora up: more 0"]


def test_the_progress_line_in_a_log_carries_the_time(capsys):
    """A probe could not place a fault's lapses in time: agora.log's lines had none."""
    import re

    from agora.deploy.live_progress import ProgressLine

    line = ProgressLine(print, every_s=0.0)
    line.tty = False                                          # as in agora.log
    line.show({"pending": 1, "running": 2, "done": 3, "failed": 0, "cancelled": 0,
               "instances_running": 4, "round": 5, "version": 6})
    err = capsys.readouterr().err
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d jobs: 1 pending, 2 running, .*"
                        r"version 6\n", err), err
