"""bench/routing.py and bench/holding.py run end to end on a tiny workload (one worker): a row
per scenario variant, the tuned value is the family's best, the paired differences are those
of the per-seed JCTs, and the oracle (switching among each seed's best arms) is never worse
than the best arm; a bad flag is refused naming it."""

from __future__ import annotations

import json
import statistics

import pytest

from bench import routing


def test_routing_headroom_compares_the_rules_paired_and_runs_the_oracle(tmp_path, capsys):
    out = tmp_path / "r"
    assert routing.main(["--seeds", "2", "--jobs", "8", "--data", "200,50000",
                         "--waits", "10,300", "--oracle-seeds", "1", "--epochs", "2",
                         "--top", "2", "--workers", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| 200 |" in table and "| 50000 |" in table
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["rows"]) == 2
    for row in data["rows"]:
        jct = row["jct"]
        delays = [n for n in jct if n.startswith("srpt-delay:")]
        assert delays == ["srpt-delay:10", "srpt-delay:300"]
        assert row["delay"] == min(delays, key=lambda n: statistics.mean(jct[n]))
        want = [100 * (e - s) / s for e, s in zip(jct["srpt-eft"], jct["srpt"])]
        assert row["eft_vs_srpt"]["values"] == pytest.approx(want)
        assert row["eft_vs_srpt"]["mean"] == pytest.approx(statistics.mean(want))
        best = min(jct[n][0] for n in jct)
        assert row["oracle"][0] <= best + 1e-6


@pytest.mark.parametrize("flag,value", [("--data", "200,-1"), ("--waits", "x"),
                                        ("--data", "nan")])
def test_routing_refuses_bad_numbers_naming_the_flag(flag, value, capsys):
    with pytest.raises(SystemExit):
        routing.main([flag, value])
    assert f"{flag} {value!r}: expected comma-separated numbers >= 0" in capsys.readouterr().err


def test_holding_headroom_tunes_the_reserve_and_runs_the_oracle(tmp_path, capsys):
    from bench import holding

    out = tmp_path / "h"
    assert holding.main(["--seeds", "2", "--jobs", "8", "--gpu", "0.4", "--reserves", "0.5,2",
                         "--oracle-seeds", "1", "--epochs", "2", "--top", "2", "--workers", "1",
                         "--out", str(out)]) == 0
    assert "| 0.4 |" in capsys.readouterr().out
    (row,) = json.loads(out.with_suffix(".json").read_text())["rows"]
    jct = row["jct"]
    assert row["reserve"] == min(["srpt-reserve:0.5", "srpt-reserve:2"],
                                 key=lambda n: statistics.mean(jct[n]))
    want = [100 * (e - s) / s for e, s in zip(jct[row["reserve"]], jct["srpt"])]
    assert row["reserve_vs_srpt"]["values"] == pytest.approx(want)
    assert row["oracle"][0] <= min(jct[n][0] for n in jct) + 1e-6
    with pytest.raises(SystemExit):
        holding.main(["--gpu", "1.5"])
    assert "--gpu '1.5': expected shares in [0, 1]" in capsys.readouterr().err
