"""The CLI traps a new user met (issue 15): abbreviated options read as other options, no
``--version``, defaults missing from ``--help``, ``--json`` missing on some commands, a
Python dict from ``agora bound``, intervals over 1-2 seeds printed without a word."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from agora.deploy.cli import main, parser

FIX = Path(__file__).parents[1] / "fixtures"


def all_parsers(p: argparse.ArgumentParser, name: str = "agora"):
    yield name, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub_name, sub in a.choices.items():
                yield from all_parsers(sub, f"{name} {sub_name}")


def test_an_abbreviated_option_is_refused_not_read_as_another(capsys):
    with pytest.raises(SystemExit) as e:
        main(["baselines", "--seed", "3"])        # --seeds exists; --seed must not mean it
    assert e.value.code == 2
    assert "unrecognized arguments: --seed 3" in capsys.readouterr().err
    assert all(not p.allow_abbrev for _, p in all_parsers(parser()))


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("agora ")


def test_every_option_with_a_default_shows_it_in_help():
    missing = []
    for name, p in all_parsers(parser()):
        for a in p._actions:
            if not a.option_strings or a.help == argparse.SUPPRESS or \
                    a.default is None or a.default is False or a.default == argparse.SUPPRESS:
                continue
            if "%(default)" not in (a.help or ""):
                missing.append(f"{name} {a.option_strings[0]}")
    assert not missing, missing
    text = " ".join(parser()._subparsers._group_actions[0].choices["simulate"]
                    .format_help().split())
    assert "(default: tetris)" in text and "--seed SEED default: 0" in text


def test_every_command_that_prints_results_takes_json():
    without = [name for name, p in all_parsers(parser())
               if name.count(" ") == 1 and name.split()[1] in (
                   "simulate", "baselines", "bound", "train", "evaluate", "keys", "certs",
                   "schedule", "status", "submit", "jobs", "cancel")
               and not any("--json" in a.option_strings for a in p._actions)
               and not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    assert not without, without


def test_keys_and_certs_json(tmp_path, capsys):
    assert main(["keys", "--replicas", "4", "--clients", "site:a", "--out",
                 str(tmp_path / "k.yaml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["replicas"] == 4 and "site:a" in out["clients"] and out["mode"] == "0600"
    assert main(["certs", "--sites", "a", "--replicas", "1", "--out", str(tmp_path / "c"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in out["certificates"]} == {"ca", "site-a", "replica-0", "client"}


def test_bound_prints_a_readable_report_and_json_with_numbers(capsys):
    args = ["bound", "--cluster", str(FIX / "cluster_small.yaml"), "--workload",
            "synthetic:jobs=3", "--time-limit", "2"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "{" not in text and "analytic lower bounds" in text and "CP-SAT makespan" in text
    assert "model status" in text or "optimal for this instance" in text
    assert main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    r = out["makespan"]
    assert isinstance(r["value"], float) and isinstance(r["proven_optimal"], bool)
    assert r["model_status"] in ("OPTIMAL", "FEASIBLE")


def test_few_seeds_say_the_interval_is_too_wide(capsys):
    assert main(["baselines", "--workload", "synthetic:jobs=10", "--seeds", "2",
                 "--policies", "fifo,sjf"]) == 0
    text = capsys.readouterr().out
    assert "fewer than 3 seeds it is too wide" in text and "± n/a" in text
    assert main(["baselines", "--workload", "synthetic:jobs=10", "--seeds", "1",
                 "--policies", "fifo"]) == 0
    assert "one seed: no interval" in capsys.readouterr().out


def test_status_json_is_snake_case_with_numbers():
    from agora.protos.agora.v1 import coordinator_pb2 as pb
    from agora.protos.plain import plain

    s = pb.ReplicaStatus(replica=2, n=4, f=1, view=3, last_executed=2 ** 40)
    s.rejected.add(name="service.bad_signature", count=5)
    d = json.loads(json.dumps(plain(s)))
    assert d["last_executed"] == 2 ** 40 and d["view"] == 3
    assert d["rejected"] == [{"name": "service.bad_signature", "count": 5}]
    assert all(k == k.lower() for k in d) and not math.isnan(d["decision_latency_ms_p50"])


def test_a_path_that_cannot_be_written_is_one_line_naming_it_not_a_traceback(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert main(["site", "key", "--out", str(a_file / "keys" / "site.key")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(a_file / "keys") in err and "Not a directory" in err
