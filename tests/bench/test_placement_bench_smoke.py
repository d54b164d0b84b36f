"""The placement benchmarks run end to end on a tiny trace folder built from the test
fixtures (no ../shared): the table has every policy, the learned weights are written and
reproduce FGD before any search."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import gpu_fragmentation, placement_learning

FIX = Path(__file__).parents[1] / "fixtures"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def traces(tmp_path):
    d = tmp_path / "alibaba-openb-2023"
    d.mkdir()
    shutil.copy(FIX / "alibaba_nodes.csv", d / "openb_node_list_all_node.csv")
    for name in ("default", "gpushare40", "gpuspec33"):
        shutil.copy(FIX / "alibaba_pods.csv", d / f"openb_pod_list_{name}.csv")
    (d / "openb_pod_list_multigpu50.csv").write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\na,4000,1024,2,1000\nb,2000,512,1,300\n")
    return tmp_path


def test_placement_learning_then_fragmentation_table(traces, tmp_path, capsys):
    out = tmp_path / "results"
    assert placement_learning.main(["--traces", str(traces), "--sites", "2", "--per-list", "--train-seeds",
                                    "1", "--test-seeds", "2", "--iters", "1",
                                    "--population", "2", "--out", str(out)]) == 0
    saved = json.loads((out / "placement-weights.json").read_text())
    assert len(saved["weights"]) == len(saved["features"]) and saved["history"]
    md = (out / "placement-learning.md").read_text()
    assert "zero-shot" in md and "alone" in md and "adopted only if better" in md
    assert saved["train"]["lists"] == ["default", "gpushare40", "gpuspec33", "multigpu50"]
    assert gpu_fragmentation.main(["--traces", str(traces), "--seeds", "1", "--lists",
                                   "default,multigpu50", "--weights",
                                   str(out / "placement-weights.json"), "--per-list-weights",
                                   str(out / "placement-learning.json"),
                                   "--out", str(out / "frag")]) == 0
    table = (out / "frag.md").read_text()
    for pol in gpu_fragmentation.POLICIES:
        assert f"| {pol} |" in table
    assert "**multigpu50**" in table


def test_federation_placement_runs_flower_rounds_and_times_each_start(traces, tmp_path, capsys):
    from bench import federation_placement
    out = tmp_path / "fed"
    assert federation_placement.main(["--traces", str(traces), "--sites", "2", "--lists",
                                      "default,multigpu50", "--rounds", "1", "--local-replays",
                                      "4", "--iters", "1", "--population", "2", "--seeds", "1",
                                      "--test-orders", "2", "--out", str(out)]) == 0
    report = json.loads((out / "federation-placement.json").read_text())
    for held in ("default", "multigpu50"):
        e = report[held]
        assert set(e["starts"]) == {"scratch", "alone", "federated", "federated, checked"}
        assert e["starts"]["alone"]["start_ratio"] == pytest.approx(1.0)   # FGD itself
        assert len(e["federation_rounds"]) == 1 and len(e["federated_weights"]) == 7
        # a search's best-so-far curve never rises and ends at its best ratio
        for v in e["starts"].values():
            for curve in v["curves"]:
                best = [b for _, b in curve]
                assert best == sorted(best, reverse=True)
                assert best[-1] in v["final_ratio"]
    md = (out / "federation-placement.md").read_text()
    assert "| default " in md and "federated, checked" in md and "Threshold 0.9" in md
    # the tables render again from the saved report alone
    capsys.readouterr()
    assert federation_placement.main(["--render", str(out / "federation-placement.json")]) == 0
    assert capsys.readouterr().out.count("| multigpu50 ") == 2


def test_federation_placement_refuses_a_single_list(traces, capsys):
    from bench import federation_placement
    with pytest.raises(SystemExit):
        federation_placement.main(["--traces", str(traces), "--lists", "default"])
    assert "--lists" in capsys.readouterr().err


def test_first_fit_takes_the_first_candidate_place():
    """bench.gpu_fragmentation.first_fit picks the place a zero-weight placer picks (the first
    of fgd.candidates) on every arrival of a replay."""
    import numpy as np

    from agora.agents.baselines.fgd import FragModel, candidates, typical_shapes
    from agora.agents.learn.placement import arrivals, replay
    from agora.agents.sim.capacity import Capacity
    from agora.agents.workloads.alibaba import read_alibaba_nodes, read_alibaba_pod_demands

    cluster = read_alibaba_nodes(FIX / "alibaba_nodes.csv", sites=1)
    pods = [x for _, x in read_alibaba_pod_demands(FIX / "alibaba_pods.csv")]
    cap = Capacity(cluster)
    model = FragModel(typical_shapes(pods), cap.models)
    picks = []

    def check(c, d, fit):
        got = gpu_fragmentation.first_fit(c, d, fit)
        assert got == candidates(model, c, d, fit).places[0]
        picks.append(got)
        return got

    replay(cap, arrivals(pods, int(cap.cap_gpu.sum()), np.random.default_rng(0)), check)
    assert picks and any(g is not None for _, g in picks)
