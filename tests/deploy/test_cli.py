"""The `agora` command as a user meets it: help, results as tables and JSON, files written,
and bad input answered with file, line and field (exit status 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agora.deploy.cli import main

FIX = Path(__file__).parents[1] / "fixtures"
CLUSTER = str(FIX / "cluster_small.yaml")
JOBS = str(FIX / "jobs_small.jsonl")


@pytest.mark.parametrize("cmd", [[], ["simulate"], ["baselines"], ["bound"]])
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage: agora" in capsys.readouterr().out


def test_simulate_prints_json_metrics(capsys):
    assert main(["simulate", "--cluster", CLUSTER, "--workload", JOBS, "--policy", "sjf",
                 "--json", "--check"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "sjf" and out["metrics"]["tasks_lost"] == 0
    # The fixture's job j0 asks for 1000 cores: reported, with the reason, never dropped.
    assert out["metrics"]["jobs"] == out["metrics"]["jobs_completed"] + 1
    assert out["unschedulable"] == [["j0", "huge",
                                     "needs 1000 cpu cores; the largest node has 128"]]
    assert out["scenario"]["workload"] == JOBS


def test_simulate_writes_result_and_one_gantt_per_site(tmp_path, capsys):
    assert main(["simulate", "--cluster", CLUSTER, "--workload", JOBS, "--out",
                 str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| JCT mean s" in table and "| lost" in table
    assert json.loads((tmp_path / "result.json").read_text())["metrics"]["tasks_lost"] == 0
    pngs = sorted(p.name for p in tmp_path.glob("gantt-*.png"))
    assert pngs == ["gantt-east.png", "gantt-edge.png", "gantt-west.png"]
    assert all((tmp_path / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_baselines_compares_every_policy_over_seeds(capsys):
    assert main(["baselines", "--workload", "synthetic:jobs=25", "--seeds", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["policies"]) == {"random", "round-robin", "least-loaded", "fifo", "sjf",
                                    "srpt", "tetris", "drf", "easy-backfill", "fgd", "srpt-eft"}
    jct = out["policies"]["fifo"]["jct_mean_s"]
    # two seeds give no usable interval: null, as the table's n/a (a probe read 0.0)
    assert len(jct["values"]) == 2 and jct["ci95"] is None


def test_the_json_summary_gives_an_interval_from_three_seeds_on():
    from agora.agents.sim.report import summarise

    runs = {"p": [{"jct_mean_s": x} for x in (10.0, 12.0, 14.0)]}
    assert summarise(runs)["p"]["jct_mean_s"]["ci95"] > 0
    assert summarise({"p": runs["p"][:1]})["p"]["jct_mean_s"]["ci95"] is None


def test_bad_job_file_names_file_line_and_field(tmp_path, capsys):
    bad = tmp_path / "jobs.jsonl"
    lines = (FIX / "jobs_small.jsonl").read_text().splitlines()
    first = next(i for i, l in enumerate(lines) if l.startswith("{"))
    rec = json.loads(lines[first])
    rec["tasks"][0]["duration"] = -5
    lines[first] = json.dumps(rec)
    bad.write_text("\n".join(lines) + "\n")
    assert main(["simulate", "--cluster", CLUSTER, "--workload", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{first + 1}" in err and "tasks[0].duration" in err


def test_unknown_workload_kind_says_what_is_accepted(tmp_path, capsys):
    p = tmp_path / "w.txt"
    p.write_text("hello\n")
    assert main(["simulate", "--workload", str(p)]) == 2
    assert "expected" in capsys.readouterr().err


def test_console_entry_point_runs_the_default(tmp_path):
    exe = Path(sys.executable).parent / "agora"
    r = subprocess.run([str(exe), "simulate", "--workload", "synthetic:jobs=40", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["metrics"]["tasks_lost"] == 0


def test_a_parameterised_baseline_runs_with_the_malleable_model(tmp_path, capsys):
    sim = tmp_path / "sim.yaml"
    sim.write_text("malleable: {contention: 0.2, warmup_s: 3}\n")
    assert main(["simulate", "--cluster", CLUSTER, "--workload", JOBS, "--policy",
                 "srpt-cap:2", "--config", str(sim), "--json", "--check"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "srpt-cap:2" and out["metrics"]["tasks_lost"] == 0
    assert out["config"]["malleable"] == {"contention": 0.2, "warmup_s": 3.0}
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--cluster", CLUSTER, "--workload", JOBS, "--policy", "srpt-cap:0"])
    assert e.value.code == 2
    assert "srpt-cap: the cap must be >= 1 (or inf), got 0.0" in capsys.readouterr().err
