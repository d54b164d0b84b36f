"""bench/competence.py end to end on a folder of the WfCommons test fixtures (no WfInstances
checkout): every arm has a row against the best baseline, the unguarded copy really is
unguarded, and a folder that is missing is refused naming the flag."""

from __future__ import annotations

import json

import pytest
import torch

from agora.agents.learn import checkpoint, competence
from agora.agents.learn.learned_policy import AgentConfig, Agents
from bench import competence as bench_competence
from tests.agents.wfcommons_fixtures import FLAT, SPEC, write

pytestmark = pytest.mark.timeout(300)


def test_the_table_has_every_arm_and_the_unguarded_arm_is_unguarded(tmp_path):
    wf = tmp_path / "wf"
    wf.mkdir()
    for i in range(3):
        write(wf, SPEC, f"spec-{i}.json")
        write(wf, FLAT, f"flat-{i}.json")
    torch.manual_seed(0)
    ck = tmp_path / "c.pt"
    checkpoint.save(ck, agents=Agents(AgentConfig(k=4, hidden=16)), extra={})
    competence.stamp(ck, {"max_choices": 1})
    out = tmp_path / "res"
    assert bench_competence.main(["--checkpoint", str(ck), "--wf-dir", str(wf), "--only", "wf",
                                  "--seeds", "2", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())["wf"]
    assert set(res["arms"]) == {"learned", "learned, unguarded", "srpt-market (ref.)"}
    assert res["competence"]["max_choices"] == 1
    assert res["best_baseline"] in res["jct"] and len(res["jct"]["learned"]) == 2
    for arm in res["arms"].values():
        assert arm["lo"] <= arm["diff"] <= arm["hi"]
    table = out.with_suffix(".md").read_text()
    assert "learned, unguarded" in table and "srpt-market" in table
    assert "competence" not in checkpoint.read(bench_competence.unguarded_copy(ck, tmp_path))


def test_the_wf_scenario_needs_its_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_competence.main(["--only", "wf", "--wf-dir", str(tmp_path / "missing")])
    assert "--wf-dir" in capsys.readouterr().err


def test_an_unknown_scenario_is_refused_before_any_run(tmp_path, capsys):
    out = tmp_path / "res"
    with pytest.raises(SystemExit):
        bench_competence.main(["--only", "synthetic,wff", "--out", str(out)])
    assert "unknown scenario 'wff'" in capsys.readouterr().err
    assert not out.with_suffix(".md").exists()


def test_wf_split_links_pegasus_shuffled_and_the_other_families_apart(tmp_path, capsys):
    """bench/wf_split.py on a WfInstances-shaped folder of the fixtures: Pegasus instances go
    to pegasus/ with a shuffled rank prefix, Makeflow and Nextflow to others/, helloworld
    nowhere, and an unreadable instance is counted and named, not linked."""
    from bench import wf_split

    src = tmp_path / "WfInstances"
    for fam, n in (("pegasus/montage", 3), ("makeflow/blast", 1), ("nextflow", 1),
                   ("helloworld", 1)):
        (src / fam).mkdir(parents=True)
        for i in range(n):
            write(src / fam, SPEC, f"{fam.split('/')[-1]}-{i}.json")
    (src / "nextflow" / "broken.json").write_text("{")
    assert wf_split.main([str(src), str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    assert "pegasus 3, others 2, unreadable 1" in out.out and "broken.json" in out.err
    peg = sorted(p.name for p in (tmp_path / "out" / "pegasus").iterdir())
    assert [p[:4] for p in peg] == ["000-", "001-", "002-"]
    assert sorted(p[4:] for p in peg) == ["montage-0.json", "montage-1.json", "montage-2.json"]
    assert sorted(p.name for p in (tmp_path / "out" / "others").iterdir()) == \
        ["blast-0.json", "nextflow-0.json"]
