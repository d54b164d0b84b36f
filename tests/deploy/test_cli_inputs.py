"""The `agora` command's own inputs (probe report F1, F3, F4, F12-F14): the simulation YAML of
``--config``, numeric options, ``--seeds``, ``--policies``, ``--threshold``, ``--sites``,
``--out`` and ``agora replay``'s default config. Each bad value exits 2 with one line naming the
option (or the file, line and field), before anything runs, and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agora.deploy import cli_up
from agora.deploy.cli import main

FIX = Path(__file__).parents[1] / "fixtures"
CLUSTER = str(FIX / "cluster_small.yaml")
NODES_CSV = str(FIX / "alibaba_nodes.csv")
JOBS = str(FIX / "jobs_small.jsonl")          # first arrival 3.5 s, last 10 s
SIM = ["simulate", "--cluster", CLUSTER, "--workload", JOBS, "--no-gantt"]


def usage_error(args: list[str], capsys) -> str:
    """Run ``agora ARGS``, expect argparse to refuse it (exit 2); the error text."""
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err   # one line, no usage block
    return err


def input_error(args: list[str], capsys) -> str:
    """Run ``agora ARGS``, expect exit 2 with one line on stderr; that line."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def run_json(args: list[str], capsys) -> dict:
    assert main(args + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- F1: --config, the simulation YAML ------------------------------------------------------

@pytest.mark.parametrize("text, line, field, found", [
    ("objective:\n  w_util: .nan\n", 2, "objective.w_util", "found NaN"),
    ("objective:\n  w_qos: .inf\n", 2, "objective.w_qos", "found Infinity"),
    ("objective: 5\n", 1, "objective", "found 5"),
    ("objective: [w_util]\n", 1, "objective", "found a list"),
    ("objective: abc\n", 1, "objective", "found 'abc'"),
    ("seed: 1\nobjective:\n  slowdown_bound_s: 0\n", 3, "objective.slowdown_bound_s",
     "found 0"),
    ("seed: abc\n", 1, "seed", "found 'abc'"),
    ("seed: -1\n", 1, "seed", "found -1"),
    ("check_invariants: \"no\"\n", 1, "check_invariants", "found 'no'"),
    ("record_attempts: 5\n", 1, "record_attempts", "found 5"),
    ("seed: 1\nseed: 2\n", 2, "seed", "key 'seed' appears twice"),
])
def test_a_bad_config_field_is_one_line_naming_file_line_and_field(tmp_path, capsys, text, line,
                                                                   field, found):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text)
    for cmd in (SIM, ["baselines", "--cluster", CLUSTER, "--workload", JOBS, "--seeds", "1",
                      "--policies", "fifo"]):
        err = input_error(cmd + ["--config", str(cfg)], capsys)
        assert f"{cfg}:{line}: field '{field}': {found}" in err and "expected" in err


@pytest.mark.parametrize("text, problem", [
    ("objective:\n  w_util: [\n", "not valid YAML"),
    ("seed: 1\n---\nseed: 2\n", "not valid YAML"),
    ("? [a]\n: 1\n", "a mapping key is a list or mapping"),
])
def test_config_syntax_errors_are_one_line_not_a_traceback(tmp_path, capsys, text, problem):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text)
    err = input_error(SIM + ["--config", str(cfg)], capsys)
    assert f"{cfg}:" in err and problem in err


def test_config_that_is_not_utf8_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_bytes(b"seed: 1\n\xf1\xf2\n")
    err = input_error(SIM + ["--config", str(cfg)], capsys)
    assert f"{cfg}:2: byte 0xf1 is not UTF-8 text" in err


def test_an_alias_bomb_under_seed_is_refused_quickly(tmp_path, capsys):
    # 8 levels of 10 aliases each: 10^8 values once expanded, from a file of ~300 bytes.
    levels = ["&l0 [" + ", ".join(["x"] * 10) + "]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 8)]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("seed: [" + ", ".join(levels) + "]\n")
    err = input_error(SIM + ["--config", str(cfg), "--json"], capsys)
    assert "anchors and aliases expand to more than" in err


def seed_and_jct(out: dict) -> tuple[int, int, float]:
    return out["seed"], out["config"]["seed"], out["metrics"]["jct_mean_s"]


def test_the_config_seed_is_used_unless_seed_is_given(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("seed: 7\n")
    base = ["simulate", "--cluster", CLUSTER, "--workload", "synthetic:jobs=15", "--policy",
            "random", "--no-gantt"]
    from_file = run_json(base + ["--config", str(cfg)], capsys)
    from_flag = run_json(base + ["--seed", "7"], capsys)
    default = run_json(base, capsys)
    assert seed_and_jct(from_file) == seed_and_jct(from_flag)
    assert seed_and_jct(from_file)[:2] == (7, 7)
    assert seed_and_jct(default)[:2] == (0, 0) and default["metrics"] != from_file["metrics"]
    # --seed given: it decides, and the result says so (the config records the seed that ran).
    both = run_json(base + ["--config", str(cfg), "--seed", "0"], capsys)
    assert seed_and_jct(both) == seed_and_jct(default)


def test_check_invariants_of_the_file_is_used_unless_check_is_given(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("check_invariants: true\n")
    assert run_json(SIM + ["--config", str(cfg)], capsys)["config"]["check_invariants"] is True
    assert run_json(SIM + ["--config", str(cfg), "--no-check"],
                    capsys)["config"]["check_invariants"] is False
    assert run_json(SIM + ["--check"], capsys)["config"]["check_invariants"] is True
    assert run_json(SIM, capsys)["config"]["check_invariants"] is False


@pytest.mark.parametrize("cmd", [
    ["baselines", "--seeds", "2", "--policies", "fifo"],
    ["evaluate", "--seeds", "2", "--checkpoint", "no-such.pt", "--policies", "fifo"],
])
def test_a_seed_in_the_config_is_refused_where_seeds_sets_every_seed(tmp_path, capsys, cmd):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("objective: {w_util: 1}\nseed: 7\n")
    err = input_error(cmd + ["--cluster", CLUSTER, "--workload", JOBS, "--config", str(cfg)],
                      capsys)
    assert f"{cfg}:2: field 'seed'" in err and "--seeds 2" in err


# -- F3: numeric scenario options ------------------------------------------------------------

@pytest.mark.parametrize("opt, value", [
    ("--arrival-window", "inf"), ("--arrival-window", "nan"), ("--arrival-window", "0"),
    ("--arrival-window", "-5"), ("--arrival-window", "1e300"), ("--arrival-window", "x"),
    ("--inflate", "inf"), ("--inflate", "1e12"), ("--inflate", "nan"), ("--inflate", "0.5"),
    ("--load", "0"), ("--load", "nan"), ("--load", "11"),
    ("--seed", "-1"), ("--seed", "1.5"), ("--seed", str(2 ** 63)),
])
def test_a_bad_numeric_option_is_refused_naming_it(capsys, opt, value):
    err = usage_error(SIM + [opt, value], capsys)
    assert f"argument {opt}: found" in err and "expected" in err


def test_arrivals_scaled_past_the_time_bound_name_the_option(capsys):
    # The fixture's first job arrives at 3.5 s: a window of 10^10 s puts the last past 10^10.
    err = input_error(SIM + ["--arrival-window", "1e10"], capsys)
    assert err.startswith("agora simulate: --arrival-window 1e+10: ")
    assert "past the bound of 10,000,000,000 s" in err
    assert main(SIM + ["--arrival-window", "1e9", "--json"]) == 0
    capsys.readouterr()


def test_inflation_past_the_job_bound_names_the_option(monkeypatch, capsys):
    from agora.agents.workloads import transform

    monkeypatch.setattr(transform, "MAX_JOBS", 5)          # the fixture has 3 jobs
    err = input_error(SIM + ["--inflate", "2"], capsys)
    assert err.startswith("agora simulate: --inflate 2: ") and "6 jobs, more than 5" in err
    for factor in (float("inf"), float("nan"), 0.5):
        with pytest.raises(transform.TransformError):
            transform.inflate(_fixture_workload(), factor)


def _fixture_workload():
    from agora.agents.workloads.loader import load_cluster, load_workload

    return load_workload(JOBS, load_cluster(CLUSTER))


# -- F4: --seeds -----------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [
    ["evaluate", "--checkpoint", "no-such.pt"], ["baselines"]])
@pytest.mark.parametrize("value", ["0", "-1", "-2", "x"])
def test_seeds_must_be_at_least_one(capsys, cmd, value):
    err = usage_error(cmd + ["--cluster", CLUSTER, "--workload", JOBS, "--seeds", value], capsys)
    assert "argument --seeds: found" in err and "a whole number >= 1" in err


@pytest.mark.parametrize("cmd", [
    ["evaluate", "--checkpoint", "no-such.pt"], ["baselines"]])
@pytest.mark.parametrize("value", ["10001", "99999999999999999999"])
def test_seeds_has_an_upper_bound(monkeypatch, capsys, cmd, value):
    # a huge N made evaluate fail in list(range(N)) with an OverflowError traceback and
    # baselines run for ever: refused when the command line is parsed, naming the bound
    from agora.agents.sim import runner

    monkeypatch.setattr(runner, "run_baselines", lambda *a, **k: pytest.fail("ran"))
    err = usage_error(cmd + ["--cluster", CLUSTER, "--workload", JOBS, "--seeds", value], capsys)
    assert f"argument --seeds: found {value}" in err and "<= 10,000" in err


def test_evaluate_without_seeds_is_a_value_error_not_an_attribute_error():
    from agora.agents.learn.evaluate import evaluate
    from agora.agents.sim.runner import Scenario

    with pytest.raises(ValueError, match="at least one seed"):
        evaluate("no-such.pt", Scenario(), seeds=[])


# -- F12: agora replay's default config ------------------------------------------------------

def test_replay_finds_its_default_config_from_any_folder(tmp_path, monkeypatch, capsys):
    assert Path(cli_up.DEFAULT_REPLAY_CONFIG).is_absolute()
    assert Path(cli_up.DEFAULT_REPLAY_CONFIG).is_file()
    monkeypatch.chdir(tmp_path)
    # --speed 0 is refused after the config is read and before anything starts.
    err = input_error(["replay", "--out", str(tmp_path / "out"), "--speed", "0"], capsys)
    assert "--speed" in err and "cannot read" not in err


# -- F13: agora bound ------------------------------------------------------------------------

BOUND = ["bound", "--cluster", CLUSTER, "--workload", "synthetic:jobs=2"]


def test_bound_takes_no_config(tmp_path, capsys):
    err = usage_error(BOUND + ["--config", str(tmp_path / "missing.yaml")], capsys)
    assert "unrecognized arguments: --config" in err


@pytest.mark.parametrize("opt, value", [
    ("--time-limit", "-1"), ("--time-limit", "nan"), ("--time-limit", "0"),
    ("--time-limit", "inf"), ("--max-instances", "-1"), ("--seed", "-1")])
def test_bound_numbers_are_checked(capsys, opt, value):
    err = usage_error(BOUND + [opt, value], capsys)
    assert f"argument {opt}: found {value}" in err


# -- F14: --policies, --threshold, --sites, --out --------------------------------------------

@pytest.mark.parametrize("cmd", [
    ["baselines", "--seeds", "1"], ["evaluate", "--checkpoint", "no-such.pt", "--seeds", "1"]])
@pytest.mark.parametrize("value, why", [
    ("tetris,nope", "unknown policy 'nope'"), (",", "an empty name"),
    ("tetris,tetris", "'tetris' is named twice"), ("srpt-cap:0", "srpt-cap"),
    ("srpt-cap:2,srpt-cap:2.0", "'srpt-cap:2.0' is named twice (as 'srpt-cap:2' before it)"),
    ("weighted-fair:-1,weighted-fair:-1e0", "named twice")])
def test_policies_are_checked_naming_the_option(capsys, cmd, value, why):
    err = usage_error(cmd + ["--cluster", CLUSTER, "--workload", JOBS, "--policies", value],
                      capsys)
    assert f"agora {cmd[0]}: error: argument --policies: " in err and why in err


def test_policies_with_spaces_are_read(capsys):
    out = run_json(["baselines", "--cluster", CLUSTER, "--workload", JOBS, "--seeds", "1",
                    "--policies", "fifo, sjf"], capsys)
    assert sorted(out["policies"]) == ["fifo", "sjf"]
    assert len(out["policies"]["fifo"]["jct_mean_s"]["values"]) == 1


@pytest.mark.parametrize("cmd", [SIM, ["evaluate", "--cluster", CLUSTER, "--workload", JOBS,
                                       "--checkpoint", "no-such.pt"]])
@pytest.mark.parametrize("value", ["nan", "-5", "inf"])
def test_threshold_must_be_a_finite_number_at_least_zero(capsys, cmd, value):
    assert "argument --threshold: found" in usage_error(cmd + ["--threshold", value], capsys)


def test_a_policy_path_too_long_to_look_at_is_a_usage_error(capsys):
    # Path.is_file raised OSError inside argparse's type check: a traceback, exit 1
    err = usage_error(SIM + ["--policy", "p" * 300 + ".pt"], capsys)
    assert "argument --policy" in err and "nor a checkpoint file" in err


@pytest.mark.parametrize("opt, value", [("--threshold", "0.5"), ("--comm", "none")])
def test_checkpoint_options_with_a_baseline_policy_are_refused(capsys, opt, value):
    err = input_error(SIM + ["--policy", "tetris", opt, value], capsys)
    assert f"{opt} {value}: applies to a checkpoint policy only" in err


@pytest.mark.parametrize("opt, value", [("--sites", "0"), ("--sites", "3"),
                                        ("--split", "by-model")])
def test_csv_only_options_are_refused_with_a_yaml_cluster(capsys, opt, value):
    err = input_error(SIM + [opt, value], capsys)
    assert f"{opt} {value}: applies to an Alibaba node-list .csv cluster only" in err
    err = input_error(["simulate", "--cluster", "default", opt, value], capsys)
    assert f"{opt} {value}: applies" in err


def test_sites_still_splits_a_node_list_csv(capsys):
    out = run_json(["simulate", "--cluster", NODES_CSV, "--workload", "synthetic:jobs=5",
                    "--sites", "2", "--no-gantt"], capsys)
    assert out["scenario"]["sites"] == 2


def test_out_that_is_a_file_fails_before_the_simulation_runs(tmp_path, monkeypatch, capsys):
    from agora.agents.sim import runner

    def must_not_run(*a, **k):
        raise AssertionError("the simulation ran before --out was checked")

    monkeypatch.setattr(runner, "run_one", must_not_run)
    a_file = tmp_path / "exists.txt"
    a_file.write_text("x")
    err = input_error(SIM + ["--out", str(a_file)], capsys)
    assert f"--out {a_file}: a file, not a folder" in err
    err = input_error(SIM + ["--out", str(a_file / "sub")], capsys)
    assert f"--out {a_file / 'sub'}: cannot make the folder" in err


def test_gantt_charts_without_recorded_runs_are_refused_not_drawn_empty(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("seed: 1\nrecord_attempts: false\n")
    out = tmp_path / "out"
    err = input_error(SIM[:-1] + ["--config", str(cfg), "--out", str(out)], capsys)
    assert f"{cfg}:2: field 'record_attempts'" in err and "--no-gantt" in err
    assert not out.exists()
    assert main(SIM + ["--config", str(cfg), "--out", str(out)]) == 0
    assert (out / "result.json").is_file()


BATCH = ("7000,7100,30,301,2,Terminated,50,0.25\n"      # v2017 rows: three one-task jobs
         "7010,7300,31,310,1,Terminated,100,0.5\n"
         "7020,7400,32,320,1,Terminated,100,0.5\n")


def test_a_workload_option_reaches_the_trace_reader(tmp_path, capsys):
    # max_jobs, machine_mem_mib, arrival_gap_s, rigid ... were Python API only
    p = tmp_path / "batch_task.csv"
    p.write_text(BATCH)
    args = ["simulate", "--cluster", CLUSTER, "--workload", str(p), "--no-gantt", "--json",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["jobs"] == 3
    assert main(args + ["--workload-option", "max_jobs=2"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["jobs"] == 2


@pytest.mark.parametrize("opts,words", [
    (["nope=1"], "option 'nope' does not apply to batch_task.csv files"),
    (["max_jobs"], "--workload-option: 'max_jobs'; expected NAME=VALUE"),
    (["max_jobs=1", "max_jobs=2"], "--workload-option: max_jobs given twice"),
    (["max_jobs=0"], "field 'max_jobs'"),
])
def test_a_bad_workload_option_is_one_line_naming_it(tmp_path, capsys, opts, words):
    p = tmp_path / "batch_task.csv"
    p.write_text(BATCH)
    args = ["simulate", "--cluster", CLUSTER, "--workload", str(p), "--no-gantt",
            "--out", str(tmp_path / "out")]
    for o in opts:
        args += ["--workload-option", o]
    assert words in input_error(args, capsys)



def test_a_missing_sub_command_gets_no_hint_about_ids(capsys):
    """A review: `agora schedule` said how to pass an id starting with '-'."""
    err = usage_error(["schedule"], capsys)
    assert "required" in err and "goes after --" not in err, err


def test_the_printed_scenario_names_sites_and_split_only_for_a_node_list(capsys):
    """A probe: a YAML cluster's run printed 'sites': 8, 'split': 'stratified', which apply
    to an Alibaba node list only."""
    from agora.agents.sim.runner import Scenario

    assert "sites" not in Scenario(cluster="deploy/demo/cluster.yaml").shown()
    assert "split" not in Scenario().shown()
    shown = Scenario(cluster="nodes.CSV", sites=3).shown()
    assert shown["sites"] == 3 and shown["split"] == "stratified"
    assert main(["simulate", "--cluster", "deploy/demo/cluster.yaml", "--workload",
                 "synthetic:jobs=3"]) == 0
    err = capsys.readouterr().err
    assert "scenario: {'cluster': 'deploy/demo/cluster.yaml'" in err and "'sites'" not in err
