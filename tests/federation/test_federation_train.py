"""Federated training end to end (federation/train.py, `agora train --federated`): Flower
rounds over PPO site learners on non-identical organisations, files per round, resume that
reproduces an uninterrupted run exactly, the checkpoint usable by `agora evaluate`, and a
setup whose organisations cannot share one network refused naming the organisation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.learned_policy import AgentConfig
from agora.agents.learn.loop import TrainConfig
from agora.agents.learn.networks import get_weights
from agora.deploy.cli import main
from agora.federation.domains import load_setup
from agora.federation.train import FedTrainConfig, train_federated

torch.set_num_threads(1)   # tests share a 2-core machine
pytestmark = pytest.mark.timeout(120)

FIX = Path(__file__).parents[1] / "fixtures"
TINY = ["--train-jobs", "5", "--bc-episodes", "1", "--val-episodes", "1", "--k", "6",
        "--hidden", "32", "--local-steps", "30", "--quiet"]
ORGS = ["cpu", "g2", "t4", "mixed-gpu"]
TINY_SITE = TrainConfig(train_jobs=5, bc_episodes=0, val_episodes=1,
                        agent=AgentConfig(k=6, hidden=32))
"""an organisation's training, as small as a test of the federation's files can take"""
QUIET = dict(progress=False, log=lambda *_: None)


def weights(path: Path) -> list[np.ndarray]:
    return get_weights(checkpoint.load_agents(path)[0].modules)


def test_resumed_federated_run_equals_an_uninterrupted_one(tmp_path):
    setup = load_setup("synthetic-noniid")
    site = TrainConfig(train_jobs=15, bc_episodes=1, val_episodes=1,
                       agent=AgentConfig(k=6, hidden=32))
    cfg = FedTrainConfig(rounds=2, local_steps=50, site=site, seed=4)
    quiet = QUIET
    train_federated(setup, cfg, tmp_path / "a", **quiet)
    first = FedTrainConfig(rounds=1, local_steps=50, site=site, seed=4)
    train_federated(setup, first, tmp_path / "b", **quiet)
    shutil.copy(tmp_path / "b" / "metrics.jsonl", tmp_path / "after-1.jsonl")
    # killed after writing round 2's last.pt, before state.json said round 2 (a probe: the
    # resume took last.pt and redid round 2 from round 2's model)
    shutil.copy(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    # ... and mid-way through appending round 2's rows (a review: the cut row blocked it)
    with (tmp_path / "b" / "metrics.jsonl").open("a") as f:
        f.write('{"round": 2, "site": "hp')
    summary = train_federated(setup, cfg, tmp_path / "b", resume=True, **quiet)
    wa, wb = weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt")
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert not all(np.array_equal(x, y)
                   for x, y in zip(wa, weights(tmp_path / "b" / "rounds" / "round-0001.pt")))
    timing = ("wall_s", "charts/steps_per_s")
    rows = [[{k: v for k, v in json.loads(x).items() if k not in timing}
             for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in "ab"]
    assert rows[0] == rows[1] and len(rows[0]) == 2 * 5            # 4 sites + federation
    assert summary["seeds"]["global_init"] == 4 and len(set(summary["seeds"]["sites"].values())) == 4
    assert sum(summary["steps"].values()) == rows[0][-1]["step"]
    assert all(v >= 2 * 50 for v in summary["steps"].values())    # each site used its budget
    # a resume asking for no more rounds than were done trained nothing and said "rounds: 2"
    with pytest.raises(ValueError, match=r"--rounds 1: .* has done 2 rounds already; "
                                         r"expected more than 2"):
        train_federated(setup, first, tmp_path / "b", resume=True, **quiet)
    # stopped after its last round's commit, before its summary (a probe: it could never be
    # completed): the resume writes what the run writes at its end, training nothing
    (tmp_path / "a" / "summary.json").unlink()
    again = train_federated(setup, cfg, tmp_path / "a", resume=True, **quiet)
    assert again["rounds"] == 2 and (tmp_path / "a" / "summary.json").is_file()
    assert all(np.array_equal(x, y) for x, y in zip(wa, weights(tmp_path / "a" / "last.pt")))


@pytest.mark.parametrize("extra, rounds", [([], 2), (["--secagg"], 1), (["--strategy", "median"], 1)])
def test_agora_train_federated_on_the_alibaba_fixture(tmp_path, capsys, extra, rounds):
    out = tmp_path / "fed"
    assert main(["train", "--federated", "--setup", "alibaba-by-type", "--traces",
                 str(FIX / "federation"), "--rounds", str(rounds), *TINY, *extra,
                 "--out", str(out), "--json", "--track", "tensorboard"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # issue 15: the step budget and what each organisation overshot it by are reported
    assert summary["step_budget"] > 0 and set(summary["overshoot"]) == set(ORGS)
    from tests.agents.test_learn_tracking import scalars
    assert "eval/score" in scalars(out / "tensorboard" / "federation")
    assert set(summary["final"]) == {*ORGS, "federation"}
    # the aggregate's competence: the widest window it ranks on any organisation's episodes
    from agora.agents.learn import checkpoint
    comp = checkpoint.read(out / "last.pt")["competence"]
    assert set(comp["per_site"]) == set(ORGS)
    assert summary["max_choices"] == comp["max_choices"] == max(comp["per_site"].values())
    for f in ["metrics.jsonl", "learning_curve.png", "last.pt", "state.json", "summary.json",
              f"rounds/round-{rounds:04d}.pt",
              *[f"sites/{o}/{n}" for o in ORGS
                for n in ("learning_curve.png", f"state-{rounds:04d}.pt")]]:
        assert (out / f).is_file(), f
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    fed = [r for r in rows if r["site"] == "federation"]
    assert len(fed) == rounds and all(r["aggregated"] and "eval/score" in r for r in fed)
    lacking = {r["site"]: sorted(r) for r in rows if r["site"] in ORGS
               and not ("eval/jct_mean_s" in r and "charts/steps" in r)}
    assert not lacking, (lacking, [r.get("errors") for r in fed])    # what went wrong, said
    # The aggregate is an agents.learn checkpoint: `agora evaluate` runs it on an organisation.
    org = out / "setup" / "alibaba-by-type" / "t4"
    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--cluster",
                 str(org / "nodes.csv"), "--sites", "4", "--workload", str(org / "pods.csv"),
                 "--seeds", "1", "--policies", "sjf", "--json"]) == 0
    assert "learned" in json.loads(capsys.readouterr().out)["policies"]


def test_bad_federated_invocations_exit_2_saying_why(tmp_path, capsys):
    assert main(["train", "--federated", "--workload", "synthetic:jobs=5", "--out",
                 str(tmp_path / "o")]) == 2
    assert "--workload: with --federated" in capsys.readouterr().err
    assert main(["train", "--federated", "--secagg", "--strategy", "median", "--out",
                 str(tmp_path / "o")]) == 2
    assert "cannot run under SecAgg+" in capsys.readouterr().err


def test_a_federated_resume_of_a_folder_of_another_kind_of_run_is_refused(tmp_path):
    """A probe: --federated --resume of a non-federated run's folder ended in a KeyError, or
    overwrote that run's files but its best.pt."""
    out = tmp_path / "solo"
    out.mkdir()
    shutil.copy(Path(__file__).parents[2] / "agents" / "learn" / "checkpoints" /
                "learned-synE.pt", out / "last.pt")
    before = (out / "last.pt").read_bytes()
    site = TINY_SITE
    with pytest.raises(ValueError, match="holds a run that is not federated"):
        train_federated(load_setup("synthetic-noniid"),
                        FedTrainConfig(rounds=1, local_steps=10, site=site), out, resume=True,
                        progress=False, log=lambda *_: None)
    assert (out / "last.pt").read_bytes() == before


def test_an_organisation_that_can_run_none_of_its_jobs_is_refused_before_any_round(
        tmp_path, capsys):
    """A probe: it trained, reported JCT 0 and score 0 for it, and exited 0."""
    (tmp_path / "small.yaml").write_text("sites:\n  - name: s\n    nodes: [{name: n, cpu: 4, "
                                         "mem: 8192}]\n")
    (tmp_path / "big.jsonl").write_text('{"id": "j", "arrival": 0, "origin": "s", "tasks": '
                                        '[{"id": "t", "duration": 5, "demand": {"cpu": 64, '
                                        '"mem": 100}}]}\n')
    (tmp_path / "setup.yaml").write_text(
        "name: two\nsites:\n  - {name: a, cluster: small.yaml, workload: synthetic}\n"
        "  - {name: b, cluster: small.yaml, workload: big.jsonl}\n")
    out = tmp_path / "o"
    assert main(["train", "--federated", "--setup", str(tmp_path / "setup.yaml"),
                 "--rounds", "1", *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "organisation 'b'" in err and "no job can run on this cluster: job j task t" in err
    assert err.count("\n") == 1 and not (out / "last.pt").exists()


def test_a_damaged_state_or_metrics_file_is_named_on_resume(tmp_path):
    """A probe: the bare JSON error named no file."""
    from agora.federation.run_files import _row_round, read_state

    f = tmp_path / "state.json"
    f.write_text('{"round": 1\n,,')
    with pytest.raises(ValueError, match=r"state.json: not valid JSON .*--resume cannot go on"):
        read_state(f, "the state")
    m = tmp_path / "metrics.jsonl"
    with pytest.raises(ValueError, match=r"metrics.jsonl:3: not a row of a federated run"):
        _row_round(m, 3, '{"step": 1}')
    assert _row_round(m, 1, '{"round": 2, "site": "a"}') == 2


def test_a_resume_refuses_a_cluster_file_edited_since_the_run_began(tmp_path):
    """A probe: the organisation's cluster YAML was edited between the rounds and the resume
    trained on the new one without a word."""
    (tmp_path / "c.yaml").write_text("sites:\n  - name: s\n    nodes: [{name: n, cpu: 8, "
                                     "mem: 16384, count: 2}]\n")
    (tmp_path / "setup.yaml").write_text(
        "name: two\nsites:\n  - {name: a, cluster: c.yaml, workload: synthetic}\n"
        "  - {name: b, cluster: c.yaml, workload: synthetic}\n")
    site = TINY_SITE
    quiet = QUIET
    out = tmp_path / "o"
    train_federated(load_setup(str(tmp_path / "setup.yaml")),
                    FedTrainConfig(rounds=1, local_steps=10, site=site), out, **quiet)
    (tmp_path / "c.yaml").write_text((tmp_path / "c.yaml").read_text().replace("count: 2",
                                                                               "count: 1"))
    with pytest.raises(checkpoint.CheckpointMismatch, match="digests"):
        train_federated(load_setup(str(tmp_path / "setup.yaml")),
                        FedTrainConfig(rounds=2, local_steps=10, site=site), out, resume=True,
                        **quiet)


def test_a_resume_knows_the_files_by_content_not_by_how_their_paths_are_spelt(
        tmp_path, capsys, monkeypatch):
    """A probe: a resume from another folder, or with --traces and --out made absolute, was
    refused (the setup's paths differed as strings), dumping the whole setup; a changed file
    is still refused, naming the organisation and the file. A single run's --resume into a
    federated run's folder said "last.pt: no field 'optimizer'"."""
    shutil.copytree(FIX / "federation", tmp_path / "traces")
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--federated", "--setup", "alibaba-by-type", *TINY]
    assert main([*argv, "--traces", "traces", "--rounds", "1", "--out", "fed"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    absolute = [*argv, "--traces", str(tmp_path / "traces"), "--out", str(tmp_path / "fed")]
    assert main([*absolute, "--rounds", "2", "--resume"]) == 0
    assert json.loads((tmp_path / "fed" / "state.json").read_text())["round"] == 2
    capsys.readouterr()
    pods = tmp_path / "traces" / "alibaba-openb-2023" / "openb_pod_list_default.csv"
    lines = pods.read_text().splitlines(keepends=True)
    pods.write_text("".join(lines[:-1]))          # the last pod gone
    assert main([*absolute, "--rounds", "3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "setup.sites." in err and ".digests.workload: saved" in err, err
    assert "source" not in err and len(err) < 400, err
    assert main(["train", "--resume", "--out", str(tmp_path / "fed")]) == 2
    assert "holds a federated run; expected --federated --resume" in capsys.readouterr().err


def test_a_federated_run_killed_in_its_first_commit_resumes_from_the_start(tmp_path):
    """A review: last.pt written, state.json not yet -- --resume called the folder "not
    federated", and without --resume it "holds a run already"."""
    setup = load_setup("synthetic-noniid")
    site = TINY_SITE
    cfg = FedTrainConfig(rounds=1, local_steps=10, site=site, seed=2)
    quiet = QUIET
    train_federated(setup, cfg, tmp_path / "a", **quiet)
    (tmp_path / "a" / "state.json").unlink()
    (tmp_path / "a" / "summary.json").unlink()
    train_federated(setup, cfg, tmp_path / "a", resume=True, **quiet)
    assert json.loads((tmp_path / "a" / "state.json").read_text())["round"] == 1
