"""What a probe of the offline commands found (2026-12-04): ``agora bound`` at the edges of
CP-SAT -- numbers too large for the solver's 64-bit objective skip that solve with a line
saying why (the analytic bounds still print, no traceback, exit 0), ``--max-instances`` is
refused past what an exact solve handles -- and simulate's JSON of a run that completed no
job (null job times, as the table's '-')."""

from __future__ import annotations

import json

import pytest

from agora.deploy.cli import main

CLUSTER = """\
sites:
  - name: a
    nodes: [{name: n, cpu: 4, mem: 8192}]
"""


def test_weights_and_durations_too_large_for_cpsat_skip_its_solve_and_say_why(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "j.jsonl").write_text("".join(
        json.dumps({"id": f"j{i}", "arrival": 0, "origin": "a", "weight": 1_000_000,
                    "tasks": [{"id": "t", "duration": 100_000_000,
                               "demand": {"cpu": 1, "mem": 100}}]}) + "\n" for i in range(10)))
    rc = main(["bound", "--cluster", str(tmp_path / "c.yaml"), "--workload",
               str(tmp_path / "j.jsonl"), "--time-limit", "1"])   # (the makespan's solve)
    out, err = capsys.readouterr()
    assert rc == 0 and "Traceback" not in out + err
    assert "mean_jct" in out                                   # the analytic bounds stand
    assert "weighted_completion skipped: the solver rejected the model (Possible integer " \
           "overflow" in out


def test_max_instances_past_an_exact_solve_is_refused_naming_the_limit(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:                      # argparse's own exit
        main(["bound", "--max-instances", "1000"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "--max-instances: found 1000; expected a whole number >= 0 and <= 200" in err


def test_job_times_of_a_run_that_completed_no_job_are_null_in_json(tmp_path, capsys):
    """A probe: --json said jct_mean_s 0.0 (a perfect result) where the table says '-'."""
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "j.jsonl").write_text(json.dumps(
        {"id": "big", "arrival": 0, "origin": "a", "tasks": [
            {"id": "t", "duration": 5, "demand": {"cpu": 64, "mem": 100}}]}) + "\n")
    assert main(["simulate", "--cluster", str(tmp_path / "c.yaml"), "--workload",
                 str(tmp_path / "j.jsonl"), "--no-gantt", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    assert m["jobs_completed"] == 0 and m["jobs_unschedulable"] == 1
    for k in ("jct_mean_s", "jct_p95_s", "jct_weighted_mean_s", "slowdown_mean"):
        assert m[k] is None, k


def test_a_threshold_for_a_checkpoint_that_does_not_use_the_trigger_is_refused(tmp_path,
                                                                               capsys):
    """A review: without --comm, a checkpoint trained with comm none took --threshold and
    ignored it."""
    import torch

    from agora.agents.learn import checkpoint
    from agora.agents.learn.learned_policy import AgentConfig, Agents

    torch.manual_seed(0)
    ck = tmp_path / "none.pt"
    checkpoint.save(ck, agents=Agents(AgentConfig(comm="none")), extra={})
    for argv in (["simulate", "--policy", str(ck), "--no-gantt"],
                 ["evaluate", "--checkpoint", str(ck), "--seeds", "1"]):
        assert main([*argv, "--threshold", "0.3"]) == 2
        err = capsys.readouterr().err
        assert "--threshold 0.3 with the checkpoint's comm none" in err, err


def test_a_bad_checkpoint_leaves_no_out_folder_and_result_json_is_what_json_says(
        tmp_path, capsys):
    """A probe: a bad checkpoint failed the run after --out was made (an empty folder and
    its parents left behind); result.json, written before the charts, lacked their list."""
    bad = tmp_path / "t.pt"
    bad.write_text("not a checkpoint")
    out = tmp_path / "deep" / "er" / "out"
    assert main(["simulate", "--policy", str(bad), "--workload", "synthetic:jobs=3",
                 "--out", str(out)]) == 2
    assert "not a checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists()
    (tmp_path / "kept").mkdir()                     # a folder that was there stays
    assert main(["simulate", "--policy", str(bad), "--workload", "synthetic:jobs=3",
                 "--out", str(tmp_path / "kept")]) == 2
    assert (tmp_path / "kept").is_dir()
    capsys.readouterr()
    assert main(["simulate", "--policy", "sjf", "--workload", "synthetic:jobs=3", "--out",
                 str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert json.loads((out / "result.json").read_text()) == shown and "gantt" in shown
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("gantt")) == \
        ["result.json"]


def test_an_empty_policy_is_named_not_argparses_function(capsys):
    # a probe: "argument --policy: invalid policy_arg value: ''"
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--policy", ""])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "policy_arg" not in err and "got ''; expected a baseline" in err


def test_simulate_of_a_checkpoint_says_what_its_agents_sent(capsys):
    """A probe: --comm none and --comm always gave the same output, no message figure."""
    from pathlib import Path

    ck = str(Path(__file__).resolve().parents[2] / "agents/learn/checkpoints/learned-synE.pt")
    sent = {}
    for comm in ("none", "always"):
        assert main(["simulate", "--policy", ck, "--workload", "synthetic:jobs=8",
                     "--no-gantt", "--json", "--comm", comm]) == 0
        m = json.loads(capsys.readouterr().out)["messages"]
        assert m["mode"] == comm and m["msgs_possible"] > 0
        sent[comm] = m["msgs_sent"]
    assert sent == {"none": 0, "always": sent["always"]} and sent["always"] > 0
    assert main(["simulate", "--policy", "sjf", "--workload", "synthetic:jobs=8",
                 "--no-gantt", "--json"]) == 0
    assert "messages" not in json.loads(capsys.readouterr().out)
