"""The pid file ``agora down`` and ``agora up`` read (``deploy/pid_file.py``): a stale, forged
or garbled one never makes Agora signal a process that is not the service it started --
not a stranger that got the pid later, not ``kill(-1)`` (every process) or ``kill(0)`` (its
own group) -- and never raises."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.deploy import live, pid_file


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_to_a_valid_pid_or_none(text):
    got = pid_file.parse(text)
    assert got is None or (0 < got[0] <= pid_file.PID_MAX and (got[1] is None or got[1] >= 0))


@pytest.mark.parametrize("text", ["-1", "0", "12345678901", "4194305", "1e3", "abc", "",
                                  "1 2 3", "0x10", "١٢", " -5 7"])
def test_invalid_pid_files_name_no_process(text, tmp_path):
    (tmp_path / "agora.pid").write_text(text)
    assert pid_file.running(tmp_path / "agora.pid") is None


def test_this_process_is_recognised_by_pid_and_start_time(tmp_path):
    f = tmp_path / "agora.pid"
    pid_file.write(f)
    assert pid_file.running(f) == os.getpid() and pid_file.mine(f)
    pid, start = pid_file.read(f)
    f.write_text(f"{pid} {start + 1}\n")            # same pid, another start: a reused pid
    assert pid_file.running(f) is None


@pytest.fixture()
def stranger():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p
    p.kill()
    p.wait()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("form", ["bare", "other start"])
def test_down_never_signals_a_process_that_is_not_the_service(form, stranger, tmp_path,
                                                              capsys):
    start = pid_file.start_ticks(stranger.pid)
    text = f"{stranger.pid}\n" if form == "bare" else f"{stranger.pid} {start + 7}\n"
    (tmp_path / "agora.pid").write_text(text)
    assert live.down(SimpleNamespace(out=str(tmp_path)), "up.yaml", timeout_s=2) == 0
    assert "nothing is running from" in capsys.readouterr().out
    time.sleep(0.2)
    assert stranger.poll() is None, "a stranger named by a stale pid file was signalled"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", ["-1", "0", "99999999999999999999"])
def test_down_with_a_forged_pid_file_signals_nothing(text, tmp_path, capsys, monkeypatch):
    sent = []
    monkeypatch.setattr(live.os, "kill", lambda *a: sent.append(a))   # fake: record only
    (tmp_path / "agora.pid").write_text(text)
    assert live.down(SimpleNamespace(out=str(tmp_path)), "up.yaml", timeout_s=1) == 0
    assert sent == [] and "nothing is running" in capsys.readouterr().out


def test_a_ready_file_naming_another_process_is_no_running_service(stranger, tmp_path):
    import json
    (tmp_path / "ready.json").write_text(json.dumps({"pid": stranger.pid, "pid_start": 1}))
    assert live.running_service(tmp_path) is None
    (tmp_path / "ready.json").write_text(json.dumps({"pid": -1}))
    assert live.running_service(tmp_path) is None
    start = pid_file.start_ticks(stranger.pid)
    (tmp_path / "ready.json").write_text(json.dumps({"pid": stranger.pid, "pid_start": start}))
    assert live.running_service(tmp_path)["pid"] == stranger.pid
