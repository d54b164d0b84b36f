"""``agora train --track tensorboard`` (issue 15): the rows of metrics.jsonl also go to
TensorBoard, under the same names, one run folder per site in federated training."""

from __future__ import annotations

import pytest

from agora.agents.learn.tracking import Tracker, make_tracker


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_rows_become_scalars_under_the_metrics_names(tmp_path):
    t = make_tracker("tensorboard", tmp_path)
    t.log({"step": 10, "seed": 0, "charts/jct_mean_s": 120.5, "losses/policy": -0.25,
           "eval/score": float("nan"), "phase": "bc"}, 10)
    t.log({"charts/jct_mean_s": 99.0}, 20)
    t.log({"charts/jct_mean_s": 7.0}, 1, run="site-a")
    t.close()
    main = scalars(tmp_path / "tensorboard")
    assert main == {"charts/jct_mean_s": [(10, 120.5), (20, 99.0)], "losses/policy": [(10, -0.25)]}
    assert scalars(tmp_path / "tensorboard" / "site-a") == {"charts/jct_mean_s": [(1, 7.0)]}


def test_none_writes_nothing_and_unknown_trackers_name_the_flag(tmp_path):
    t = make_tracker("none", tmp_path)
    assert type(t) is Tracker
    t.log({"charts/x": 1.0}, 1)
    assert not (tmp_path / "tensorboard").exists()
    with pytest.raises(ValueError, match="--track: 'wandb'"):
        make_tracker("wandb", tmp_path)
