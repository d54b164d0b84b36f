"""bench/replay_trace.py reads an AGORA_TRACE=1 run's traces and says how far agents trail
the replicas (hand-made traces here: two replicas, one agent)."""

from __future__ import annotations

import json

from bench.replay_trace import main


def test_lag_is_measured_from_the_second_replica_to_execute(tmp_path, capsys):
    data = tmp_path / "coordinator" / "data"
    data.mkdir(parents=True)
    # version 1: replicas at 100.000 and 100.010; version 2 at 105.000 and 105.002
    (data / "replica-0.trace.json").write_text(json.dumps([[1, 100.0, 0, 0], [2, 105.0, 0, 1]]))
    (data / "replica-1.trace.json").write_text(json.dumps([[1, 100.01, 0, 0],
                                                           [2, 105.002, 1, 1]]))
    # the agent applies version 1 at 100.110 (100 ms after the second) and 2 at 105.302
    (tmp_path / "traces-0.json").write_text(json.dumps({"east": [
        ["wake", 99.0, 0], ["update", 100.11, 0, 1], ["update", 105.302, 1, 2]]}))
    assert main([str(tmp_path), "--every", "5"]) == 0
    out = capsys.readouterr().out
    assert "replica 1: p50 6.0" in out           # 10 ms and 2 ms behind: median 6 ms
    assert "p50 200.0" in out and "max 300.0 ms" in out
    assert "| 0 | 1 | 100 | 100 |" in out and "| 5 | 1 | 300 | 300 |" in out


def test_a_folder_without_traces_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "AGORA_TRACE=1" in capsys.readouterr().err
