"""bench/malleable.py and bench/width_learning.py run end to end on a tiny workload (one
worker): the tables have a row per model / policy, the tuned value is the family's best, and
the learned rule's search is never worse than its start (the tuned cap) on its own cost."""

from __future__ import annotations

import json
import statistics

from bench import malleable, width_learning


def test_malleable_headroom_tunes_each_family_and_runs_the_oracle(tmp_path, capsys):
    out = tmp_path / "m"
    assert malleable.main(["--seeds", "1", "--jobs", "6", "--models", "0/0,0.3/5",
                           "--caps", "1,4", "--alphas", "0", "--epochs", "2", "--top", "2",
                           "--workers", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| 0 / 0 |" in table and "| 0.3 / 5 |" in table
    data = json.loads(out.with_suffix(".json").read_text())
    for row in data["rows"]:
        jct = row["jct"]
        caps = [n for n in jct if n.startswith("srpt-cap:")]
        assert row["cap"] == min(caps, key=lambda n: statistics.mean(jct[n]))
        # the oracle switches among the seed's best heuristics, so it is never worse
        assert row["oracle_jct"][0] <= row["best_per_seed"][0] + 1e-6
        assert row["bound"][0] <= row["oracle_jct"][0] + 1e-6


def test_width_learning_trains_on_some_seeds_and_tests_on_others(tmp_path, capsys):
    out = tmp_path / "w"
    assert width_learning.main(["--jobs", "6", "--model", "0.3/5", "--train-seeds", "0",
                                "--test-seeds", "3-4", "--caps", "1,4", "--alphas", "0",
                                "--iters", "1", "--population", "3", "--workers", "1",
                                "--out", str(out)]) == 0
    table = capsys.readouterr().out
    data = json.loads(out.with_suffix(".json").read_text())
    names = {"sjf", "srpt", "tetris", data["tuned"]["srpt-cap"], data["tuned"]["weighted-fair"]}
    for name in names:
        assert f"| {name} |" in table
    assert len(data["weights"]) == len(data["features"])
    assert data["history"][-1] <= data["history"][0] == 1.0
    assert set(data["test"]) == names | {"learned-width"}
    assert all(len(v) == 2 for v in data["test"].values())


def test_width_learning_refuses_overlapping_seeds(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        width_learning.main(["--train-seeds", "0,1", "--test-seeds", "1-3",
                             "--out", str(tmp_path / "w")])
    assert "overlap" in capsys.readouterr().err
