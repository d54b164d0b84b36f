"""Checkpoints and the commands around them: `agora train` (files, metric names, resume),
`agora evaluate`, `agora simulate --policy CHECKPOINT`, weights for federated averaging, and
a checkpoint that does not match its configuration failing with what differs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.networks import get_weights, set_weights
from agora.deploy.cli import main

torch.set_num_threads(1)   # tests share a 2-core machine

FIX = Path(__file__).parents[1] / "fixtures"
WL = "synthetic:jobs=30,load=0.9,dag=0.5"
TRAIN_WL = "synthetic:load=0.9,dag=0.5"   # a training episode is --train-jobs long
TRAIN = ["--workload", TRAIN_WL, "--steps", "150", "--train-jobs", "20", "--bc-episodes", "1",
         "--k", "6", "--hidden", "32", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    assert main(["train", *TRAIN, "--out", str(out), "--track", "tensorboard"]) == 0
    return out


def test_train_writes_checkpoints_metrics_and_curve(trained):
    for f in ("last.pt", "best.pt", "metrics.jsonl", "learning_curve.png", "config.json",
              "summary.json"):
        assert (trained / f).is_file(), f
    rows = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    ppo = [r for r in rows if "losses/policy" in r]
    assert ppo and {"losses/value", "losses/entropy", "comm/msgs_sent_frac",
                    "comm/bits_per_msg", "charts/episodic_return", "seed"} <= set(ppo[0])
    assert any("eval/jct_mean_s" in r for r in rows)
    # --track tensorboard: the same rows under the same names
    from tests.agents.test_learn_tracking import scalars
    tb = scalars(trained / "tensorboard")
    assert [v for _, v in tb["losses/policy"]] == pytest.approx([r["losses/policy"] for r in ppo])
    assert "eval/jct_mean_s" in tb and "charts/episodic_return" in tb
    blob = checkpoint.read(trained / "last.pt")
    assert blob["seeds"]["train"] == 0 and blob["train_config"]["agent"]["k"] == 6
    # best.pt carries its competence, measured on its training scenario, to acting policies
    comp = checkpoint.read(trained / "best.pt")["competence"]
    assert comp["max_choices"] >= 1 and comp["decisions"] == sum(comp["counts"].values())
    assert comp["scenario"]["workload"] == TRAIN_WL
    assert checkpoint.load_policy(trained / "best.pt").max_choices == comp["max_choices"]


def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    import shutil
    out = tmp_path / "r"
    shutil.copytree(trained, out)
    before = checkpoint.read(out / "last.pt")["progress"]["step"]
    assert main(["train", *TRAIN[:2], "--steps", str(before + 60), *TRAIN[4:], "--out",
                 str(out), "--resume"]) == 0
    after = checkpoint.read(out / "last.pt")["progress"]
    assert after["step"] > before and after["bc_done"]
    n_bc = sum(1 for x in (out / "metrics.jsonl").read_text().splitlines() if '"bc"' in x)
    assert n_bc == 1                                     # resuming does not imitate again


def test_resuming_a_run_already_past_its_steps_is_refused_touching_nothing(trained, tmp_path,
                                                                          capsys):
    """A probe: --resume --steps 10 of a run at step 41 did nothing, said nothing, and
    rewrote best.pt's record."""
    import shutil
    out = tmp_path / "r"
    shutil.copytree(trained, out)
    done = checkpoint.read(out / "last.pt")["progress"]["step"]
    best = (out / "best.pt").read_bytes()
    assert main(["train", *TRAIN[:2], "--steps", "10", *TRAIN[4:], "--out", str(out),
                 "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"is at step {done} already; expected --steps above {done}" in err, err
    assert (out / "best.pt").read_bytes() == best
    # stopped after its last step, before its summary (a review): the resume finishes it
    (out / "summary.json").unlink()
    assert main(["train", *TRAIN[:2], "--steps", "10", *TRAIN[4:], "--out", str(out),
                 "--resume"]) == 0
    assert (out / "summary.json").is_file()


def test_evaluate_lists_learned_and_every_baseline(trained, capsys):
    assert main(["evaluate", "--checkpoint", str(trained / "best.pt"), "--workload", WL,
                 "--seeds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    from agora.agents.baselines import BASELINES
    assert {"learned", *BASELINES} <= set(out["policies"])
    assert len(out["policies"]["learned"]["jct_mean_s"]["values"]) == 2
    assert out["comm"]["bytes_per_msg"] * 16 <= out["comm"]["raw_state_bytes"]
    g = out["competence"]
    assert g["max_choices"] >= 1 and 0 <= g["by_teacher"] <= g["decisions"]
    # the paired difference per baseline, seed by seed, equals the runs it came from
    sjf = out["paired_jct"]["sjf"]
    learned, base = (out["policies"][p]["jct_mean_s"]["values"] for p in ("learned", "sjf"))
    assert sjf["values"] == pytest.approx([(b - x) / b for b, x in zip(base, learned)])
    assert sjf["lo"] <= sjf["mean"] <= sjf["hi"] and sjf["seeds"] == 2


def test_simulate_accepts_a_checkpoint_path(trained, capsys):
    assert main(["simulate", "--policy", str(trained / "best.pt"), "--workload", WL, "--json",
                 "--check"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["tasks_lost"] == 0 and out["metrics"]["jobs_completed"] > 0


def test_a_checkpoint_runs_on_a_cluster_with_another_number_of_sites(trained, capsys):
    """No per-site parameters: trained on 8 sites, it acts on 3."""
    assert main(["simulate", "--policy", str(trained / "best.pt"), "--cluster",
                 str(FIX / "cluster_small.yaml"), "--workload", str(FIX / "jobs_small.jsonl"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["tasks_lost"] == 0 and out["metrics"]["jobs_completed"] > 0


def test_a_checkpoint_of_another_feature_layout_fails_saying_what_differs(trained, tmp_path):
    blob = checkpoint.read(trained / "best.pt")
    blob["slot_features"] = blob["slot_features"][:-1]
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(checkpoint.CheckpointMismatch, match="slot features"):
        checkpoint.load_agents(tmp_path / "old.pt")


def test_loading_a_checkpoint_never_runs_code_from_it(tmp_path):
    """``torch.load(weights_only=True)``: a pickle that would run code is refused."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("open('%s', 'w').write('ran')" % (tmp_path / "pwned"),))

    p = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "x": Evil()}, p, pickle_module=pickle)
    with pytest.raises(checkpoint.CheckpointMismatch, match="objects other than tensors"):
        checkpoint.read(p)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("drop, kind, words", [
    ("agent_config", None, "no field 'agent_config'"),
    ("state_dim", None, "no field 'state_dim'"),
    ("model", None, "no field 'model'"),
    ("slot_features", "text", "field 'slot_features' is a str; expected a list"),
    ("local_dim", True, "field 'local_dim' is a bool; expected a whole number"),
])
def test_a_checkpoint_missing_a_part_is_named_in_one_line(trained, tmp_path, capsys, drop,
                                                          kind, words):
    # a probe: the right format tag without 'agent_config' printed a KeyError traceback
    blob = checkpoint.read(trained / "best.pt")
    if kind is None:
        del blob[drop]
    else:
        blob[drop] = kind
    p = tmp_path / "cut.pt"
    torch.save(blob, p)
    with pytest.raises(checkpoint.CheckpointMismatch, match=words.replace("[", r"\[")):
        checkpoint.read(p)
    assert main(["evaluate", "--checkpoint", str(p), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{p}: " in err and words in err and "Traceback" not in err, err


def test_resuming_from_a_checkpoint_without_its_training_state_is_refused(trained, tmp_path,
                                                                         capsys):
    import shutil
    out = tmp_path / "r"
    shutil.copytree(trained, out)
    blob = checkpoint.read(out / "last.pt")
    del blob["optimizer"]
    torch.save(blob, out / "last.pt")
    assert main(["train", *TRAIN, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no field 'optimizer'" in err and "Traceback" not in err, err


def test_a_checkpoint_with_another_k_fails_saying_what_differs(trained):
    with pytest.raises(checkpoint.CheckpointMismatch, match="k: checkpoint 6, configuration 16"):
        checkpoint.load_agents(trained / "best.pt", expect=AgentConfig(k=16, hidden=32))


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(checkpoint.CheckpointMismatch, match="a folder, not a checkpoint file"):
        checkpoint.read(tmp_path)                  # a training run's folder, not its best.pt
    p = tmp_path / "x.pt"
    p.write_text("hello")
    with pytest.raises(checkpoint.CheckpointMismatch, match="not a torch.save archive"):
        checkpoint.read(p)
    import zipfile
    with zipfile.ZipFile(p, "w") as z:         # an archive, but not torch.save's
        z.writestr("a.txt", "hello")
    with pytest.raises(checkpoint.CheckpointMismatch, match="not a readable checkpoint"):
        checkpoint.read(p)


def test_weights_round_trip_for_federated_averaging():
    torch.manual_seed(0)
    a = Agents(AgentConfig(k=4, hidden=32))
    torch.manual_seed(1)
    b = Agents(AgentConfig(k=4, hidden=32))
    wa = get_weights(a.modules)
    assert all(isinstance(w, np.ndarray) for w in wa)
    avg = [(x + y) / 2 for x, y in zip(wa, get_weights(b.modules))]   # what FedAvg does
    set_weights(b.modules, avg)
    assert all(np.allclose(x, y) for x, y in zip(get_weights(b.modules), avg))
    with pytest.raises(ValueError, match="has shape"):
        set_weights(b.modules, [w[..., :1] if w.ndim else w for w in wa])


@pytest.mark.parametrize("cmd", ["train", "evaluate"])
def test_new_commands_have_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0 and "usage: agora" in capsys.readouterr().out


@pytest.mark.parametrize("field, value, words", [
    ("k", 0, "whole number in [1, 1,024]"), ("hidden", -3, "whole number"),
    ("code_dim", 0, "whole number"), ("peers", 0, "whole number"), ("k", True, "found True"),
    ("hidden", 64.5, "whole number"), ("beta", float("nan"), "finite number >= 0"),
    ("threshold", -0.1, "finite number >= 0"), ("comm", "sometimes", "one of trigger"),
    ("bits", "eight", "whole number in [2, 8]"), ("bits", 9, "whole number in [2, 8]")])
def test_agent_config_refuses_a_bad_shape_naming_the_field(field, value, words):
    # a config from a file or a federation setup reaches AgentConfig without the CLI's checks
    with pytest.raises(ValueError) as e:
        AgentConfig(**{field: value})
    assert str(e.value).startswith(f"{field}: found") and words in str(e.value)


def test_resume_with_nothing_to_resume_is_a_new_run(tmp_path, capsys):
    out = tmp_path / "fresh"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"old": "row of an earlier run"}\n')
    assert main(["train", *TRAIN, "--out", str(out), "--resume"]) == 0
    assert "does not exist, so this is a new run" in capsys.readouterr().err
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert "old" not in rows[0] and rows[0]["phase"] == "references"


def test_a_checkpoint_this_user_may_not_read_is_named_so(tmp_path, monkeypatch):
    # a probe (a 0600 file of another user): "not a checkpoint (not a torch.save archive)"
    import builtins

    f = tmp_path / "x.pt"
    f.write_bytes(b"PK")
    real = builtins.open

    def denied(path, *a, **k):        # what a file of another user, mode 0600, gives
        if str(path) == str(f):
            raise PermissionError(13, "Permission denied")
        return real(path, *a, **k)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(checkpoint.CheckpointMismatch,
                       match=r"cannot read the file \(Permission denied\)"):
        checkpoint.read(f)


def test_training_on_one_job_keeps_finite_weights_and_a_diverged_save_is_refused(tmp_path):
    # one job on one site: a PPO batch with a single active step, whose advantage std was
    # NaN and made every weight NaN (written to best.pt and last.pt)
    (tmp_path / "c.yaml").write_text("sites:\n  - name: solo\n    nodes:\n"
                                     "      - {name: n, cpu: 4, mem: 8192}\n")
    (tmp_path / "w.jsonl").write_text(json.dumps(
        {"id": "single", "arrival": 0, "origin": "solo",
         "tasks": [{"id": "t", "duration": 10, "demand": {"cpu": 1, "mem": 100}}]}) + "\n")
    out = tmp_path / "out"
    assert main(["train", "--cluster", str(tmp_path / "c.yaml"), "--workload",
                 str(tmp_path / "w.jsonl"), "--out", str(out), "--steps", "20",
                 "--bc-episodes", "1", "--val-episodes", "1", "--k", "6", "--hidden", "32",
                 "--quiet"]) == 0
    for name in ("best.pt", "last.pt"):
        checkpoint.load_agents(out / name)          # refuses NaN weights
    agents, _ = checkpoint.load_agents(out / "best.pt")
    before = (out / "best.pt").read_bytes()
    with torch.no_grad():
        next(agents.model.parameters()).fill_(float("nan"))
    with pytest.raises(checkpoint.TrainingDiverged, match="NaN or infinite"):
        checkpoint.save(out / "best.pt", agents=agents, extra={})
    assert (out / "best.pt").read_bytes() == before


def test_a_new_run_into_the_folder_of_another_is_refused(trained, tmp_path, capsys):
    """A probe: `agora train --out DIR` without --resume over a finished run overwrote its
    checkpoints and left its other files beside the new run's."""
    import shutil
    out = tmp_path / "taken"
    shutil.copytree(trained, out)
    before = (out / "last.pt").read_bytes()
    assert main(["train", *TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: holds a run already (last.pt)" in err and "--resume" in err
    assert (out / "last.pt").read_bytes() == before


def test_a_new_run_over_an_imitation_only_run_is_refused(trained, tmp_path, capsys):
    """A probe: a `--steps 0` run writes no last.pt, and a second run into its folder
    overwrote its best.pt and config.json without --resume."""
    import shutil
    out = tmp_path / "bc-only"
    out.mkdir()
    for name in ("best.pt", "config.json", "metrics.jsonl"):
        shutil.copy(trained / name, out / name)
    before = (out / "best.pt").read_bytes()
    assert main(["train", *TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: holds a run already (best.pt)" in err and "--resume" in err
    assert (out / "best.pt").read_bytes() == before


def test_a_resume_with_other_settings_names_what_differs(trained, tmp_path, capsys):
    """A probe: a changed --lr was refused with the whole saved configuration (945
    characters) and no word of which field differed."""
    import shutil
    out = tmp_path / "r"
    shutil.copytree(trained, out)
    assert main(["train", *TRAIN, "--lr", "0.01", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--resume with a different configuration (ppo.lr: saved 0.0003, now 0.01)" in err
    assert len(err) < 400, err


def test_a_validation_episode_that_completes_no_job_is_never_the_best(tmp_path, monkeypatch):
    # the metrics say jct_mean_s 0.0 when no job completed: a policy completing nothing read
    # as the best one and became best.pt. A stand-in runner (test only) gives the results.
    from types import SimpleNamespace

    from agora.agents.learn import loop as loop_mod
    from agora.agents.learn.loop import PPOLoop

    class Runner:
        def __init__(self, completed):
            self.completed = completed

        def run(self, policy, eps):
            return [SimpleNamespace(result=SimpleNamespace(metrics={
                "jct_mean_s": 0.0 if not c else 100.0, "jobs_completed": c, "score": 0.5}))
                for c in self.completed]

    class Src:
        def episode(self, i, validation=False):
            return (None, None)

    agents = SimpleNamespace(policy=lambda: None)
    with monkeypatch.context() as m:
        m.setattr(loop_mod, "Episode", lambda *a, **k: None)
        val = loop_mod.validate(agents, Src(), 2, runner=Runner([3, 0]))
        assert np.isnan(val["eval/jct_mean_s"])
        val = loop_mod.validate(agents, Src(), 2, runner=Runner([3, 1]))
        assert val["eval/jct_mean_s"] == 100.0

    # the trainer: the first validations complete nothing, a later one does
    seen = iter([float("nan"), float("nan"), 250.0, 300.0] + [400.0] * 100)
    monkeypatch.setattr(PPOLoop, "validate", lambda self, *a, **k: {
        "eval/jct_mean_s": next(seen), "eval/score": 0.1})
    from dataclasses import replace

    from agora.agents.learn import trainer
    real = trainer.train
    monkeypatch.setattr(trainer, "train", lambda cfg, *a, **k: real(
        replace(cfg, eval_every=1), *a, **k))     # validate after every update
    out = tmp_path / "out"
    assert main(["train", *TRAIN, "--out", str(out)]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r["eval/jct_mean_s"] for r in rows if "eval/jct_mean_s" in r and "step" in r]
    assert any(np.isnan(v) for v in evals) and 250.0 in evals
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_val_jct_mean_s"] == 250.0
