"""The coordinator benchmarks still run against the current code (one broke silently when
the cluster reader gained input bounds): a one-second run of each benchmark's Agora side
commits requests and admits bids, and the interleaved benchmark parses the bare PBFT
skeleton's output when ``../shared/anchors`` is there."""

from __future__ import annotations

import asyncio

import pytest

from bench.coordinator_throughput import scenario
from bench.coordinator_vs_skeleton import DEFAULT_SKELETON, run_skeleton

pytestmark = pytest.mark.timeout(180)


def test_the_throughput_benchmark_commits_and_admits_in_a_short_run():
    r = asyncio.run(scenario(4, 16, 10, 8, 1.0, sync="NORMAL", window=4, quiet_site=True))
    requests_s, assignments_s, p50, _ = r["rate"]
    assert requests_s > 0 and assignments_s > 0 and p50 > 0
    assert r["cpu_s"] > 0


@pytest.mark.skipif(not DEFAULT_SKELETON.is_file(), reason="../shared/anchors is not here")
def test_the_skeleton_side_of_the_interleaved_benchmark_runs():
    r = run_skeleton(DEFAULT_SKELETON, 4, 1, 1, 2, 2, 3.0)
    assert r["req_s"] > 0 and r["p50"] > 0 and r["cpu_per_req_ms"] > 0


def test_also_env_sets_the_variable_for_its_runs_only(monkeypatch):
    import os

    from bench.coordinator_vs_skeleton import _env, main

    monkeypatch.delenv("AGORA_EVENT_LOOP", raising=False)
    with _env(("AGORA_EVENT_LOOP", "asyncio")):
        assert os.environ["AGORA_EVENT_LOOP"] == "asyncio"
    assert "AGORA_EVENT_LOOP" not in os.environ
    with pytest.raises(SystemExit) as e:
        main(["--also-env", "no-equals-sign"])
    assert e.value.code == 2


@pytest.mark.skipif(not DEFAULT_SKELETON.is_file(), reason="../shared/anchors is not here")
@pytest.mark.timeout(120)
def test_the_round_floor_times_rounds_of_parts_from_site_processes(tmp_path):
    """Each round is timed from its opening to its last part's execution: with three site
    processes thinking 5 ms each no round can take less than 5 ms, and the client mode
    orders them all. Run as a program, as it is used: it forks, and forked from this
    process (gRPC's threads running from earlier tests) its children hung. Its fixed ports
    are below the kernel's ephemeral range (32768-60999): at 52700 a connection of the
    other test worker in TIME_WAIT there failed the bind (a review of the two workers)."""
    import json
    import subprocess
    import sys

    rows = {}
    for mode in ("processes", "one"):
        out = tmp_path / f"{mode}.json"
        p = subprocess.run([sys.executable, "-m", "bench.round_floor", "--sites", "3",
                            "--rounds", "30", "--gap-ms", "10", "--think-ms", "5",
                            "--warm-s", "0.1", "--agents", mode, "--base",
                            "23700" if mode == "one" else "23720", "--json", str(out)],
                           capture_output=True, text=True, timeout=100)
        assert p.returncode == 0, p.stderr[-2000:]
        assert "| 3 |" in p.stdout
        rows[mode] = json.loads(out.read_text())["rows"][0]
    r, one = rows["processes"], rows["one"]
    assert r["rounds"] > 20 and 5.0 <= r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert one["rounds"] > 20 and 0 < one["p50_ms"] <= one["max_ms"]


def test_the_cpu_split_reads_threads_by_kind_and_refuses_bad_flags():
    import os
    import threading

    from bench.cpu_split import main, per_request, thread_cpu

    stop = threading.Event()
    spin = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)])
    a = thread_cpu(os.getpid())
    spin.start()
    sum(range(3_000_000))                               # the main thread works too
    stop.wait(0.3)
    b = thread_cpu(os.getpid())                         # before it ends: /proc forgets it
    stop.set()
    spin.join()
    split = per_request({1: a}, {1: b}, 1)
    assert split["main"] > 0 and split["other"] > 0      # ms over one "request"
    assert thread_cpu(-1) == {}
    for bad in (["--only", "9-9"], ["--runs", "0"], ["--seconds", "1"]):
        with pytest.raises(SystemExit) as e:
            main(bad)
        assert e.value.code == 2
