"""Inputs an outside probe found mishandled (2026-12-02), each now refused with one line that
names the file or the option: a FIFO or a terabyte file where a file is read (they blocked
forever or ran out of memory), a deeply nested --config of the service commands (a
RecursionError), reader options read loosely (``rigid=no`` was rigid, ``qos_weights`` could
not be given at all, ``seed`` was ignored for a synthetic workload), and numbers without an
upper bound (certificates for 99,999,999 days, a billion replicas, replay at speed inf)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deploy.test_cli_inputs import input_error, usage_error

CKPT = Path(__file__).parents[2] / "agents" / "learn" / "checkpoints" / "learned-synE.pt"

CHECKPOINT = Path(__file__).parents[2] / "agents" / "learn" / "checkpoints" / "learned-synE.pt"

ONE_JOB = ('{"id":"j","arrival":0,"origin":"a","tasks":[{"id":"t","duration":10,'
           '"demand":{"cpu":1,"mem":1}}]}\n')
SWF = "1 0 0 100 4 -1 2048 4 -1 -1 1 1 1 1 1 1 -1 -1\n"
PODS = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\np1,1000,100,0,0,,LS,Succeeded,0,100,10\n"
        "p2,1000,100,0,0,,BE,Succeeded,0,100,10\n")


@pytest.mark.timeout(60)         # a reader that opened the FIFO would block until this
@pytest.mark.parametrize("command", [["simulate", "--no-gantt", "--workload"],
                                     ["simulate", "--no-gantt", "--config"],
                                     ["submit"], ["jobs", "--config"]])
def test_a_fifo_is_refused_without_being_opened(command, tmp_path, capsys):
    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    extra = []
    if command == ["submit"]:
        (tmp_path / "up.yaml").write_text(f"policy: {CHECKPOINT}\nout: {tmp_path / 'out'}\n")
        extra = ["--config", str(tmp_path / "up.yaml")]
    err = input_error(command + [str(fifo)] + extra, capsys)
    assert str(fifo) in err and ("not a file" in err or "not a regular file" in err), err


@pytest.mark.timeout(60)
def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, capsys):
    from agora.agents.workloads.textfile import MAX_TEXT_BYTES
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.truncate(MAX_TEXT_BYTES + 1)                      # sparse: no disk used
    err = input_error(["simulate", "--no-gantt", "--workload", str(big)], capsys)
    assert f"{big}: {MAX_TEXT_BYTES + 1:,} bytes, over the limit of 1,024 MiB" in err


def test_a_deeply_nested_service_config_is_refused_naming_it(tmp_path, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    err = input_error(["jobs", "--config", str(deep)], capsys)
    assert f"{deep}: nested too deeply" in err


@pytest.mark.parametrize("value", ["no", "2", "0.5", "off"])
def test_rigid_takes_true_or_false_only(value, tmp_path, capsys):
    (tmp_path / "t.swf").write_text(SWF)
    err = input_error(["simulate", "--no-gantt", "--workload", str(tmp_path / "t.swf"),
                       "--workload-option", f"rigid={value}"], capsys)
    assert "field 'rigid'" in err and "true or false" in err


def test_qos_weights_are_given_as_class_weight_pairs(tmp_path, capsys):
    from agora.agents.domain import Cluster
    from agora.agents.workloads.alibaba import read_alibaba_pods
    from agora.agents.workloads.loader import load_cluster

    (tmp_path / "pods.csv").write_text(PODS)
    cl: Cluster = load_cluster("default")
    wl = read_alibaba_pods(tmp_path / "pods.csv", cl, qos_weights="LS:3,BE:0.5")
    assert [j.weight for j in wl.jobs] == [3.0, 0.5]
    for bad in ("2", "LS", "LS:x", "LS:1,LS:2", "true"):
        err = input_error(["simulate", "--no-gantt", "--workload", str(tmp_path / "pods.csv"),
                           "--workload-option", f"qos_weights={bad}"], capsys)
        assert "field 'qos_weights'" in err and "LS:2,BE:1" in err, err
    for bad in ("LS:1e7", "LS:1e308", "LS:0"):   # a job's weight is at most 10^6 (a probe:
        err = input_error(["simulate", "--no-gantt", "--workload", str(tmp_path / "pods.csv"),
                           "--workload-option", f"qos_weights={bad}"], capsys)   # overflowed)
        assert "field 'qos_weights['LS']'" in err and "at most 1,000,000" in err, err
    # a class no pod of the file has (a typo) was taken and ignored (a probe)
    err = input_error(["simulate", "--no-gantt", "--workload", str(tmp_path / "pods.csv"),
                       "--workload-option", "qos_weights=LS:2,Ls:3"], capsys)
    assert "field 'qos_weights['Ls']'" in err and "one of the file's classes: BE, LS" in err


def test_training_on_a_workload_no_node_can_run_is_refused_naming_a_job(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("sites:\n  - name: a\n    nodes: [{name: n, cpu: 4, "
                                     "mem: 8192}]\n")
    (tmp_path / "j.jsonl").write_text('{"id": "j", "arrival": 0, "origin": "a", "tasks": '
                                      '[{"id": "t", "duration": 5, "demand": {"cpu": 64, '
                                      '"mem": 100}}]}\n')
    err = input_error(["train", "--cluster", str(tmp_path / "c.yaml"), "--workload",
                       str(tmp_path / "j.jsonl"), "--steps", "20", "--out",
                       str(tmp_path / "out")], capsys)
    assert "no job can run on this cluster: job j task t needs 64 cpu cores" in err, err
    assert not (tmp_path / "out").exists()


def test_a_seed_option_for_a_synthetic_workload_is_refused(capsys):
    err = input_error(["simulate", "--no-gantt", "--workload", "synthetic",
                       "--workload-option", "seed=7"], capsys)
    assert "synthetic:seed=N" in err


@pytest.mark.parametrize("argv, words", [
    (["certs", "--days", "99999999", "--out", "X"], "argument --days: found 99999999"),
    (["certs", "--replicas", "100000000", "--out", "X"], "argument --replicas"),
    (["keys", "--replicas", "1000000000", "--out", "X"], "argument --replicas: found"),
    (["keys", "--replicas", "0", "--out", "X"], ">= 1 and <= 100"),
])
def test_key_and_certificate_counts_are_bounded(argv, words, tmp_path, capsys):
    argv = [str(tmp_path / "out") if a == "X" else str(CKPT) if a == "CKPT" else a
            for a in argv]
    assert words in usage_error(argv, capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("speed", ["inf", "nan", "1e-320", "0"])
def test_replay_speed_is_bounded(speed, tmp_path, capsys):
    err = input_error(["replay", "--speed", speed, "--out", str(tmp_path / "o")], capsys)
    assert "--speed" in err and "<= 1,000,000" in err


@pytest.mark.parametrize("argv, words", [
    (["keys", "--replicas", "4", "--clients", "site:../x", "--out", "X"],
     "'site:../x' is no client id"),
    # a probe: ids of no kind the coordinator knows were written (no role: a dead key)
    (["keys", "--replicas", "4", "--clients", "bogus", "--out", "X"], "'bogus' is no client id"),
    (["keys", "--replicas", "4", "--clients", "x:y/2", "--out", "X"], "'x:y/2' is no client id"),
    (["keys", "--replicas", "4", "--clients", "replica:9", "--out", "X"],
     "'replica:9' is no client id"),
    (["certs", "--sites", "a,a", "--out", "X"], "names a site twice"),
    (["certs", "--sites", "../x", "--out", "X"], "--sites: name '../x'"),
    (["certs", "--hosts", "a b", "--out", "X"], "'a b' is neither a DNS name nor an IP"),
    # a probe: --hosts '' wrote server certificates valid for no host; 999.1.1.1 a DNS name
    (["certs", "--hosts", "", "--out", "X"], "names no host"),
    (["certs", "--hosts", ",,", "--out", "X"], "names no host"),
    (["certs", "--hosts", "999.1.1.1", "--out", "X"], "'999.1.1.1' is neither"),
    # a probe: 0 replicas wrote a CA and a client certificate (agora keys refuses 0)
    (["certs", "--replicas", "0", "--out", "X"], "--replicas: got 0; expected 3f+1"),
    (["certs", "--replicas", "2", "--out", "X"], "--replicas: got 2; expected 3f+1"),
    (["train", "--max-nodes", "4", "--out", "X"], "--max-nodes without --federated"),
    (["train", "--secagg", "--out", "X"], "--secagg without --federated"),
    (["train", "--trim-beta", "0.1", "--out", "X"], "--trim-beta without --federated"),
    (["train", "--rounds", "3", "--strategy", "median", "--out", "X"],
     "--rounds, --strategy without --federated"),
    # a probe: taken and ignored
    (["train", "--federated", "--trim-beta", "0.3", "--out", "X"],
     "--trim-beta 0.3 with --strategy fedavg"),
    (["train", "--curriculum-steps", "100", "--out", "X"],
     "--curriculum-steps 100 without --curriculum-jobs"),
    # a probe: episodes of 100 jobs shrinking to 10
    (["train", "--train-jobs", "10", "--curriculum-jobs", "100", "--out", "X"],
     "--curriculum-jobs 100 with --train-jobs 10"),
    (["train", "--imitation-steps", "100", "--out", "X"],
     "--imitation-steps 100 with --imitation-coef 0"),
    (["train", "--federated", "--steps", "100", "--out", "X"], "--steps 100 with --federated"),
    (["train", "--comm", "none", "--threshold", "0.2", "--out", "X"],
     "--threshold 0.2 with --comm none"),
    (["train", "--comm", "always", "--threshold", "0.2", "--out", "X"],
     "--threshold 0.2 with --comm always"),
    # a probe: simulate and evaluate took it and ran without it, as train did before
    (["simulate", "--policy", "CKPT", "--comm", "none", "--threshold", "0.3", "--no-gantt"],
     "--threshold 0.3 with --comm none"),
    (["evaluate", "--checkpoint", "CKPT", "--comm", "always", "--threshold", "0.3"],
     "--threshold 0.3 with --comm always"),
    (["train", "--workload", "synthetic:load=0.9,jobs=40", "--out", "X"],
     "jobs= sets no training episode's length; expected --train-jobs"),
    (["train", "--workload", "synthetic", "--workload-option", "jobs=40", "--out", "X"],
     "jobs= sets no training episode's length"),
    (["train", "--workload", "synthetic:seed=3", "--out", "X"],
     "seed= would draw every training and validation episode alike"),
    (["submit", "X", "--timeout", "5"], "--timeout 5 without --follow"),
    # a probe: taken and ignored, or refused naming a field, not the flag
    (["train", "--federated", "--max-nodes", "8", "--out", "X"],
     "--max-nodes with --setup synthetic-noniid: it applies to --setup alibaba-by-type only"),
    (["train", "--federated", "--traces", "/tmp", "--setup-load", "2", "--out", "X"],
     "--traces, --setup-load with --setup synthetic-noniid: they apply"),
    # a probe: '' wrote a training run into the current folder, and a simulation nowhere
    (["train", "--steps", "10", "--out", ""], "--out '': an empty path"),
    (["simulate", "--no-gantt", "--out", ""], "--out '': an empty path"),
    (["simulate", "--no-gantt", "--workload", ""], "'': an empty name"),
])
def test_names_and_flags_that_cannot_apply_are_refused(argv, words, tmp_path, capsys):
    # a site or client name becomes a file name (site-<name>.key): '../x' wrote outside
    argv = [str(tmp_path / "out") if a == "X" else str(CKPT) if a == "CKPT" else a
            for a in argv]
    assert words in input_error(argv, capsys)
    assert not (tmp_path / "out").exists()


def test_keys_take_any_3f_plus_1_replicas_up_to_the_bound(tmp_path, capsys):
    from agora.deploy.cli import main
    assert main(["keys", "--replicas", "1", "--out", str(tmp_path / "one.yaml")]) == 0
    assert "expected 3f+1" in input_error(["keys", "--replicas", "3", "--out",
                                           str(tmp_path / "three.yaml")], capsys)


def test_keys_into_a_folder_name_the_folder(tmp_path, capsys):
    err = input_error(["keys", "--replicas", "4", "--out", str(tmp_path)], capsys)
    assert f"{tmp_path}: a folder, not a file" in err


def test_certificates_take_ip_addresses_and_wildcard_names(tmp_path, capsys):
    from agora.deploy.cli import main
    assert main(["certs", "--sites", "east", "--replicas", "1", "--hosts",
                 "localhost,127.0.0.1,::1,*.example.org", "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "site-east.crt").is_file()


@pytest.mark.parametrize("damage, words", [("nan", "holds NaN or infinite weights"),
                                           ("huge", "expected at most 10000"),
                                           ("empty", "weights do not fit the configuration")])
def test_a_damaged_checkpoint_is_refused_in_one_line(damage, words, tmp_path, capsys):
    import torch
    blob = torch.load(CHECKPOINT, weights_only=True)
    if damage in ("nan", "huge"):       # huge: a poisoned model's finite 1e30 (a probe)
        k = next(iter(blob["model"]))
        blob["model"][k] = blob["model"][k] * 0 + (float("nan") if damage == "nan" else 1e30)
    else:
        blob["model"] = {}
    torch.save(blob, tmp_path / "bad.pt")
    err = input_error(["evaluate", "--checkpoint", str(tmp_path / "bad.pt"), "--seeds", "1"],
                      capsys)
    assert words in err


def test_numbers_of_thousands_of_digits_are_named_not_printed(tmp_path, capsys):
    # Python refuses to print an int past 4,300 digits: the message was its own advice
    big = "9" * 5000
    (tmp_path / "c.yaml").write_text("sites:\n  - name: a\n    nodes:\n"
                                     f"      - {{name: n, cpu: {big}, mem: 4096}}\n")
    err = input_error(["simulate", "--no-gantt", "--cluster", str(tmp_path / "c.yaml")], capsys)
    assert "c.yaml:4: a number of 5,000 digits" in err and "set_int_max_str_digits" not in err
    err = input_error(["simulate", "--no-gantt", "--workload", f"synthetic:seed={big}"], capsys)
    assert "field 'seed': a number of 5,000 digits" in err and len(err) < 400


def test_a_gpu_model_is_printable(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text('sites:\n  - name: a\n    nodes:\n      - {name: n, cpu: 4, '
                                     'mem: 4096, gpus: 1, gpu_model: "T4\\n"}\n')
    err = input_error(["simulate", "--no-gantt", "--cluster", str(tmp_path / "c.yaml")], capsys)
    assert "gpu_model" in err and "printable" in err


def test_lines_ending_in_cr_alone_are_named(tmp_path, capsys):
    (tmp_path / "cr.jsonl").write_bytes((ONE_JOB.strip() + "\r").encode() * 2)
    err = input_error(["simulate", "--no-gantt", "--workload", str(tmp_path / "cr.jsonl")],
                      capsys)
    assert "cr.jsonl:1: its lines end in a carriage return alone" in err


def test_an_swf_job_number_past_2_to_the_53_is_not_rounded(tmp_path, capsys):
    (tmp_path / "t.swf").write_text("9007199254740993" + SWF[1:])
    err = input_error(["simulate", "--no-gantt", "--workload", str(tmp_path / "t.swf")], capsys)
    assert "found 9007199254740993" in err      # once read as 9007199254740992, a valid one


@pytest.mark.parametrize("content", [None, "root:x:0:0:root:/root:/bin/bash\n", "[1, 2]\n",
                                     ": : :\n", "n: 4\n"])
def test_a_file_that_is_no_key_file_is_named_as_such(tmp_path, content):
    """``--keys /etc/passwd`` said "keys: missing or malformed field string indices must be
    integers, not 'str'" (probe); a folder given as the key file, the same."""
    from agora.coordinator.server import load_keys

    path = tmp_path / "keys.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content)
    with pytest.raises(ValueError) as e:
        load_keys(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "agora keys" in msg, msg
    assert "string indices" not in msg


def test_keys_and_a_ca_already_there_are_not_replaced_without_force(tmp_path, capsys):
    """A probe: ``agora keys --out`` and ``agora certs --out`` replaced a group's keys and
    CA without a word (every replica, client and certificate that had them locked out)."""
    from agora.deploy.cli import main

    keys = tmp_path / "keys.yaml"
    assert main(["keys", "--replicas", "1", "--out", str(keys)]) == 0
    before = keys.read_bytes()
    assert "exists" in input_error(["keys", "--replicas", "1", "--out", str(keys)], capsys)
    assert keys.read_bytes() == before
    assert main(["keys", "--replicas", "1", "--out", str(keys), "--force"]) == 0
    assert keys.read_bytes() != before
    certs = tmp_path / "certs"
    assert main(["certs", "--replicas", "1", "--out", str(certs)]) == 0
    ca = (certs / "ca.crt").read_bytes()
    assert "holds a CA already" in input_error(["certs", "--replicas", "1", "--out",
                                                str(certs)], capsys)
    assert (certs / "ca.crt").read_bytes() == ca
    assert main(["certs", "--replicas", "1", "--out", str(certs), "--force"]) == 0


def test_a_file_where_an_output_folder_goes_and_a_device_checkpoint_are_named(tmp_path,
                                                                              capsys):
    """A probe: ``agora train --out FILE`` and ``certs --out FILE`` said "File exists;
    expected a path this user can read and write", and ``evaluate --checkpoint /dev/zero``
    "no such checkpoint file" for a path that exists."""
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    for argv in (["train", "--steps", "10", "--out", str(f)], ["certs", "--out", str(f)]):
        err = input_error(argv, capsys)
        assert f"{f}: a file is in the way" in err and "expected a folder" in err, err
    assert f.read_text() == "mine"
    err = input_error(["evaluate", "--checkpoint", "/dev/zero"], capsys)
    assert "/dev/zero: not a regular file" in err, err


def test_a_policy_that_is_no_checkpoint_is_refused_naming_the_field(tmp_path, capsys):
    """A probe: agora replay (and up) named the file alone, not the config field that set
    it."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint")
    cfg = tmp_path / "replay.yaml"
    cfg.write_text(f"policy: {notes}\nout: {tmp_path / 'out'}\n")
    err = input_error(["replay", "--config", str(cfg)], capsys)
    assert f"{cfg}: field 'policy': {notes}: not a checkpoint" in err, err
    assert err.count("expected") == 1, err


def test_an_id_that_starts_with_a_dash_is_told_how_to_pass(capsys):
    """A probe: '-x' is a valid job id, but ``agora cancel -x`` only said that ``job`` was
    required. The usage error now says how (after ``--``); a missing option gets no hint."""
    err = usage_error(["cancel", "-x"], capsys)
    assert "required: job; an id that starts with '-' goes after --, e.g. agora cancel -- -x" \
        in err, err
    assert "goes after --" not in usage_error(["site", "key"], capsys)


def test_training_draws_past_a_window_of_jobs_no_node_can_run(tmp_path, capsys):
    """A review: one training episode whose jobs all fit no node stopped the run, though the
    workload has jobs to learn from; such an episode is skipped and the next drawn."""
    import json

    from agora.deploy.cli import main

    (tmp_path / "c.yaml").write_text("sites:\n  - name: a\n    nodes: [{name: n, cpu: 4, "
                                     "mem: 8192}]\n")
    (tmp_path / "j.jsonl").write_text("".join(json.dumps(
        {"id": f"j{i}", "arrival": 10 * i, "origin": "a", "tasks": [
            {"id": "t", "duration": 5, "demand": {"cpu": 64 if i % 2 else 1, "mem": 100}}]})
        + "\n" for i in range(6)))
    assert main(["train", "--cluster", str(tmp_path / "c.yaml"), "--workload",
                 str(tmp_path / "j.jsonl"), "--train-jobs", "1", "--steps", "30",
                 "--bc-episodes", "0", "--val-episodes", "1", "--quiet",
                 "--out", str(tmp_path / "o")]) == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "summary.json").is_file()
