"""Runs over a workload without jobs, and ``agora train``'s numbers: each refused with one
line naming the file or the option (exit 2), before anything is written or started, never a
traceback. (The other inputs of the ``agora`` command: test_cli_inputs.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.test_cli_inputs import CLUSTER, input_error, usage_error

# -- a workload without jobs --------------------------------------------------------------

@pytest.mark.parametrize("name, text", [("empty.jsonl", ""), ("comments.jsonl", "# none\n\n"),
                                        ("empty.swf", "; header only\n")])
@pytest.mark.parametrize("command", [
    ["simulate", "--no-gantt"], ["baselines", "--seeds", "1", "--policies", "fifo"], ["bound"],
    ["train", "--steps", "10"],
    ["evaluate", "--checkpoint", str(Path(__file__).parents[2] / "agents" / "learn" /
                                     "checkpoints" / "learned-synE.pt"), "--seeds", "1"]])
def test_a_workload_without_jobs_is_refused_by_every_run(command, name, text, tmp_path,
                                                         capsys):
    # an empty .jsonl is a valid workload (agora up takes jobs as they are submitted), but a
    # run over it used to print a table of zeros and exit 0
    p = tmp_path / name
    p.write_text(text)
    out = tmp_path / "out"
    extra = ["--out", str(out)] if command[0] == "train" else []
    err = input_error(command + ["--cluster", CLUSTER, "--workload", str(p)] + extra, capsys)
    assert f"{p}: has no jobs" in err and "at least one job" in err
    assert not out.exists()                 # refused before anything was written


# -- agora train's numbers ------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--steps", "-5"), ("--train-jobs", "0"), ("--bc-episodes", "-2"), ("--lr", "nan"),
    ("--lr", "-1"), ("--k", "0"), ("--hidden", "-3"), ("--code-dim", "0"), ("--bits", "99"),
    ("--val-episodes", "0"), ("--rounds", "0"), ("--local-steps", "0"),
    ("--trim-beta", "0.7"), ("--max-nodes", "0"), ("--setup-load", "-1"), ("--workers", "0"),
    ("--workers", "65")])
def test_train_refuses_a_bad_number_naming_the_option(option, value, tmp_path, capsys):
    # these once ran into a ZeroDivisionError (--k 0), a negative tensor size (--hidden -3),
    # an IndexError (--bc-episodes -2) or trained silently on nothing (--steps -5)
    out = tmp_path / "out"
    err = usage_error(["train", "--out", str(out), option, value], capsys)
    assert f"argument {option}: found {value}" in err and "expected" in err
    assert not out.exists()


def test_train_with_nothing_to_train_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    err = input_error(["train", "--out", str(out), "--steps", "0", "--bc-episodes", "0"],
                      capsys)
    assert "nothing to train" in err and not out.exists()


def test_episode_workers_with_federated_training_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    err = input_error(["train", "--out", str(out), "--federated", "--workers", "2"], capsys)
    assert "--workers 2 with --federated" in err and "--workers 1" in err and not out.exists()


def test_replay_of_a_workload_without_jobs_is_refused_before_anything_starts(tmp_path, capsys):
    p = tmp_path / "none.jsonl"
    p.write_text("# no jobs yet\n")
    err = input_error(["replay", "--workload", str(p), "--out", str(tmp_path / "out")], capsys)
    assert f"{p}: has no jobs, so there is nothing to replay" in err
