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


def test_a_round_is_split_into_its_steps_and_the_last_sender_is_the_critical_one(tmp_path):
    from bench.replay_trace import load, round_steps

    data = tmp_path / "coordinator" / "data"
    data.mkdir(parents=True)
    # versions 1-3 in round 0 (1 arms it, 2 and 3 are the parts); version 4 closes it (round
    # 1, two allocations); the second replica executes each 10 ms after the first
    versions = [(1, 100.0, 0, 0), (2, 100.2, 0, 0), (3, 100.4, 0, 0), (4, 100.5, 1, 2)]
    for i, lag in ((0, 0.0), (1, 0.01)):
        (data / f"replica-{i}.trace.json").write_text(json.dumps(
            [[v, t + lag, r, n] for v, t, r, n in versions]))
    (tmp_path / "traces-0.json").write_text(json.dumps({
        # acts 50 ms after version 1 reached the second replica, signs 20 ms later (5 ms of CPU),
        # sends at once, the reply 150 ms later
        "east": [["update", 100.02, 0, 1], ["act", 100.06, 0], ["submit", 100.08, 0, 0.005],
                 ["send", 100.08, 0], ["reply", 100.23, 0]],
        # the last sender: acts at 100.11, signs at 100.31, its part waits 40 ms behind the
        # previous one, goes at 100.35; the round closes at 100.51 (second replica)
        "west": [["update", 100.03, 0, 1], ["act", 100.11, 0], ["submit", 100.31, 0, 0.002],
                 ["send", 100.35, 0], ["reply", 100.45, 0]]}))
    every, last, spans = round_steps(*load(tmp_path, 0))
    ms = {k: [round(x * 1000) for x in v] for k, v in every.items()}
    assert ms["to act"] == [50, 100] and ms["think"] == [20, 200]
    assert ms["think (CPU)"] == [5, 2] and ms["queue"] == [0, 40] and ms["order"] == [150, 100]
    assert [round(last[k][0] * 1000) for k in ("to act", "think", "think (CPU)", "queue",
                                                 "order", "close")] \
        == [100, 200, 2, 40, 100, 160]
    assert [round(x * 1000) for x in spans] == [500]


def test_a_round_closed_without_allocations_is_not_counted(tmp_path):
    from bench.replay_trace import load, round_steps

    data = tmp_path / "coordinator" / "data"
    data.mkdir(parents=True)
    (data / "replica-0.trace.json").write_text(json.dumps([[1, 10.0, 0, 0], [2, 10.5, 1, 0]]))
    (tmp_path / "traces-0.json").write_text(json.dumps({"east": [
        ["update", 10.1, 0, 1], ["act", 10.2, 0], ["submit", 10.3, 0, 0.001],
        ["send", 10.3, 0], ["reply", 10.4, 0]]}))
    assert round_steps(*load(tmp_path, 0))[2] == []


def test_a_trace_of_another_shape_is_one_line_and_exit_2(tmp_path, capsys):
    data = tmp_path / "coordinator" / "data"
    data.mkdir(parents=True)
    (data / "replica-0.trace.json").write_text(json.dumps([[1, 10.0, 0, 1]]))
    # an agent event without its round
    (tmp_path / "traces-0.json").write_text(json.dumps({"east": [["act", 10.2]]}))
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "IndexError" in err and "AGORA_TRACE=1" in err and "Traceback" not in err
