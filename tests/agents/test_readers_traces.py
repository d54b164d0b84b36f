"""Alibaba node/pod lists, SWF, and the loader: valid fixtures, split rules, errors."""

from __future__ import annotations

import sys
import types
import zlib
from collections import Counter
from pathlib import Path

import pytest

from agora.agents.workloads.alibaba import (QOS_WEIGHTS, read_alibaba_nodes, read_alibaba_pod_demands,
                                            read_alibaba_pods)
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_cluster, load_workload, parse_synthetic
from agora.agents.workloads.native import read_cluster
from agora.agents.workloads.swf import read_swf, read_swf_report
from tests.errorcheck import check, fails

FIX = Path(__file__).parents[1] / "fixtures"
NODES, PODS, SWF = FIX / "alibaba_nodes.csv", FIX / "alibaba_pods.csv", FIX / "small.swf"


@pytest.fixture(scope="module")
def cluster3():
    return read_alibaba_nodes(NODES, 3)


# ----------------------------------------------------------------------------- nodes

def test_nodes_values(cluster3):
    c = cluster3
    assert c.site_names == ("site-0", "site-1", "site-2") and c.source == str(NODES)
    assert len(c.nodes) == 12 and c.capacity() == (32000 * 3 + 96000 * 6 + 64000 * 3,
                                                   262144 * 5 + 786432 * 3 + 393216 * 3 + 131072,
                                                   (8 * 3 + 2 * 3 + 3) * 1000)
    by_sn = {n.name.split("/", 1)[1]: n for n in c.nodes}
    assert all(n.name == f"{n.site}/{sn}" for sn, n in by_sn.items())
    g2 = by_sn["n-02"]
    assert (g2.cpu, g2.mem, g2.gpus, g2.gpu_model) == (96000, 786432, 8, "G2")
    assert by_sn["n-00"].gpus == 0 and by_sn["n-00"].gpu_model is None
    assert c.gpu_models == {"G2", "P100", "T4"}
    for s in c.sites:  # file order inside a site
        assert [n.name for n in s.nodes] == sorted(n.name for n in s.nodes)


def test_stratified_same_mix(cluster3):
    gpus = [sum(n.gpus for n in s.nodes) for s in cluster3.sites]
    assert max(gpus) - min(gpus) <= 1
    sizes = [len(s.nodes) for s in cluster3.sites]
    assert max(sizes) - min(sizes) <= 1
    for model in (None, "G2", "P100", "T4"):
        per = [sum(1 for n in s.nodes if n.gpu_model == model) for s in cluster3.sites]
        assert max(per) - min(per) <= 1, model


def test_by_model_disjoint():
    c = read_alibaba_nodes(NODES, 3, split="by-model")
    models = [{n.gpu_model for n in s.nodes} for s in c.sites]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not models[i] & models[j], models
    assert models[0] == {"G2"}  # the group with the most gpus goes first
    assert sum(len(s.nodes) for s in c.sites) == 12


def test_by_model_more_sites_than_groups():
    c = read_alibaba_nodes(NODES, 6, split="by-model")
    assert all(s.nodes for s in c.sites)
    assert sorted(n.name.split("/")[1] for n in c.nodes) == [f"n-{i:02d}" for i in range(12)]
    # a split group's halves sit on distinct sites; no site mixes two models
    assert all(len({n.gpu_model for n in s.nodes}) == 1 for s in c.sites)


def test_contiguous():
    c = read_alibaba_nodes(NODES, 5, split="contiguous")
    assert [len(s.nodes) for s in c.sites] == [2, 2, 3, 2, 3]
    flat = [n.name.split("/")[1] for n in c.nodes]
    assert flat == [f"n-{i:02d}" for i in range(12)]


def test_nodes_errors(tmp_path):
    p = tmp_path / "n.csv"
    text = NODES.read_text()
    check(fails(read_alibaba_nodes, p, text.replace("sn,cpu_milli", "sn,cpu"), 2), p, 1, None,
          "wrong header", "missing cpu_milli", "sn,cpu_milli,memory_mib,gpu,model")
    check(fails(read_alibaba_nodes, p, text.replace("n-03,64000", "n-03,64k"), 2), p, 5,
          "cpu_milli", "'64k'")
    check(fails(read_alibaba_nodes, p, text.replace("n-03,64000", "n-03,-64000"), 2), p, 5,
          "cpu_milli", "negative")
    check(fails(read_alibaba_nodes, p, text.replace("n-01,32000,262144,0,",
                                                    "n-01,32000,262144,0,T4"), 2),
          p, 3, "model", "empty when gpu is 0")
    check(fails(read_alibaba_nodes, p, text.replace("n-05,", "n-04,"), 2), p, 7, "sn",
          "already listed on line 6")
    check(fails(read_alibaba_nodes, p, text.replace("n-05,64000,", "n-05,"), 2), p, 7, None,
          "found 4 columns")
    check(fails(read_alibaba_nodes, p, text, 13), p, None, "sites", "only 12 nodes")
    # a header alone blamed --sites ("8 sites but only 0 nodes")
    check(fails(read_alibaba_nodes, p, text.splitlines()[0] + "\n", 8), p, None, None,
          "no nodes", "one node a line")
    check(fails(read_alibaba_nodes, p, text, 2, "random"), p, None, "split", "stratified")
    check(fails(read_alibaba_nodes, p, b"sn,cpu_milli,memory_mib,gpu,model\nn,1\xff,1,0,\n", 1),
          p, 2, None, "UTF-8")


def test_a_quoted_cell_over_two_lines_is_named_not_joined(tmp_path, cluster3):
    # csv joined "pod<newline>x" into the pod name 'podx' (and a model "V1<newline>00" into
    # 'V100'), the line break silently dropped (CLI probe)
    p = tmp_path / "x.csv"
    nodes = NODES.read_text().replace("n-01,32000,262144,0,", 'n-01,32000,262144,0,"T\n4"')
    check(fails(read_alibaba_nodes, p, nodes, 2), p, 3, "model", "runs on to line 4",
          "one row a line")
    pods = PODS.read_text().replace("pod-b,", '"pod\nb",')
    check(fails(read_alibaba_pods, p, pods, cluster3), p, 3, "name", "runs on to line 4")
    check(fails(read_alibaba_pods, p, pods.replace(",LS,", ',"L\n\nS",', 1), cluster3), p, 2,
          "qos", "runs on to line 4")


# ----------------------------------------------------------------------------- pods

def test_pods_values(cluster3):
    w = read_alibaba_pods(PODS, cluster3)
    assert w.source == str(PODS)
    assert [j.id for j in w.jobs] == ["pod-a", "pod-d", "pod-e", "pod-b", "pod-c"]
    j = {x.id: x for x in w.jobs}
    for x in w.jobs:
        assert [t.id for t in x.tasks] == ["main"] and x.tasks[0].instances == 1
        assert x.origin == cluster3.site_names[zlib.crc32(x.id.encode()) % 3]
        assert x.weight == 1.0
    a, b, c, d, e = (j[k].tasks[0] for k in ("pod-a", "pod-b", "pod-c", "pod-d", "pod-e"))
    assert (a.demand.cpu, a.demand.mem, a.demand.gpu, a.duration) == (12000, 16384, 1000,
                                                                      12537496)
    assert b.demand.gpu == 460 and b.duration == 12902960 - 427100
    assert j["pod-b"].arrival == 427061
    assert c.demand.gpu == 320 and c.demand.gpu_models == {"G2", "T4"}
    assert c.duration == 15  # no scheduled_time: from creation_time
    assert d.demand.gpu == 8000 and d.demand.gpu_models == {"G2"} and d.duration == 8900
    assert e.demand.gpu == 0 and e.demand.gpu_models is None and e.duration == 190


def test_pods_qos_weights(cluster3):
    w = read_alibaba_pods(PODS, cluster3, qos_weights=QOS_WEIGHTS)
    assert {j.id: j.weight for j in w.jobs} == {"pod-a": 2, "pod-b": 1, "pod-c": 1,
                                                "pod-d": 2, "pod-e": 1}


def test_pods_errors(tmp_path, cluster3):
    p = tmp_path / "p.csv"
    text = PODS.read_text()
    check(fails(read_alibaba_pods, p, text.replace(",qos,", ",class,"), cluster3), p, 1, None,
          "wrong header", "missing qos", "unexpected class",
          "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase")
    check(fails(read_alibaba_pods, p, text.replace("500,9500,600", "500,500,600"), cluster3),
          p, 5, "deletion_time", "negative duration")
    check(fails(read_alibaba_pods, p, text.replace("pod-b,6000", "pod-b,6e3"), cluster3),
          p, 3, "cpu_milli", "'6e3'")
    check(fails(read_alibaba_pods, p, text.replace("427061,", "NaN,"), cluster3),
          p, 3, "creation_time", "'NaN'")
    check(fails(read_alibaba_pods, p, text.replace("8192,0,0", "8192,-1,0"), cluster3),
          p, 6, "num_gpu", "negative")
    check(fails(read_alibaba_pods, p, text.replace("1,460,", "2,460,"), cluster3),
          p, 3, "gpu_milli", "num_gpu 2")
    check(fails(read_alibaba_pods, p, text.replace(",LS,Running,0,", ",LS,Running,0"), cluster3),
          p, 2, None, "found 10 columns", "11 comma-separated columns")
    check(fails(read_alibaba_pods, p, text.replace("pod-b,", "pod-a,"), cluster3),
          p, 3, "name", "already listed on line 2")
    check(fails(read_alibaba_pods, p, "", cluster3), p, None, None, "empty")


def test_pod_demands_read_both_headers(tmp_path, cluster3):
    full = read_alibaba_pod_demands(PODS)
    jobs = read_alibaba_pods(PODS, cluster3).jobs
    assert sorted(full, key=lambda x: x[0]) == sorted(
        ((j.id, j.tasks[0].demand) for j in jobs), key=lambda x: x[0])
    p = tmp_path / "m.csv"
    p.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\na,12000,16384,2,1000\n"
                 "b,6000,1024,1,460\n")
    (_, a), (_, b) = read_alibaba_pod_demands(p)
    assert (a.cpu, a.gpu, a.gpu_models) == (12000, 2000, None) and b.gpu == 460
    check(fails(read_alibaba_pod_demands, p, "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
                                             "a,1,1,2,460\n"),
          p, 2, "gpu_milli", "num_gpu 2")
    check(fails(read_alibaba_pod_demands, p, "name,cpu,memory_mib,num_gpu,gpu_milli\n"),
          p, 1, None, "wrong header", "missing cpu_milli")


# ----------------------------------------------------------------------------- swf

def test_swf_values(cluster3):
    r = read_swf_report(SWF, cluster3)
    assert r.skipped_jobs == (3, 4) and r.skipped == 2
    w = r.workload
    assert w.source == str(SWF) and [j.id for j in w.jobs] == ["1", "2", "5"]
    j = {x.id: x for x in w.jobs}
    t1, t2, t5 = (j[k].tasks[0] for k in ("1", "2", "5"))
    assert (t1.id, t1.instances, t1.duration, t1.demand.cpu, t1.demand.mem) == ("main", 4, 100,
                                                                               1000, 1024)
    assert t2.instances == 8 and t2.demand.mem == 2  # requested procs; 2048 KB -> 2 MiB
    assert t5.duration == 0 and t5.demand.mem == 1 and j["5"].arrival == 25.5
    assert [j[k].origin for k in ("1", "2", "5")] == ["site-1", "site-2", "site-2"]
    assert read_swf(SWF, cluster3).jobs == w.jobs


def test_swf_rigid_and_memory(cluster3):
    w = read_swf(SWF, cluster3, rigid=True, mem_per_proc_mib=512)
    t1 = w.jobs[0].tasks[0]
    assert (t1.instances, t1.demand.cpu, t1.demand.mem) == (1, 4000, 2048)
    t2 = w.jobs[1].tasks[0]
    assert (t2.instances, t2.demand.cpu, t2.demand.mem) == (1, 8000, 16)


def test_swf_errors(tmp_path, cluster3):
    p = tmp_path / "s.swf"
    lines = SWF.read_text().split("\n")

    def with_line(i: int, new: str) -> str:
        return "\n".join(lines[:i] + [new] + lines[i + 1:])

    check(fails(read_swf, p, with_line(3, "1 0 5 100 4 -1 -1 4 200 -1 1 1 1 -1 0 -1"),
                cluster3), p, 4, "preceding_job", "found 16 fields", "job_number submit_time")
    check(fails(read_swf, p, with_line(3, lines[3] + " 7"), cluster3), p, 4, None,
          "found 19 fields")
    check(fails(read_swf, p, with_line(4, lines[4].replace("3600", "1h")), cluster3), p, 5,
          "run_time", "'1h'")
    check(fails(read_swf, p, with_line(4, lines[4].replace("2048", "nan")), cluster3), p, 5,
          "used_memory", "'nan'")
    check(fails(read_swf, p, with_line(4, lines[4].replace("3600", "-5")), cluster3), p, 5,
          "run_time", "negative")
    check(fails(read_swf, p, with_line(4, lines[4].replace("   10  -1", "  -10  -1")),
                cluster3), p, 5, "submit_time", "negative")
    check(fails(read_swf, p, with_line(4, lines[4].replace("-1 2048  8", "-1 2048  8.5")),
                cluster3), p, 5, "requested_processors", "8.5")
    check(fails(read_swf, p, with_line(4, lines[4].replace("2   10", "1   10")), cluster3),
          p, 5, "job_number", "already listed on line 4")


# ----------------------------------------------------------------------------- loader

def test_load_cluster_kinds():
    d = load_cluster("default")
    assert len(d.sites) == 8 and d.source.endswith("cluster-default.yaml")
    assert load_cluster(str(FIX / "cluster_small.yaml")).site_names == ("east", "west", "edge")
    c = load_cluster(str(NODES), sites=4, split="contiguous")
    assert [len(s.nodes) for s in c.sites] == [3, 3, 3, 3]
    assert load_cluster(str(NODES)).site_names == tuple(f"site-{i}" for i in range(8))


def test_load_cluster_errors(tmp_path):
    check(pytest.raises(InputError, load_cluster, str(tmp_path / "x.yaml")).value,
          tmp_path / "x.yaml", None, None, "no such file", "'default'")
    check(pytest.raises(InputError, load_cluster, "cluster.toml").value, "cluster.toml", None,
          None, "unknown kind", ".yaml/.yml", ".csv")
    check(pytest.raises(InputError, load_cluster, str(PODS)).value, PODS, 1, None,
          "node list header")


@pytest.mark.parametrize("kind, suffix", [("cluster", ".yaml"), ("cluster", ".csv"),
                                          ("workload", ".jsonl"), ("workload", ".swf")])
def test_a_path_that_cannot_be_looked_at_is_an_input_error(tmp_path, cluster3, kind, suffix):
    # a name too long for the file system: Path.is_file raised OSError past the loader
    spec = str(tmp_path / ("x" * 300 + suffix))
    load = load_cluster if kind == "cluster" else lambda s: load_workload(s, cluster3)
    check(pytest.raises(InputError, load, spec).value, spec, None, None,
          "cannot read the file", "File name too long")


def test_load_workload_kinds():
    c = read_cluster(FIX / "cluster_small.yaml")
    assert len(load_workload(str(FIX / "jobs_small.jsonl"), c).jobs) == 3
    assert len(load_workload(str(PODS), c).jobs) == 5
    assert load_workload(str(PODS), c, qos_weights=QOS_WEIGHTS).jobs[0].weight == 2
    w = load_workload(str(SWF), c, rigid=True, mem_per_proc_mib=None)
    assert w.instance_count == 3
    check(pytest.raises(InputError, load_workload, str(SWF), c, qos_weights={}).value, SWF,
          None, "qos_weights", "does not apply")
    check(pytest.raises(InputError, load_workload, str(NODES), c).value, NODES, 1, None,
          "pod list header")
    check(pytest.raises(InputError, load_workload, "jobs.parquet", c).value, "jobs.parquet",
          None, None, "unknown kind", ".jsonl", ".swf", "synthetic")
    check(pytest.raises(InputError, load_workload, "/nonexistent/j.jsonl", c).value,
          "/nonexistent/j.jsonl", None, None, "no such file")


def test_load_synthetic(monkeypatch):
    c = read_cluster(FIX / "cluster_small.yaml")
    calls = []
    fake = types.ModuleType("agora.agents.workloads.synthetic")
    fake.generate = lambda cluster, seed, **kw: calls.append((cluster, seed, kw)) or "W"
    monkeypatch.setitem(sys.modules, "agora.agents.workloads.synthetic", fake)
    assert load_workload("synthetic", c) == "W"
    assert load_workload("synthetic:jobs=20,rate=0.5,seed=3,kind=dag,dags=true", c) == "W"
    assert load_workload("synthetic:jobs=5", c, seed=9) == "W"
    assert calls == [(c, 0, {}),
                     (c, 3, {"jobs": 20, "rate": 0.5, "kind": "dag", "dags": True}),
                     (c, 9, {"jobs": 5})]
    check(pytest.raises(InputError, parse_synthetic, "synthetic:jobs").value,
          "synthetic:jobs", None, "synthetic[0]", "key=value")
    def generate(cluster, *, seed=0, jobs=10):
        if jobs < 1:
            raise ValueError("jobs must be >= 1")
        return "G"

    fake.generate = generate
    assert load_workload("synthetic:jobs=4", c) == "G"
    check(pytest.raises(InputError, load_workload, "synthetic:jobz=4", c).value,
          "synthetic:jobz=4", None, "jobz", "unknown synthetic parameter", "seed, jobs")
    check(pytest.raises(InputError, load_workload, "synthetic:jobs=0", c).value,
          "synthetic:jobs=0", None, None, "jobs must be >= 1")
    monkeypatch.setitem(sys.modules, "agora.agents.workloads.synthetic", None)
    check(pytest.raises(InputError, load_workload, "synthetic", c).value, "synthetic", None,
          None, "not available")


def test_split_counts_are_stable():
    a = read_alibaba_nodes(NODES, 3)
    b = read_alibaba_nodes(NODES, 3)
    assert a.sites == b.sites
    assert Counter(n.site for n in a.nodes) == {"site-0": 4, "site-1": 4, "site-2": 4}
