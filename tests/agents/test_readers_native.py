"""Native cluster YAML and JSON Lines jobs: valid fixtures, round trips, and every error
naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agora.agents.domain import (Link, NodeOutage, PowerModel, Run, topological_order,
                                 why_unschedulable)
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.native import read_cluster, read_jobs, write_cluster, write_jobs
from agora.agents.workloads.yamlmarks import load_yaml
from tests.errorcheck import check

FIX = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def cluster():
    return read_cluster(FIX / "cluster_small.yaml")


def fails(reader, path: Path, text: str | bytes, *args, **kw) -> InputError:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as ei:
        reader(str(path), *args, **kw)
    return ei.value


# ----------------------------------------------------------------------------- cluster

def test_cluster_fixture(cluster):
    assert cluster.source == str(FIX / "cluster_small.yaml")
    assert cluster.site_names == ("east", "west", "edge")
    east, west, edge = cluster.sites
    assert [n.name for n in east.nodes] == ["east/cpu-0", "east/cpu-1", "east/v100"]
    assert [n.name for n in west.nodes] == ["west/a100-0", "west/a100-1", "west/a100-2"]
    assert [n.name for n in edge.nodes] == ["edge/box"]
    v100 = east.nodes[2]
    assert (v100.site, v100.cpu, v100.mem, v100.gpus, v100.gpu_model) == ("east", 500, 4096, 4,
                                                                         "V100")
    assert east.nodes[0].cpu == 64_000 and east.nodes[0].gpus == 0
    assert east.nodes[0].gpu_model is None
    assert east.power == PowerModel(150, 420, 50, 300, 1.25)
    assert west.power == PowerModel()
    assert edge.power == PowerModel(pue=1.0)
    assert cluster.default_link == Link(40, 5000)
    assert cluster.link("west", "east") == Link(60, 40000)
    assert cluster.links[frozenset({"east", "edge"})] == Link(8.5, 1000)
    assert cluster.link("edge", "west") == Link(40, 5000)
    assert cluster.gpu_models == {"V100", "A100"}
    f = cluster.faults
    assert (f.seed, f.task_failure_prob, f.overrun_prob, f.overrun_factor, f.max_attempts) == \
        (7, 0.01, 0.1, 2.0, 3)
    assert f.outages == (NodeOutage(at=100, until=250.5, node="west/a100-1"),
                         NodeOutage(at=1000, until=None, site="edge"))


def test_default_cluster_reads():
    c = read_cluster(Path(__file__).parents[2] / "agents" / "workloads" / "cluster-default.yaml")
    assert len(c.sites) == 8 and len(c.nodes) == 43


def test_cluster_round_trip(cluster, tmp_path):
    out = tmp_path / "c.yaml"
    write_cluster(cluster, out)
    back = read_cluster(out)
    assert back.sites == cluster.sites
    assert back.links == cluster.links
    assert back.default_link == cluster.default_link
    assert back.faults == cluster.faults


def test_yamlmarks_lines(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("a: 1\nb:\n  - x\n  -\n    c: 2\n", encoding="utf-8")
    d = load_yaml(str(p))
    assert d == {"a": 1, "b": ["x", {"c": 2}]}
    assert d.key_lines == {"a": 1, "b": 2}
    assert d["b"].item_lines == [3, 5] and d["b"][1].key_lines == {"c": 5}


GOOD = """sites:
  - name: s1
    nodes:
      - {name: n, cpu: 4, mem: 1024}
  - name: s2
    nodes:
      - name: g
        cpu: 8
        mem: 2048
        gpus: 2
        gpu_model: T4
"""


@pytest.mark.parametrize("old,new,line,field,words", [
    ("cpu: 8", "cpu: -8", 8, "sites[1].nodes[0].cpu", ["-8", "> 0"]),
    ("cpu: 8", "cpu: .nan", 8, "sites[1].nodes[0].cpu", ["NaN"]),
    ("cpu: 8", "cpu: '8'", 8, "sites[1].nodes[0].cpu", ["'8'"]),
    ("mem: 2048", "mem: 20.5", 9, "sites[1].nodes[0].mem", ["whole number"]),
    ("mem: 2048", "memory: 2048", 9, "sites[1].nodes[0].memory", ["unknown key", "cpu, mem"]),
    ("        gpu_model: T4\n", "", 7, "sites[1].nodes[0].gpu_model", ["gpu model"]),
    ("gpus: 2", "gpus: 0", 11, "sites[1].nodes[0].gpu_model", ["no gpus"]),
    ("        mem: 2048\n", "", 7, "sites[1].nodes[0].mem", ["missing"]),
    ("name: s2", "name: s1", 5, "sites[1].name", ["already defined"]),
    ("{name: n, cpu: 4, mem: 1024}", "{name: n, cpu: 4, mem: 1024, count: 0}", 4,
     "sites[0].nodes[0].count", [">= 1"]),
    # a name of 62 characters is valid alone, but with count 20 its last node is
    # '<name>-19', 65 characters, which the coordinator refuses in every node report
    ("{name: n, cpu: 4, mem: 1024}", "{name: " + "n" * 62 + ", cpu: 4, mem: 1024, count: 20}",
     4, "sites[0].nodes[0].name", ["-19", "65 characters", "at most 64"]),
])
def test_cluster_errors(tmp_path, old, new, line, field, words):
    assert old in GOOD
    p = tmp_path / "bad.yaml"
    check(fails(read_cluster, p, GOOD.replace(old, new)), p, line, field, *words)


def test_cluster_unparseable(tmp_path):
    p = tmp_path / "bad.yaml"
    check(fails(read_cluster, p, GOOD.replace("cpu: 8", "cpu: [8")), p, 9, None, "not valid YAML")
    check(fails(read_cluster, p, ""), p, None, None, "empty")
    check(fails(read_cluster, p, b"sites:\n  - \xff\n"), p, 2, None, "UTF-8")
    check(fails(read_cluster, p, "- 1\n- 2\n"), p, 1, None, "found a list", "mapping")
    check(fails(read_cluster, p, GOOD + "sites: []\n"), p, 12, "sites", "appears twice")
    check(fails(read_cluster, p, "sites: []\n"), p, 1, "sites", "empty list")
    check(fails(read_cluster, p, "sites:\n  - name: s\n    nodes: []\n"), p, 3,
          "sites[0].nodes", "empty list")


def test_cluster_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(InputError) as ei:
        read_cluster(p)
    check(ei.value, p, None, None, "cannot read")


LINKS = GOOD + """links:
  default: {latency_ms: 40, bandwidth_mbps: 5000}
  pairs:
    - {a: s1, b: s2, latency_ms: 10, bandwidth_mbps: 100}
faults:
  outages:
    - {node: s2/g, at: 5, until: 10}
"""


@pytest.mark.parametrize("old,new,line,field,words", [
    ("b: s2,", "b: s3,", 15, "links.pairs[0].b", ["unknown site 's3'", "s1, s2"]),
    ("b: s2,", "b: s1,", 15, "links.pairs[0].b", ["distinct"]),
    ("bandwidth_mbps: 100", "bandwidth_mbps: 0", 15, "links.pairs[0].bandwidth_mbps",
     [">= 0.001"]),
    ("bandwidth_mbps: 100", "bandwidth_mbps: 5.0e-324", 15, "links.pairs[0].bandwidth_mbps",
     [">= 0.001"]),
    ("latency_ms: 40", "latency_ms: -1", 13, "links.default.latency_ms", ["negative"]),
    # past these bounds a run gave JCTs of 1e297 s, or inf and nan in --json
    ("latency_ms: 40", "latency_ms: 1.0e+300", 13, "links.default.latency_ms", ["<= 1,000,000"]),
    ("bandwidth_mbps: 100", "bandwidth_mbps: 1.0e+12", 15, "links.pairs[0].bandwidth_mbps",
     ["<= 1,000,000,000"]),
    ("until: 10", "until: 1.0e+300", 18, "faults.outages[0].until", ["<= 10,000,000,000"]),
    ("  outages:", "  overrun_factor: 1.0e+308\n  outages:", 17, "faults.overrun_factor",
     ["<= 1,000"]),
    ("  outages:", "  max_attempts: 1000000000\n  outages:", 17, "faults.max_attempts",
     ["<= 1,000"]),
    ("node: s2/g", "node: s2/h", 18, "faults.outages[0].node", ["unknown node 's2/h'"]),
    ("node: s2/g", "site: s9", 18, "faults.outages[0].site", ["unknown site 's9'"]),
    ("node: s2/g", "node: s2/g, site: s2", 18, "faults.outages[0]", ["both node and site"]),
    ("until: 10", "until: 5", 18, "faults.outages[0].until", ["> 5"]),
    ("  outages:", "  task_failure_prob: 1\n  outages:", 17, "faults.task_failure_prob",
     ["< 1"]),
    ("  outages:", "  fail: 1\n  outages:", 17, "faults.fail", ["unknown key", "max_attempts"]),
])
def test_cluster_link_fault_errors(tmp_path, old, new, line, field, words):
    assert old in LINKS
    p = tmp_path / "bad.yaml"
    check(fails(read_cluster, p, LINKS.replace(old, new)), p, line, field, *words)


def test_power_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    text = GOOD.replace("  - name: s2\n", "  - name: s2\n    power: {node_idle_w: 500}\n")
    check(fails(read_cluster, p, text), p, 6, "sites[1].power.node_idle_w", "above")
    text = GOOD.replace("  - name: s2\n", "  - name: s2\n    power: {pue: 0.9}\n")
    check(fails(read_cluster, p, text), p, 6, "sites[1].power.pue", ">= 1")
    text = GOOD.replace("  - name: s2\n", "  - name: s2\n    power: {node_peak_w: 1.0e+308}\n")
    check(fails(read_cluster, p, text), p, 6, "sites[1].power.node_peak_w", "<= 10,000,000")


def test_duplicate_node_names(tmp_path):
    p = tmp_path / "bad.yaml"
    text = GOOD.replace("      - {name: n, cpu: 4, mem: 1024}\n",
                        "      - {name: n, cpu: 4, mem: 1024, count: 2}\n"
                        "      - {name: n-1, cpu: 4, mem: 1024}\n")
    check(fails(read_cluster, p, text), p, 5, "sites[0].nodes[1].name", "'s1/n-1' already used")


def test_a_cluster_has_at_most_max_nodes_in_all(tmp_path, monkeypatch):
    # each count <= 100,000, but a 2 KB file of 20 such entries built 2,000,000 nodes (11 s,
    # 370 MiB to read; 200 entries would not fit in memory): the total is bounded too
    from agora.agents.limits import MAX_NODES
    from agora.agents.workloads import native_cluster

    assert MAX_NODES == 1_000_000
    monkeypatch.setattr(native_cluster, "MAX_NODES", 4)
    p = tmp_path / "bad.yaml"
    text = GOOD.replace("{name: n, cpu: 4, mem: 1024}", "{name: n, cpu: 4, mem: 1024, count: 4}")
    check(fails(read_cluster, p, text), p, 7, "sites[1].nodes[0].count",
          "1 more nodes make 5 in the cluster", "at most 4 nodes in all sites together")
    p.write_text(GOOD)
    assert len(read_cluster(p).nodes) == 2


# ----------------------------------------------------------------------------- jobs

def test_jobs_fixture(cluster):
    w = read_jobs(FIX / "jobs_small.jsonl", cluster)
    assert w.source == str(FIX / "jobs_small.jsonl") and w.seed is None
    assert [j.id for j in w.jobs] == ["j0", "j1", "j2"]
    j0, j1, j2 = w.jobs
    assert (j0.arrival, j0.origin, j0.weight, j0.deadline) == (3.5, "edge", 1.0, None)
    assert j0.tasks[0].demand.cpu == 1_000_000  # fits no node: not a reader error
    assert why_unschedulable(j0.tasks[0].demand, cluster) is not None
    assert j1.tasks[0].demand.cpu == 500 and j1.tasks[0].duration == 0
    assert j1.tasks[0].run == Run(argv=("python3", "-c", "print('hi')"),
                                  env=(("MODE", "fast"), ("N", "3")), cwd="/tmp", timeout_s=30)
    assert j2.tasks[0].run is None
    assert (j2.arrival, j2.origin, j2.weight, j2.deadline) == (10, "west", 2.5, 500)
    prep, train, ev = j2.tasks
    assert (prep.data_mb, prep.demand.cpu, prep.demand.mem, prep.demand.gpu) == (100, 2000, 4096, 0)
    assert train.demand.gpu == 2000 and train.demand.gpu_models == {"A100", "V100"}
    assert (train.instances, train.after, train.duration) == (4, ("prep",), 120.5)
    assert ev.demand.gpu == 250 and ev.demand.gpu_models is None
    assert ev.after == ("train", "prep")
    assert [t.id for t in topological_order(j2)] == ["prep", "train", "eval"]
    assert j2.critical_path() == 160.5


def test_jobs_round_trip(cluster, tmp_path):
    w = read_jobs(FIX / "jobs_small.jsonl", cluster)
    out = tmp_path / "out.jsonl"
    write_jobs(w, out)
    back = read_jobs(out, cluster)
    assert back.jobs == w.jobs
    write_jobs(back, tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_text() == out.read_text()


def job(**over) -> dict:
    j = {"id": "a", "arrival": 1, "origin": "east",
         "tasks": [{"id": "t0", "duration": 5, "demand": {"cpu": 1, "mem": 512}},
                   {"id": "t1", "duration": 5, "demand": {"cpu": 1, "mem": 512, "gpu": 1,
                                                          "gpu_models": ["V100", "A100"]},
                    "after": ["t0"]}]}
    j.update(over)
    return j


def jobs_text(bad: str) -> str:
    """Two comment/blank lines, a good job on line 3, ``bad`` on line 4."""
    return "# header\n\n" + json.dumps(job(id="ok")) + "\n" + bad + "\n"


def bad_task(i: int, **over) -> str:
    j = job()
    j["tasks"][i].update(over)
    return json.dumps(j)


def bad_demand(i: int, **over) -> str:
    j = job()
    j["tasks"][i]["demand"].update(over)
    return json.dumps(j)


def drop(key: str) -> str:
    j = job()
    del j[key]
    return json.dumps(j)


@pytest.mark.parametrize("bad,field,words", [
    ('{"id": "a", "arrival": 1,', None, ["not valid JSON"]),
    ("[1, 2]", None, ["found a list", "mapping"]),
    (drop("origin"), "origin", ["missing"]),
    (bad_task(0, duration=None), "tasks[0].duration", ["null"]),
    (json.dumps(job(arrival=-3)), "arrival", ["-3", "negative", ">= 0"]),
    (bad_task(1, duration=-0.5), "tasks[1].duration", ["negative"]),
    (json.dumps(job(arrival=float("nan"))), "arrival", ["NaN"]),
    (bad_task(0, duration=float("inf")), "tasks[0].duration", ["Infinity"]),
    (json.dumps(job()).replace('"arrival": 1', '"arrival": 1e999'), "arrival", ["Infinity"]),
    (json.dumps(job(arrival=True)), "arrival", ["true"]),
    (json.dumps(job(arrival="5")), "arrival", ["'5'"]),
    (json.dumps(job(origin="mars")), "origin", ["unknown site 'mars'", "east, edge, west"]),
    (bad_demand(1, gpu_models=["V100", "H100"]), "tasks[1].demand.gpu_models[1]",
     ["unknown gpu model 'H100'", "A100, V100"]),
    (bad_demand(0, gpu_models=["V100"]), "tasks[0].demand.gpu_models", ["no gpu"]),
    (bad_demand(1, gpu_models=["V100", "V100"]), "tasks[1].demand.gpu_models[1]",
     ["'V100' listed twice"]),
    (bad_demand(1, gpu_models=[]), "tasks[1].demand.gpu_models", ["empty list"]),
    (bad_task(1, after=["t9"]), "tasks[1].after[0]", ["'t9' is not a task", "'t0', 't1'"]),
    (bad_task(0, after=["t1"]), "tasks[0].after", ["cycle", "t0 -> t1 -> t0"]),
    (bad_task(1, after=["t1"]), "tasks[1].after", ["cycle", "t1 -> t1"]),
    (bad_task(1, after=["t0", "t0"]), "tasks[1].after[1]", ["twice"]),
    (bad_demand(1, gpu=1.5), "tasks[1].demand.gpu", ["1.5", "whole number"]),
    (bad_demand(1, gpu=-1), "tasks[1].demand.gpu", ["negative"]),
    (bad_demand(0, mem=0.5), "tasks[0].demand.mem", ["whole number"]),
    (bad_demand(0, gpus=1), "tasks[0].demand.gpus", ["unknown key", "cpu, mem, gpu"]),
    (bad_task(0, instances=0), "tasks[0].instances", [">= 1"]),
    (bad_task(0, id="t1"), "tasks[1].id", ["already used"]),
    (json.dumps(job(extra=1)), "extra", ["unknown key", "id, arrival"]),
    (json.dumps(job(id="ok")), "id", ["already used on line 3"]),
    (json.dumps(job(id="")), "id", ["non-empty string"]),
    (json.dumps(job(id=7)), "id", ["7"]),
    (json.dumps(job(tasks=[])), "tasks", ["empty list"]),
    (json.dumps(job(weight=0)), "weight", ["> 0"]),
    (json.dumps(job(deadline=1)), "deadline", ["> 1"]),
    (json.dumps(job(arrival=1e10, deadline=1e10)), "deadline", ["the latest time there is"]),
    ('{"id": "a", "id": "b"}', "id", ["twice"]),
    (bad_task(0, run={"argv": []}), "tasks[0].run.argv", ["empty list"]),
    (bad_task(0, run={"argv": "ls"}), "tasks[0].run.argv", ["'ls'", "list"]),
    (bad_task(0, run={"argv": ["ls", 3]}), "tasks[0].run.argv[1]", ["3", "a string"]),
    (bad_task(0, run={"argv": ["a\u0000b"]}), "tasks[0].run.argv[0]", ["NUL"]),
    (bad_task(0, run={"argv": ["echo", "\ud800"]}), "tasks[0].run.argv[1]",
     ["lone surrogate", "'\\ud800'"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"N": "a\udfffb"}}), "tasks[0].run.env.N",
     ["lone surrogate"]),
    (bad_task(0, run={"argv": ["ls"], "cwd": "\udc80"}), "tasks[0].run.cwd",
     ["lone surrogates"]),
    (bad_task(0, run={"cmd": "ls"}), "tasks[0].run.cmd", ["unknown key", "argv"]),
    (bad_task(0, run={}), "tasks[0].run.argv", ["missing"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"AGORA_JOB": "x"}}), "tasks[0].run.env.AGORA_JOB",
     ["Agora sets"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"1X": "x"}}), "tasks[0].run.env.1X",
     ["invalid variable name"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"N": 3}}), "tasks[0].run.env.N", ["quote"]),
    (bad_task(0, run={"argv": ["ls"], "timeout_s": 0}), "tasks[0].run.timeout_s", ["> 0"]),
    (bad_task(0, run={"argv": ["ls"], "cwd": ""}), "tasks[0].run.cwd", ["folder path"]),
    (bad_task(0, run={"argv": ["x" * 40000]}), "tasks[0].run.argv", ["bytes", "files"]),
])
def test_jobs_errors(cluster, tmp_path, bad, field, words):
    p = tmp_path / "bad.jsonl"
    check(fails(read_jobs, p, jobs_text(bad), cluster), p, 4, field, *words)


def test_jobs_bad_bytes_and_file(cluster, tmp_path):
    p = tmp_path / "bad.jsonl"
    raw = ("# x\n" + json.dumps(job()) + "\n").encode() + b'{"id": "\xff\xfe"}\n'
    check(fails(read_jobs, p, raw, cluster), p, 3, None, "UTF-8")
    # a file saved as UTF-16 (a Windows editor's "Unicode") is named as such, with the fix
    u16 = (json.dumps(job()) + "\n").encode("utf-16")
    check(fails(read_jobs, p, u16, cluster), p, 1, None, "UTF-16", "iconv")
    with pytest.raises(InputError) as ei:
        read_jobs(tmp_path / "missing.jsonl", cluster)
    check(ei.value, tmp_path / "missing.jsonl", None, None, "cannot read")


def test_a_live_agora_needs_a_run_for_every_task(cluster, tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text(jobs_text(bad_task(1, run={"argv": ["true"]})))
    check(fails(read_jobs, p, p.read_text(), cluster, require_run=True), p, 3,
          "tasks[0].run", "has no run", "argv")  # line 3 holds the first job (no run)
    j = job()
    for t in j["tasks"]:
        t["run"] = {"argv": ["true"]}
    p.write_text(json.dumps(j) + "\n")
    assert read_jobs(p, cluster, require_run=True).jobs[0].tasks[1].run.argv == ("true",)


def test_a_live_agora_refuses_a_job_over_its_instance_or_task_budget_naming_the_line(
        cluster, tmp_path):
    # a probe: 1,000,000 + 1,000 instances passed the reader and were refused only by the
    # coordinator (RESOURCE_EXHAUSTED, no file or line); a simulation reads them
    run = {"argv": ["true"]}
    big = job(id="big", tasks=[
        {"id": "a", "duration": 1, "demand": {"cpu": 1, "mem": 512}, "instances": 1_000_000,
         "run": run},
        {"id": "b", "duration": 1, "demand": {"cpu": 1, "mem": 512}, "instances": 1_000,
         "run": run}])
    p = tmp_path / "j.jsonl"
    p.write_text(json.dumps(big) + "\n")
    check(fails(read_jobs, p, p.read_text(), cluster, require_run=True), p, 1, "tasks",
          "1,001,000 instances", "at most 1,000,000")
    assert read_jobs(p, cluster).jobs[0].tasks[0].instances == 1_000_000
    wide = job(id="wide", tasks=[{"id": f"t{i}", "duration": 1, "demand": {"cpu": 1,
                                  "mem": 512}, "run": run} for i in range(1_001)])
    p.write_text(json.dumps(wide) + "\n")
    check(fails(read_jobs, p, p.read_text(), cluster, require_run=True), p, 1, "tasks",
          "1,001 tasks", "at most 1,000")


def test_a_long_dependency_cycle_is_named_by_its_first_tasks_in_one_short_line(cluster,
                                                                                tmp_path):
    # a probe: 20,000 tasks in one cycle made a 189 KB error line listing every task
    n = 1_000
    tasks = [{"id": f"t{i}", "duration": 1, "demand": {"cpu": 1, "mem": 512},
              "after": [f"t{(i + 1) % n}"]} for i in range(n)]
    p = tmp_path / "j.jsonl"
    p.write_text(json.dumps(job(id="loop", tasks=tasks)) + "\n")
    e = fails(read_jobs, p, p.read_text(), cluster)
    assert "cycle" in str(e) and "(992 more tasks)" in str(e) and len(str(e)) < 600, str(e)


def test_jobs_empty_file_is_empty_workload(cluster, tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("# nothing\n\n")
    assert read_jobs(p, cluster).jobs == ()


@pytest.mark.parametrize("text,words", [
    ("[" * 100_000 + "]" * 100_000, ("nested too deeply",)),
    ('{"id": ' + "7" * 5000 + "}", ("a number of more than", "digits")),
])
def test_json_too_deep_or_too_long_is_said_in_the_users_words(cluster, tmp_path, text, words):
    # these once printed Python's own exception (RecursionError; "use
    # sys.set_int_max_str_digits() to increase the limit"), advice for a programmer
    p = tmp_path / "j.jsonl"
    p.write_text(text + "\n")
    with pytest.raises(InputError) as ei:
        read_jobs(p, cluster)
    check(ei.value, p, 1, None, *words)
    assert "Error" not in str(ei.value) and "sys." not in str(ei.value), str(ei.value)
