"""The web view's state (deploy/webview.py), from ``agora jobs`` rows and metrics: what the
page draws. The page itself is checked in a real browser by test_web_view.py."""

from __future__ import annotations

import asyncio
import http.client
from concurrent.futures import ThreadPoolExecutor
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.deploy.webview import (
    agent_rows,
    chart_rows,
    gantt_bars,
    job_summaries,
    replica_of,
    replica_rows,
    with_rows,
)
from agora.protos.agora.v1 import coordinator_pb2 as pb


def _job(job, *instances):
    return {"job": job, "origin": "east", "outcome": "pending", "reason": "",
            "tasks": [{"task": "t", "outcome": "pending", "reason": "",
                       "instances": [dict(instance=k, **i) for k, i in enumerate(instances)]}]}


def test_bars_are_runs_that_really_started_running_ones_until_now():
    rows = [_job("a", {"state": "running", "node": "east/n0", "site": "east", "since": 10.0},
                 {"state": "open"},
                 {"state": "done", "ran_on": "west/n1", "last_start": 2.0, "last_end": 5.0,
                  "exit_code": 0},
                 {"state": "gave up", "ran_on": "west/n1", "last_start": 5.0, "last_end": 6.0,
                  "exit_code": 3},
                 {"state": "running", "node": "east/n0", "site": "east"})]   # no start yet
    bars = gantt_bars(rows, now=20.0)
    got = {b["instance"]: (b["node"], b["site"], b["start"], b["end"], b["state"]) for b in bars}
    assert got == {0: ("east/n0", "east", 10.0, 20.0, "running"),
                   2: ("west/n1", "west", 2.0, 5.0, "done"),
                   3: ("west/n1", "west", 5.0, 6.0, "failed")}
    assert job_summaries(rows)[0]["instances"] == {"running": 2, "open": 1, "done": 1,
                                                  "gave up": 1}
    assert job_summaries(rows)[0]["running_on"] == ["east"]


@given(st.lists(st.tuples(st.sampled_from(["a/n0", "a/n1", "b/n0"]),
                          st.floats(0, 100), st.floats(0.1, 50)), max_size=40))
def test_rows_never_draw_two_overlapping_runs_in_one_place(spans):
    bars = with_rows([{"job": f"j{k}", "task": "t", "instance": 0, "node": n, "start": s,
                       "end": s + d} for k, (n, s, d) in enumerate(spans)])
    by_row: dict[str, list] = {}
    for b in bars:
        assert b["row"].split(" (")[0] == b["node"]
        by_row.setdefault(b["row"], []).append((b["start"], b["end"]))
    for spans_in_row in by_row.values():
        spans_in_row.sort()
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans_in_row, spans_in_row[1:]))
    rows = chart_rows(["a/n0", "a/n1", "b/n0"], bars)
    assert set(rows) >= set(by_row) and rows[0] == "a/n0"
    # as few rows per node as the most runs at one instant there
    for node in ("a/n0", "a/n1", "b/n0"):
        mine = [(b["start"], b["end"]) for b in bars if b["node"] == node]
        most = max((sum(s <= t < e for s, e in mine) for t, _ in mine), default=0)
        assert sum(r.split(" (")[0] == node for r in rows) == max(1, most)


def test_agent_rows_from_metrics_and_a_missing_endpoint():
    m = {'agora_messages_sent_total{site="east"}': 4.0,
         'agora_messages_suppressed_total{site="east"}': 6.0,
         'agora_decisions_total{site="east"}': 10.0,
         'agora_decision_latency_seconds_sum{site="east"}': 0.05,
         'agora_decision_latency_seconds_count{site="east"}': 10.0}
    assert agent_rows({"east": m, "west": None}) == [
        {"site": "east", "messages_sent": 4, "messages_suppressed": 6, "decisions": 10,
         "decision_ms_mean": 5.0},
        {"site": "west", "error": "metrics not reachable"}]


def test_replica_rows_count_each_replicas_own_view_changes_or_say_unknown():
    statuses = [pb.ReplicaStatus(replica=0, view=2, primary=2, last_committed=9),
                "UNAVAILABLE: replica 1 does not answer",
                pb.ReplicaStatus(replica=2, view=2, primary=2, last_committed=9)]
    mine = {'agora_view{replica="0"}': 2.0, 'agora_view_changes_total{replica="0"}': 2.0}
    assert replica_of(mine) == 0
    rows = replica_rows(statuses, {0: mine})     # replica 2's metrics did not come
    assert rows[0]["view_changes"] == 2 and rows[0]["primary"] == 2
    assert rows[1] == {"replica": 1, "error": "UNAVAILABLE: replica 1 does not answer"}
    assert rows[2]["view_changes"] is None           # unknown, not 0
    assert [r["view_changes"] for r in replica_rows(statuses, None) if "view" in r] == [None,
                                                                                      None]


class _FakeOperator:
    """A stand-in for the operator's coordinator client (this unit test has no replicas)."""

    def __init__(self) -> None:
        self.calls = 0

    async def status(self):
        self.calls += 1
        await asyncio.sleep(0.05)
        return [pb.ReplicaStatus(replica=0, view=1, primary=1)]


def _get(port: int, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"Host": host} if host else {})
    r = c.getresponse()
    return r.status, dict(r.getheaders()), r.read()


@pytest.mark.timeout(60)
def test_the_server_serves_the_page_shares_reads_and_answers_loopback_names_only(tmp_path):
    from agora.deploy.webview import WebView

    cluster = SimpleNamespace(site_names=["east"], nodes=[SimpleNamespace(name="east/n0")])
    operator = _FakeOperator()
    view = WebView(SimpleNamespace(operator=operator), cluster, {}, Path(tmp_path), [], {})

    async def main():
        url = await view.start("127.0.0.1", 0)
        port = int(url.rsplit(":", 1)[1].strip("/"))
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await loop.run_in_executor(None, _get, port, "/")
            assert status == 200 and b"gantt" in body
            assert "script-src 'self'" in headers["Content-Security-Policy"]
            assert headers["X-Content-Type-Options"] == "nosniff"
            for path in ("/static/view.js", "/static/plotly.min.js"):
                assert (await loop.run_in_executor(None, _get, port, path))[0] == 200
            # ten pages at once: one status read, the same answer
            with ThreadPoolExecutor(10) as pages:
                got = await asyncio.gather(*(loop.run_in_executor(pages, _get, port,
                                                                  "/api/state")
                                             for _ in range(10)))
            states = [json.loads(b) for _, _, b in got]
            assert all(s == states[0] for s in states) and operator.calls == 1
            assert states[0]["replicas"][0]["primary"] == 1 and states[0]["jobs"] == []
            # a page that reached it under another name (DNS rebinding) is refused
            status, _, _ = await loop.run_in_executor(None, _get, port, "/api/state",
                                                      "evil.example:80")
            assert status == 421
            assert (await loop.run_in_executor(None, _get, port, "/", f"localhost:{port}"))[
                0] == 200
        finally:
            await view.stop()

    asyncio.run(main())


def test_finished_runs_are_read_from_disk_once_and_unwritten_ones_again(tmp_path):
    from bench.web_view import ledger_with_runs

    from agora.deploy.job_table import job_rows

    nodes = ["a/n0", "b/n0"]
    view = ledger_with_runs(tmp_path, jobs=2, instances=2, nodes=nodes)
    files: dict = {}
    first = job_rows(view, nodes, tmp_path, None, files)
    assert first[0]["tasks"][0]["instances"][0]["ran_on"] == "a/n0"
    ends = sorted(tmp_path.glob("runs/*/*/*/*/end.json"))
    for e in ends:
        e.unlink()                                  # finished: the cache answers
    assert job_rows(view, nodes, tmp_path, None, files) == first
    assert "ran_on" not in job_rows(view, nodes, tmp_path)[0]["tasks"][0]["instances"][0]
    files.clear()                                   # nothing on disk: nothing cached ...
    job_rows(view, nodes, tmp_path, None, files)
    assert not files
    ends[0].write_text('{"exit_code": 0, "start": 1.0, "end": 2.0}')   # ... until written
    again = job_rows(view, nodes, tmp_path, None, files)
    assert sum("ran_on" in i for j in again for t in j["tasks"] for i in t["instances"]) == 1


def test_a_sites_reader_gets_run_details_from_local_folders_of_its_own_jobs_only(tmp_path):
    # a probe: `agora jobs --client site:dc-b` showed dc-a's job's node, exit code and
    # reason, merged in from this machine's run folders, where the coordinator hides them
    from bench.web_view import ledger_with_runs

    from agora.deploy.job_table import job_rows

    nodes = ["a/n0", "b/n0"]
    view = ledger_with_runs(tmp_path, jobs=1, instances=2, nodes=nodes)   # origin s0

    def ran_on(rows):
        return [i.get("ran_on") for j in rows for t in j["tasks"] for i in t["instances"]]

    assert all(ran_on(job_rows(view, nodes, tmp_path)))                   # the operator
    assert all(ran_on(job_rows(view, nodes, tmp_path, reader_site="s0")))  # its own job
    assert not any(ran_on(job_rows(view, nodes, tmp_path, reader_site="s1")))


def test_a_cancelled_task_of_many_instances_lists_its_folders_once_per_node(tmp_path,
                                                                             monkeypatch):
    """200,000 instances cancelled, three of which ran: ``agora jobs`` and the web view
    globbed the runs tree once per instance (minutes, probe); now each node's folder of the
    task is listed once, and only the instances that ran have an end."""
    import os

    from agora.agents.cluster.instance_run import run_folder
    from agora.agents.domain import Demand, Job, Task
    from agora.deploy import run_folders
    from agora.deploy.job_table import job_rows
    from agora.protos.agora.v1 import coordinator_pb2 as pb
    from agora.protos.convert import job_to_proto

    nodes, n = ["a/n0", "b/n0"], 200_000
    view = pb.LedgerView(version=1)
    job = Job(id="big", arrival=0.0, origin="a", tasks=(Task(
        id="t", duration=1.0, demand=Demand(cpu=1, mem=64), instances=n),))
    rec = view.jobs.add(outcome="cancelled")
    rec.job.CopyFrom(job_to_proto(job))
    rec.tasks.add(states=bytes([3, 3, 3] + [4] * (n - 3)), outcome="cancelled")
    for i in range(3):
        d = run_folder(tmp_path / "runs", nodes[i % 2], "big", "t", i, 1)
        d.mkdir(parents=True)
        (d / "end.json").write_text(json.dumps({"exit_code": 0, "start": 1.0, "end": 2.0}))
    listed = []
    real = os.scandir
    monkeypatch.setattr(run_folders.os, "scandir", lambda p: listed.append(p) or real(p))
    rows = job_rows(view, nodes, tmp_path)
    inst = rows[0]["tasks"][0]["instances"]
    assert [i.get("ran_on") for i in inst[:3]] == ["a/n0", "b/n0", "a/n0"]
    assert not any("ran_on" in i for i in inst[3:])
    assert len(listed) == 1 + len(nodes), listed      # the runs folder, then each node's


@pytest.mark.timeout(60)
def test_malformed_requests_are_refused_with_one_log_line_and_no_traceback(tmp_path, caplog):
    """A 10,000-character line or no Host header: 400, and aiohttp's traceback of each no
    longer reaches the service's log (probe) -- one line, then quiet for a while."""
    import logging
    import socket

    from agora.deploy.webview import WebView

    cluster = SimpleNamespace(site_names=["east"], nodes=[SimpleNamespace(name="east/n0")])
    view = WebView(SimpleNamespace(operator=_FakeOperator()), cluster, {}, Path(tmp_path), [],
                   {})

    def raw(port: int, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            return s.recv(200)

    async def main():
        url = await view.start("127.0.0.1", 0)
        port = int(url.rsplit(":", 1)[1].strip("/"))
        loop = asyncio.get_running_loop()
        try:
            for data in (b"GET /api/state?x=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                         b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"b" * 100_000 + b"\r\n\r\n",
                         b"GET / HTTP/1.1\r\n\r\n"):
                answer = await loop.run_in_executor(None, raw, port, data)
                assert answer.split(b" ")[1].startswith(b"4"), answer
        finally:
            await view.stop()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert not any(r.exc_info or "Traceback" in r.getMessage() for r in server), server
    assert len(server) == 1 and "malformed request" in server[0].getMessage()


@pytest.mark.timeout(60)
def test_idle_connections_are_closed_their_number_capped_and_bodies_never_read(tmp_path,
                                                                                monkeypatch):
    """A probe: 20,000 connections that sent nothing were kept for good (the service ran
    out of file descriptors, and logged a traceback per refused accept), and endless request
    bodies were read and thrown away on the service's loop (26 GB in 15 s). Now an idle
    connection is closed after ``IDLE_S``, past ``MAX_CONNECTIONS`` a new one is closed at
    once, and a request with a body is answered 413 and its connection closed unread."""
    import socket
    import time as clock

    from agora.deploy import web_serving
    from agora.deploy.webview import WebView

    monkeypatch.setattr(web_serving, "IDLE_S", 1.0)
    monkeypatch.setattr(web_serving, "MAX_CONNECTIONS", 8)
    cluster = SimpleNamespace(site_names=["east"], nodes=[SimpleNamespace(name="east/n0")])
    view = WebView(SimpleNamespace(operator=_FakeOperator()), cluster, {}, Path(tmp_path), [],
                   {})

    def closed_within(s: socket.socket, seconds: float) -> bool:
        s.settimeout(seconds)
        try:
            return s.recv(1) == b""
        except (socket.timeout, ConnectionResetError):
            return False

    def probe(port: int) -> None:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        clock.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            assert extra.recv(1) == b""                      # over the cap: closed at once
        except ConnectionResetError:
            pass
        extra.close()
        assert all(closed_within(s, 3.0) for s in idle)       # idle: closed after IDLE_S
        for s in idle:
            s.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /api/state HTTP/1.1\r\nHost: localhost\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + b"ffff\r\n" + b"x" * 65535)
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 413"), answer
            assert b"Connection: close" in answer or b"connection: close" in answer.lower()
            s.settimeout(5)
            rest = b""
            try:
                while chunk := s.recv(65536):
                    rest += chunk
            except ConnectionResetError:
                pass                                          # closed, unread
        status, headers, _ = _get(port, "/nothing-here", "LOCALHOST")
        assert status == 404 and headers["X-Content-Type-Options"] == "nosniff"

    async def main():
        url = await view.start("127.0.0.1", 0)
        port = int(url.rsplit(":", 1)[1].strip("/"))
        try:
            await asyncio.get_running_loop().run_in_executor(None, probe, port)
        finally:
            await view.stop()

    asyncio.run(main())
