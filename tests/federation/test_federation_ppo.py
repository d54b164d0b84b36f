"""The PPO site learner (federation/ppo_learner.py) and the federation setups
(federation/domains.py): weights round trip, a training call uses the steps it reports and
changes the weights, local state stays local; setups whose organisations cannot share one
network are refused naming the organisation; the setup readers return a setup or an
InputError, never anything else (hypothesis)."""

from __future__ import annotations

import csv
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agora.agents.learn.learned_policy import AgentConfig
from agora.agents.learn.loop import TrainConfig
from agora.agents.workloads.alibaba import NODE_HEADER, POD_HEADER
from agora.agents.workloads.errors import InputError
from agora.federation.domains import (ALIBABA_NODES, ALIBABA_PODS, CONFIG_DIR,
                                      alibaba_by_type, load_setup, read_setup)
from agora.federation.learner import check_weights
from agora.federation.ppo_learner import TRAIN_KEYS, PPOSiteLearner

torch.set_num_threads(1)   # tests share a 2-core machine
pytestmark = pytest.mark.timeout(120)

FIX = Path(__file__).parents[1] / "fixtures" / "federation"
SMALL = TrainConfig(train_jobs=15, bc_episodes=1, val_episodes=1,
                    agent=AgentConfig(k=6, hidden=32))
SET = settings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def learner(site_index: int = 2, seed: int = 1) -> PPOSiteLearner:
    s = load_setup("synthetic-noniid").sites[site_index]
    return PPOSiteLearner(s.name, replace(SMALL, scenario=asdict(s.scenario), seed=seed))


# -- the learner ---------------------------------------------------------------------------------

def test_weights_round_trip_between_sites_and_names_follow_the_state_dicts():
    a, b = learner(2, seed=1), learner(0, seed=2)        # edge and hpc: same shapes
    names = a.weight_names()
    wa = a.get_weights()
    assert len(names) == len(set(names)) == len(wa)
    assert names[0].startswith("ActorCritic.") and names[-1].startswith("Codec.")
    assert not all(np.array_equal(x, y) for x, y in zip(wa, b.get_weights()))
    check_weights("b", names, b.get_weights(), wa)      # what the Grid checks passes
    b.set_weights(wa)
    assert all(np.array_equal(x, y) for x, y in zip(wa, b.get_weights()))
    assert all(w.dtype == np.float32 for w in wa)


def test_train_reports_the_steps_it_used_and_changes_the_weights():
    lr = learner()
    before = lr.get_weights()
    n, m = lr.train(60, {})
    assert n >= 60 and n == lr.loop.progress["step"]
    assert m["charts/steps"] == n and m["charts/updates"] >= 1
    assert set(m) == set(TRAIN_KEYS) and "bc/bc_nll" in lr.history[-1]   # own log: all
    # No update this call (budget 0): 0 steps, the same keys (Flower needs them identical).
    n0, m0 = lr.train(0, {})
    assert n0 == 0 and set(m0) == set(TRAIN_KEYS) and m0["charts/steps"] == 0
    changed = [not np.array_equal(x, y) for x, y in zip(before, lr.get_weights())]
    assert sum(changed) > len(changed) // 2
    # The overshoot of a round is taken off the next: two calls of 60 use 120 (+ an episode).
    n2, _ = lr.train(60, {})
    assert n + n2 >= 120 and n + n2 - 120 < max(n, 60)
    k, ev = lr.evaluate({})
    assert k == 1 and set(ev) == {"eval/jct_mean_s", "eval/score"}


def test_a_site_does_not_disturb_torch_s_generator_or_another_site(tmp_path):
    torch.manual_seed(123)
    expect = torch.rand(3)
    torch.manual_seed(123)
    a = learner(2, seed=5)
    a.train(30, {})
    assert torch.equal(torch.rand(3), expect)
    # The same site alone, or after another site trained in the same process: same weights.
    alone = learner(2, seed=5)
    other = learner(0, seed=9)
    other.train(30, {})
    alone.train(30, {})
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), alone.get_weights()))


def test_local_state_round_trips_through_a_site_checkpoint(tmp_path):
    a = learner()
    a.train(40, {})
    a.save_state(tmp_path / "s.pt")
    b = learner()
    b.load_state(tmp_path / "s.pt")
    assert b.loop.progress == a.loop.progress and b.loop.budget == a.loop.budget
    a.train(40, {})
    b.train(40, {})
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    wrong = PPOSiteLearner("other", a.loop.cfg)
    with pytest.raises(ValueError, match="state of site 'edge', not 'other'"):
        wrong.load_state(tmp_path / "s.pt")


# -- setups --------------------------------------------------------------------------------------

def test_synthetic_noniid_organisations_differ_but_share_shapes():
    s = load_setup("synthetic-noniid")
    assert [x.name for x in s.sites] == ["hpc", "ml-lab", "edge", "enterprise"]
    assert len({x.scenario.cluster for x in s.sites}) == 4
    assert len({x.scenario.workload for x in s.sites}) == 4


def write_setup(d: Path, clusters: dict[str, str]) -> Path:
    doc = {"name": "odd", "sites": [{"name": n, "cluster": c, "workload": "synthetic:load=0.9"}
                                    for n, c in clusters.items()]}
    (d / "setup.yaml").write_text(yaml.safe_dump(doc))
    return d / "setup.yaml"


def test_organisations_with_different_numbers_of_sites_share_one_network(tmp_path):
    """No per-site parameters: a 4-site and a 3-site organisation train the same weights."""
    from dataclasses import asdict

    p = write_setup(tmp_path, {"hpc": str(CONFIG_DIR / "hpc.yaml"),
                               "tiny": str(Path(__file__).parents[1] / "fixtures" /
                                           "cluster_small.yaml")})
    setup = read_setup(p)
    learners = [PPOSiteLearner(s.name, TrainConfig(scenario=asdict(s.scenario), bc_episodes=0,
                                                   train_jobs=5, val_episodes=1,
                                                   agent=AgentConfig(k=4, hidden=16)))
                for s in setup.sites]
    shapes = [[w.shape for w in lr.get_weights()] for lr in learners]
    assert shapes[0] == shapes[1]


def test_setup_errors_name_file_line_and_field(tmp_path):
    p = write_setup(tmp_path, {"a": "missing.yaml", "b": "default"})
    with pytest.raises(InputError, match=r"setup.yaml:\d+: field 'sites\[0\].cluster': no such file"):
        read_setup(p)
    p.write_text("name: x\nsites:\n  - {name: a, cluster: default, workload: synthetic}\n"
                 "  - {name: a, cluster: default, workload: synthetic}\n")
    with pytest.raises(InputError, match=r":4: field 'sites\[1\].name': site 'a' named twice"):
        read_setup(p)
    # 'federation' names the federation's own rows (a probe: two rows a round, one curve)
    p.write_text("name: x\nsites:\n  - {name: federation, cluster: default, workload: "
                 "synthetic}\n  - {name: b, cluster: default, workload: synthetic}\n")
    with pytest.raises(InputError, match=r":3: field 'sites\[0\].name': 'federation' names"):
        read_setup(p)
    # taken and ignored (a probe): jobs=/seed= of a synthetic workload, sites/split of a YAML
    for line, field, words in (
            ("{name: a, cluster: default, workload: 'synthetic:jobs=5'}", "workload",
             "jobs= would be ignored"),
            ("{name: a, cluster: default, workload: 'synthetic:seed=3'}", "workload",
             "seed= would be ignored"),
            ("{name: a, cluster: default, workload: synthetic, sites: 3}", "sites",
             "sites applies to an Alibaba node-list .csv cluster only")):
        p.write_text(f"name: x\nsites:\n  - {line}\n  - {{name: b, cluster: default, "
                     f"workload: synthetic}}\n")
        with pytest.raises(InputError, match=rf":3: field 'sites\[0\].{field}': {words}"):
            read_setup(p)
    # a site's name names its files under --out (a probe: '../../escape' wrote outside it)
    p.write_text("name: x\nsites:\n  - {name: a, cluster: default, workload: synthetic}\n"
                 "  - {name: ../../escape, cluster: default, workload: synthetic}\n")
    with pytest.raises(InputError, match=r":4: field 'sites\[1\].name': name '../../escape' "
                       r"has characters.*expected 1-64 letters"):
        read_setup(p)
    with pytest.raises(ValueError, match="expected one of synthetic-noniid, alibaba-by-type"):
        load_setup("nope")


SITE_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.floats(allow_nan=True),
                        st.sampled_from(["default", "hpc.yaml", "synthetic", "synthetic:load=2",
                                         "synthetic:load", "x.jsonl", "", "by-model", "zz"]))
SITE = st.dictionaries(st.sampled_from(["name", "cluster", "workload", "note", "sites", "split",
                                        "load", "inflate", "arrival_window", "bogus"]),
                       SITE_VALUES, max_size=8)


@SET
@given(doc=st.one_of(st.dictionaries(st.sampled_from(["name", "sites", "extra"]),
                                     st.one_of(st.text(max_size=5), st.lists(SITE, max_size=4),
                                               st.integers()), max_size=3),
                     st.lists(st.integers(), max_size=2), st.text(max_size=10)))
def test_read_setup_returns_a_setup_or_an_input_error(tmp_path, doc):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    (tmp_path / "hpc.yaml").write_text((CONFIG_DIR / "hpc.yaml").read_text())
    try:
        s = read_setup(p)
    except InputError as e:
        assert str(p) in str(e)
        return
    assert len(s.sites) >= 2 and len({x.name for x in s.sites}) == len(s.sites)
    assert all(Path(x.scenario.cluster).is_file() or x.scenario.cluster == "default"
               for x in s.sites)


@SET
@given(names=st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=2,
                      max_size=5, unique=True),
       loads=st.lists(st.floats(0.1, 10.0), min_size=5, max_size=5))
def test_valid_setups_read_back_as_written(tmp_path, names, loads):
    doc = {"name": "gen", "sites": [{"name": n, "cluster": "hpc.yaml",
                                     "workload": f"synthetic:load={loads[i]!r}"}
                                    for i, n in enumerate(names)]}
    (tmp_path / "hpc.yaml").write_text((CONFIG_DIR / "hpc.yaml").read_text())
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    s = read_setup(tmp_path / "s.yaml")
    assert [x.name for x in s.sites] == names
    assert [x.scenario.workload for x in s.sites] == [d["workload"] for d in doc["sites"]]
    assert all(x.scenario.cluster == str(tmp_path / "hpc.yaml") for x in s.sites)


def read_rows(p: Path) -> list[dict]:
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def fits(pod: dict, node: dict) -> bool:
    g, m = int(pod["num_gpu"]), int(pod["gpu_milli"])
    need = 0 if g == 0 else (1 if g == 1 and m < 1000 else g)
    spec = [x for x in pod["gpu_spec"].split("|") if x]
    return (int(pod["cpu_milli"]) <= int(node["cpu_milli"])
            and int(pod["memory_mib"]) <= int(node["memory_mib"]) and int(node["gpu"]) >= need
            and (need == 0 or not spec or node["model"] in spec))


def check_split(traces: Path, cache: Path, **kw) -> dict[str, tuple[list, list]]:
    s = alibaba_by_type(traces, cache=cache, **kw)
    out = {x.name: (read_rows(Path(x.scenario.cluster)), read_rows(Path(x.scenario.workload)))
           for x in s.sites}
    all_pods = read_rows(traces / ALIBABA_PODS)
    seen = [p["name"] for _, pods in out.values() for p in pods]
    assert len(seen) == len(set(seen))                                   # no pod twice
    for org, (nodes, pods) in out.items():
        assert nodes and pods and len(nodes) <= kw.get("max_nodes", 8)
        assert all((int(n["gpu"]) == 0) == (org == "cpu") for n in nodes)
        assert all(any(fits(p, n) for n in nodes) for p in pods)         # runs there
        if org == "cpu":
            assert all(int(p["num_gpu"]) == 0 for p in pods)
    everywhere = [n for nodes, _ in out.values() for n in nodes]
    for p in all_pods:          # a pod left out fits no node of any organisation
        if p["name"] not in set(seen):
            assert not any(fits(p, n) for n in everywhere), p
    return out


def test_alibaba_by_type_on_the_fixture(tmp_path):
    out = check_split(FIX, tmp_path, agent_sites=2, max_nodes=4)
    assert list(out) == ["cpu", "g2", "t4", "mixed-gpu"]
    s = load_setup("alibaba-by-type", traces=FIX, cache=tmp_path)
    assert [len(x.scenario.cluster) > 0 for x in s.sites] == [True] * 4
    with pytest.raises(InputError, match="no such file"):
        load_setup("alibaba-by-type", traces=tmp_path / "none", cache=tmp_path)


MODELS = ["", "G2", "T4", "P100", "V100M16"]


@SET
@given(nodes=st.lists(st.tuples(st.sampled_from(MODELS), st.sampled_from([8000, 32000, 96000]),
                                st.sampled_from([1, 2, 4, 8])), min_size=1, max_size=14),
       pods=st.lists(st.tuples(st.sampled_from([500, 8000, 64000]), st.sampled_from([0, 1, 2, 8]),
                               st.sampled_from([200, 1000]),
                               st.sampled_from(["", "G2", "T4|P100", "V100M16"])),
                     min_size=4, max_size=30))
def test_alibaba_by_type_splits_any_trace_without_losing_or_doubling_a_pod(tmp_path, nodes, pods):
    d = tmp_path / "alibaba-openb-2023"
    d.mkdir(exist_ok=True)
    with open(tmp_path / ALIBABA_NODES, "w") as f:
        f.write(",".join(NODE_HEADER) + "\n")
        base = [("", 32000, 1), ("G2", 96000, 8), ("T4", 32000, 2), ("P100", 8000, 1)]
        for i, (m, cpu, g) in enumerate(base + nodes):    # every group has a node
            f.write(f"n-{i},{cpu},262144,{0 if not m else g},{m}\n")
    with open(tmp_path / ALIBABA_PODS, "w") as f:
        f.write(",".join(POD_HEADER) + "\n")
        for i, (cpu, g, milli, spec) in enumerate(pods):
            milli = 0 if g == 0 else (milli if g == 1 else 1000)
            f.write(f"p-{i},{cpu},4096,{g},{milli},{spec},BE,Running,{10 * i},"
                    f"{10 * i + 100},{10 * i}\n")
    try:
        check_split(tmp_path, tmp_path / "cache", agent_sites=1, max_nodes=3)
        event("split made")
    except InputError as e:       # a group without nodes or without pods: named
        assert "group" in e.problem and str(tmp_path) in str(e)
