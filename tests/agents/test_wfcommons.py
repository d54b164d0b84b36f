"""The WfCommons instance reader (agents/workloads/wfcommons.py): WfFormat 1.5/1.6 and the flat
1.0-1.4 form as DAG jobs, workflows that cannot be replayed whole skipped and counted, anything
malformed named by file and JSON path. The fixtures are written here, shaped like WfInstances'
makeflow/blast and helloworld/chain files (1.6) and pegasus-instances' 1000genome (1.0)."""

from __future__ import annotations

import copy
import json
import logging
import math
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import MILLI, topological_order
from agora.agents.sim.runner import run_one
from agora.agents.workloads import wfcommons
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_workload
from agora.agents.workloads.wfcommons import read_wfcommons, read_wfcommons_report, skipped_note
from tests.agents.test_readers_properties import valid_workload
from tests.errorcheck import check
from tests.simkit import cluster, node, site


def _spec(tid, parents=(), children=(), inputs=()):
    return {"name": tid.rsplit("_", 1)[0], "id": tid, "parents": list(parents),
            "children": list(children), "inputFiles": list(inputs), "outputFiles": []}


# split -> two blastall -> cat; blastall_3 -> cat only in cat's parents, split -> blastall_3
# only in split's children, and "final" waits for cat through cat's children alone.
SPEC = {
    "name": "makeflow blast/small", "description": "Trace generated with WorkflowHub",
    "createdAt": "2020-12-30T02:24:13.540715", "schemaVersion": "1.5",
    "author": {"name": "rafsilva", "email": "support@workflowhub.org"},
    "workflow": {
        "specification": {
            "tasks": [
                _spec("split_fasta_00000001", children=["blastall_00000002", "blastall_00000003"],
                      inputs=["small.fasta", "split_fasta"]),
                _spec("blastall_00000002", ["split_fasta_00000001"], ["cat_00000004"],
                      ["blastall", "small.fasta.0", "nt", "nt"]),
                _spec("blastall_00000003", [], [], ["blastall", "small.fasta.1", "nt"]),
                _spec("cat_00000004", ["blastall_00000002", "blastall_00000003"], ["final_5"],
                      ["small.fasta.0.out"]),
                _spec("final_5"),
            ],
            "files": [{"id": "small.fasta", "sizeInBytes": 12_000_000},
                      {"id": "split_fasta", "sizeInBytes": 500_000},
                      {"id": "blastall", "sizeInBytes": 1_000_000},
                      {"id": "nt", "sizeInBytes": 2_000_000_000},
                      {"id": "small.fasta.0", "sizeInBytes": 300_000},
                      {"id": "small.fasta.1", "sizeInBytes": 200_000},
                      {"id": "small.fasta.0.out", "sizeInBytes": 4_000}],
        },
        "execution": {
            "makespanInSeconds": 661.0, "executedAt": "2020-12-30T02:24:13",
            "tasks": [
                {"id": "split_fasta_00000001", "runtimeInSeconds": 10.5, "avgCPU": 59.9,
                 "memoryInBytes": 87824, "machines": ["ubuntu"]},
                {"id": "blastall_00000002", "runtimeInSeconds": 300, "coreCount": 2,
                 "memoryInBytes": 3 * 2 ** 30},
                {"id": "blastall_00000003", "runtimeInSeconds": 280.25, "coreCount": 1.5},
                {"id": "cat_00000004", "runtimeInSeconds": 0.0, "memoryInBytes": 0},
                {"id": "final_5", "runtimeInSeconds": 7},
            ],
            "machines": [{"nodeName": "ubuntu", "cpu": {"coreCount": 64, "speedInMHz": 1200}}],
        },
    },
    "runtimeSystem": {"name": "Makeflow", "version": "7.0", "url": "https://ccl.cse.nd.edu"},
}

# pegasus-instances 1000genome-chameleon-*.json (1.0): workflow.jobs, runtime, files with
# link/name/size, parents by name, no children, cores absent; memory in KB.
FLAT = {
    "name": "1000genome-20200401T035039Z-0", "schemaVersion": "1.0",
    "wms": {"name": "Pegasus", "version": "4.9.3"},
    "workflow": {"makespan": 776.0, "jobs": [
        {"name": "individuals_ID0000001", "type": "compute", "runtime": 53.6, "parents": [],
         "files": [{"link": "input", "name": "ALL.chr21.100000.vcf", "size": 1014442803},
                   {"link": "input", "name": "columns.txt", "size": 20078},
                   {"link": "output", "name": "chr21n-1-1001.tar.gz", "size": 28281}],
         "avgCPU": 160.8, "machine": "pegasus-5", "memory": 2048},
        {"name": "sifting_ID0000002", "type": "compute", "runtime": 0.309, "cores": 4,
         "files": [{"link": "input", "name": "annotation.vcf", "size": None}]},
        {"name": "individuals_merge_ID0000003", "type": "compute", "runtime": 38.2,
         "parents": ["individuals_ID0000001"], "children": ["mutation_overlap_ID0000004"],
         "files": [{"link": "input", "name": "chr21n-1-1001.tar.gz", "size": 28281},
                   {"link": "input", "name": "chr21n-1-1001.tar.gz", "size": 28281}]},
        {"name": "mutation_overlap_ID0000004", "type": "compute", "runtime": 12,
         "parents": ["sifting_ID0000002"], "files": []},
    ]},
}


@pytest.fixture
def two_sites():
    return cluster(site("a", node("a", "n1", 64, mem=65536), node("a", "n2", 32, mem=131072)),
                   site("b", node("b", "n1", 16, mem=32768)))


def write(tmp_path: Path, value, name: str = "wf.json") -> Path:
    p = tmp_path / name
    p.write_text(value if isinstance(value, str) else json.dumps(value, indent=1))
    return p


def edited(base: dict, edit) -> dict:
    value = copy.deepcopy(base)
    edit(value)
    return value


def test_a_1_5_instance_maps_as_documented(tmp_path, two_sites):
    p = write(tmp_path, SPEC)
    w = read_wfcommons(p, two_sites)
    assert w.source == str(p) and len(w.jobs) == 1
    job = w.jobs[0]
    assert job.id == "makeflow_blast_small"                  # white space and '/' made '_'
    assert job.arrival == 0 and job.weight == 1
    assert job.origin == two_sites.site_names[zlib.crc32(job.id.encode()) % 2]
    t = {x.id: x for x in job.tasks}
    assert [x.id for x in job.tasks] == [x["id"] for x in SPEC["workflow"]["specification"]
                                         ["tasks"]]
    assert {k: v.after for k, v in t.items()} == {
        "split_fasta_00000001": (),
        "blastall_00000002": ("split_fasta_00000001",),
        "blastall_00000003": ("split_fasta_00000001",),          # from split's children
        "cat_00000004": ("blastall_00000002", "blastall_00000003"),
        "final_5": ("cat_00000004",)}                            # from cat's children
    assert t["split_fasta_00000001"].duration == 10.5 and t["cat_00000004"].duration == 0
    assert t["blastall_00000002"].demand.cpu == 2 * MILLI
    assert t["blastall_00000003"].demand.cpu == 1500                  # fractional cores
    assert t["split_fasta_00000001"].demand.cpu == MILLI              # absent: one core
    assert t["split_fasta_00000001"].demand.mem == 1                  # 87824 B, rounded up
    assert t["blastall_00000002"].demand.mem == 3072
    assert t["blastall_00000003"].demand.mem == wfcommons.DEFAULT_MEM_MIB == 0
    assert t["split_fasta_00000001"].data_mb == pytest.approx(12.5)
    assert t["blastall_00000002"].data_mb == pytest.approx(2001.3)    # "nt" counted once
    assert t["final_5"].data_mb == 0 and all(x.instances == 1 for x in job.tasks)
    v16 = edited(SPEC, lambda v: v.update(schemaVersion="1.6"))
    assert read_wfcommons(write(tmp_path, v16), two_sites).jobs == w.jobs
    nofiles = edited(SPEC, lambda v: v["workflow"]["specification"].pop("files"))
    assert all(x.data_mb == 0 for x in read_wfcommons(write(tmp_path, nofiles),
                                                      two_sites).jobs[0].tasks)


def test_the_flat_form_of_1_0_to_1_4(tmp_path, two_sites):
    job = read_wfcommons(write(tmp_path, FLAT), two_sites).jobs[0]
    assert job.id == "1000genome-20200401T035039Z-0"
    t = {x.id: x for x in job.tasks}
    assert {k: v.after for k, v in t.items()} == {
        "individuals_ID0000001": (), "sifting_ID0000002": (),
        "individuals_merge_ID0000003": ("individuals_ID0000001",),
        "mutation_overlap_ID0000004": ("sifting_ID0000002", "individuals_merge_ID0000003")}
    one = t["individuals_ID0000001"]
    assert one.duration == 53.6 and one.demand.cpu == MILLI
    assert one.demand.mem == math.ceil(2048 * 1000 / 2 ** 20)         # memory in KB
    assert one.data_mb == pytest.approx((1014442803 + 20078) / 1e6)   # inputs only
    assert t["sifting_ID0000002"].demand.cpu == 4 * MILLI
    assert t["sifting_ID0000002"].data_mb == 0                        # size null: unknown
    assert t["individuals_merge_ID0000003"].data_mb == pytest.approx(0.028281)   # once
    # 1.4: workflow.tasks, runtimeInSeconds, memoryInBytes, sizeInBytes
    v14 = edited(FLAT, lambda v: v.update(schemaVersion="1.4"))
    wf = v14["workflow"]
    wf["tasks"] = wf.pop("jobs")
    first = wf["tasks"][0]
    first["runtimeInSeconds"] = first.pop("runtime")
    first["memoryInBytes"] = first.pop("memory") * 1000
    for f in first["files"]:
        f["sizeInBytes"] = f.pop("size")
    again = read_wfcommons(write(tmp_path, v14), two_sites).jobs[0]
    assert again.tasks == job.tasks


def _no_execution(v):
    del v["workflow"]["execution"]


def _one_unmeasured(v):
    v["workflow"]["execution"]["tasks"].pop(2)


def _null_runtime(v):
    v["workflow"]["execution"]["tasks"][0]["runtimeInSeconds"] = None


def test_workflows_that_cannot_be_replayed_whole_are_skipped_and_counted(tmp_path, two_sites,
                                                                         caplog):
    d = tmp_path / "wfs"
    d.mkdir()
    write(d, SPEC, "a-ok.json")
    write(d, edited(SPEC, _no_execution), "b-spec-only.json")
    write(d, edited(SPEC, _one_unmeasured), "c-unmeasured.json")
    write(d, edited(SPEC, _null_runtime), "d-null.json")
    write(d, edited(FLAT, lambda v: v["workflow"]["jobs"][1].pop("runtime")), "e-flat.json")
    report = read_wfcommons_report(d, two_sites)
    assert [j.id for j in report.workload.jobs] == ["makeflow_blast_small"]
    assert report.skipped == {"execution": ("b-spec-only.json",),
                              "runtime": ("c-unmeasured.json", "d-null.json", "e-flat.json")}
    with caplog.at_level(logging.WARNING):
        read_wfcommons(d, two_sites)
    note = caplog.records[-1].getMessage()
    assert note.startswith(f"{d}: skipped 4 workflows that cannot be replayed whole")
    assert "3 with a task without a recorded runtime (c-unmeasured.json, d-null.json, " \
           "e-flat.json)" in note
    assert skipped_note(read_wfcommons_report(write(tmp_path, SPEC), two_sites)) is None


def test_a_folder_spaces_arrivals_and_keeps_ids_distinct(tmp_path, two_sites):
    d = tmp_path / "wfs"
    d.mkdir()
    write(d, SPEC, "b.json")
    write(d, SPEC, "a.json")                                  # the same name twice
    write(d, edited(SPEC, _no_execution), "c.JSON")           # skipped, keeps its place
    write(d, FLAT, "d.json")
    (d / "notes.txt").write_text("not read")
    (d / "sub").mkdir()
    write(d / "sub", {"not": "read"}, "x.json")
    w = load_workload(str(d), two_sites, arrival_gap_s=30)
    assert w.source == str(d)
    assert [(j.id, j.arrival) for j in w.jobs] == [
        ("makeflow_blast_small", 0), ("makeflow_blast_small~2", 30),
        ("1000genome-20200401T035039Z-0", 90)]
    assert [j.arrival for j in load_workload(str(d), two_sites).jobs] == [0, 0, 0]
    check(pytest.raises(InputError, load_workload, str(d), two_sites, arrival_gap_s=-1).value,
          d, None, "arrival_gap_s", "negative")
    check(pytest.raises(InputError, load_workload, str(d), two_sites, qos_weights={}).value,
          d, None, "qos_weights", "does not apply to .json", "arrival_gap_s")
    check(pytest.raises(InputError, read_wfcommons, d, two_sites, arrival_gap_s=5e9).value,
          d, None, "arrival_gap_s", "arrive past")
    empty = tmp_path / "empty"
    empty.mkdir()
    check(pytest.raises(InputError, load_workload, str(empty), two_sites).value, empty, None,
          None, "no .json file")


def test_the_loader_takes_instances_only_among_json_files(tmp_path, two_sites):
    assert load_workload(str(write(tmp_path, SPEC)), two_sites).jobs[0].id == \
        "makeflow_blast_small"
    for other in ([1, 2], {"workflow": {}}, {"schemaVersion": "1.5"}):
        p = write(tmp_path, other, "other.json")
        check(pytest.raises(InputError, load_workload, str(p), two_sites).value, p, None, None,
              "not a WfCommons instance", ".jsonl jobs file", ".swf", "batch_task.csv")
    check(pytest.raises(InputError, load_workload, str(tmp_path / "none.json"),
                        two_sites).value, tmp_path / "none.json", None, None, "no such file")


@pytest.mark.parametrize("edit, field, words", [
    (lambda v: v["workflow"]["specification"]["tasks"][1]["parents"].__setitem__(0, "nope"),
     "workflow.specification.tasks[1].parents[0]", ["'nope' is not a task of workflow"]),
    (lambda v: v["workflow"]["specification"]["tasks"][3]["children"].append("gone"),
     "workflow.specification.tasks[3].children[1]", ["'gone' is not a task"]),
    (lambda v: v["workflow"]["specification"]["tasks"][4]["parents"].append("final_5"),
     "workflow.specification.tasks[4].parents[0]", ["the task itself"]),
    (lambda v: v["workflow"]["specification"]["tasks"][2].update(id="blastall_00000002"),
     "workflow.specification.tasks[2].id", ["also workflow.specification.tasks[1]"]),
    (lambda v: v["workflow"]["specification"]["tasks"][0].pop("id"),
     "workflow.specification.tasks[0].id", ["required key 'id' is missing"]),
    (lambda v: v["workflow"]["specification"]["tasks"][0].update(id="a/b"),
     "workflow.specification.tasks[0].id", ["contains '/'"]),
    (lambda v: v["workflow"]["specification"]["tasks"][0].update(parents="x"),
     "workflow.specification.tasks[0].parents", ["found 'x'", "list of strings"]),
    (lambda v: v["workflow"]["specification"]["tasks"][1]["parents"].__setitem__(0, 7),
     "workflow.specification.tasks[1].parents[0]", ["found 7", "a string"]),
    (lambda v: v["workflow"]["specification"]["tasks"][0]["inputFiles"].append("nofile"),
     "workflow.specification.tasks[0].inputFiles[2]", ["'nofile' is not in"]),
    (lambda v: v["workflow"]["specification"]["files"][0].update(sizeInBytes=-1),
     "workflow.specification.files[0].sizeInBytes", ["negative"]),
    (lambda v: v["workflow"]["specification"]["files"].append({"id": "nt", "sizeInBytes": 1}),
     "workflow.specification.files[7].id", ["'nt' is listed twice"]),
    (lambda v: v["workflow"]["specification"]["files"][3].update(sizeInBytes=1e15),
     "workflow.specification.tasks[1].inputFiles", ["MB in all", "1,000,000,000 MB"]),
    (lambda v: v["workflow"]["specification"].update(tasks=[]),
     "workflow.specification.tasks", ["an empty list"]),
    (lambda v: v["workflow"].pop("specification"),
     "workflow.specification", ["required key"]),
    (lambda v: v["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds=-3),
     "workflow.execution.tasks[0].runtimeInSeconds", ["negative", "seconds"]),
    (lambda v: v["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds=math.nan),
     "workflow.execution.tasks[0].runtimeInSeconds", ["NaN"]),
    (lambda v: v["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds=2e9),
     "workflow.execution.tasks[0].runtimeInSeconds", ["<= 1,000,000,000"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(coreCount="2"),
     "workflow.execution.tasks[1].coreCount", ["found '2'", "cores"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(coreCount=1e6),
     "workflow.execution.tasks[1].coreCount", ["<= 100,000"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(memoryInBytes=2 ** 45),
     "workflow.execution.tasks[1].memoryInBytes", ["bytes"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(id="ghost"),
     "workflow.execution.tasks[1].id", ["'ghost' is not in workflow.specification.tasks"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(id="split_fasta_00000001"),
     "workflow.execution.tasks[1].id", ["second entry"]),
    (lambda v: v["workflow"]["execution"].pop("tasks"),
     "workflow.execution.tasks", ["required key"]),
    (lambda v: v.update(schemaVersion="2.0"), "schemaVersion", ["'2.0'", "1.0, 1.1"]),
    (lambda v: v.update(schemaVersion=1.5), "schemaVersion", ["found 1.5", "as a string"]),
    (lambda v: v.pop("name"), "name", ["required key 'name'"]),
    (lambda v: v.update(name=".."), "name", ["no job id", "folder"]),
    (lambda v: v.update(workflow=[]), "workflow", ["found a list", "JSON object"]),
])
def test_malformed_1_5_instances_name_the_json_path(tmp_path, two_sites, edit, field, words):
    p = write(tmp_path, edited(SPEC, edit))
    with pytest.raises(InputError) as e:
        read_wfcommons(p, two_sites)
    check(e.value, p, None, field, *words)


@pytest.mark.parametrize("edit, field, words", [
    (lambda v: v["workflow"].pop("jobs"), "workflow.tasks", ["workflow.jobs before 1.3"]),
    (lambda v: v["workflow"]["jobs"][2]["parents"].__setitem__(0, "individuals_ID9"),
     "workflow.jobs[2].parents[0]", ["'individuals_ID9' is not a task", "the name of"]),
    (lambda v: v["workflow"]["jobs"][1].update(name="individuals_ID0000001"),
     "workflow.jobs[1].name", ["also workflow.jobs[0]"]),
    (lambda v: v["workflow"]["jobs"][0]["files"][0].update(link=3),
     "workflow.jobs[0].files[0].link", ["found 3", "input or output"]),
    (lambda v: v["workflow"]["jobs"][0]["files"][0].update(size="big"),
     "workflow.jobs[0].files[0].size", ["found 'big'", "bytes"]),
    (lambda v: v["workflow"]["jobs"][0].update(memory=-1),
     "workflow.jobs[0].memory", ["negative", "KB"]),
    (lambda v: v["workflow"]["jobs"][0].update(cores=0),
     "workflow.jobs[0].cores", [">= 0.001"]),
    (lambda v: v["workflow"]["jobs"][0].update(runtime=True),
     "workflow.jobs[0].runtime", ["found true"]),
])
def test_malformed_flat_instances_name_the_json_path(tmp_path, two_sites, edit, field, words):
    p = write(tmp_path, edited(FLAT, edit))
    with pytest.raises(InputError) as e:
        read_wfcommons(p, two_sites)
    check(e.value, p, None, field, *words)


def test_what_is_not_json_names_line_and_column(tmp_path, two_sites, monkeypatch):
    p = write(tmp_path, '{\n  "name": "x",\n  "schemaVersion": "1.5",\n  "workflow": {,}\n}')
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, 4, None,
          "not valid JSON at column 16")
    p = write(tmp_path, '{"name": "x", "name": "y", "schemaVersion": "1.5", "workflow": {}}')
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, None, None,
          "key 'name' appears twice")
    p = tmp_path / "bytes.json"
    p.write_bytes(b'{"name": "\xff"}')
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, 1, None,
          "not UTF-8")
    p = write(tmp_path, "[" * 100_000 + "]" * 100_000)
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, None, None,
          "not valid JSON (RecursionError")
    p = write(tmp_path, "")
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, 1, None,
          "not valid JSON")
    monkeypatch.setattr(wfcommons, "MAX_FILE_BYTES", 1000)
    p = write(tmp_path, SPEC)
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, None, None,
          "bytes, over the limit", "at most 1,000 bytes")


@pytest.mark.parametrize("edit", [
    lambda v: v["workflow"]["specification"]["tasks"][0]["parents"].append("cat_00000004"),
    lambda v: v["workflow"]["specification"]["tasks"][4]["children"].append("blastall_00000003"),
])
def test_a_cycle_is_an_error_naming_it(tmp_path, two_sites, edit):
    p = write(tmp_path, edited(SPEC, edit))
    e = pytest.raises(InputError, read_wfcommons, p, two_sites).value
    assert e.field.startswith("workflow.specification.tasks[") and e.field.endswith("].parents")
    assert "tasks wait for each other in a cycle" in e.problem
    no_exec = write(tmp_path, edited(edited(SPEC, edit), _no_execution), "spec-only.json")
    with pytest.raises(InputError, match="cycle"):     # refused, not merely skipped
        read_wfcommons(no_exec, two_sites)


def _chain(n: int) -> dict:
    ids = [f"task_{k:08d}" for k in range(n)]
    tasks = [_spec(t, ids[k - 1:k], ids[k + 1:k + 2]) for k, t in enumerate(ids)]
    return {"name": "chain", "schemaVersion": "1.5", "workflow": {
        "specification": {"tasks": tasks[::-1]},                # children before parents
        "execution": {"makespanInSeconds": n, "executedAt": "x",
                      "tasks": [{"id": t, "runtimeInSeconds": 1} for t in ids]}}}


def test_a_chain_of_ten_thousand_tasks_reads_without_recursion(tmp_path, two_sites):
    w = read_wfcommons(write(tmp_path, _chain(10_000)), two_sites)
    order = topological_order(w.jobs[0])
    assert len(order) == 10_000 and order[-1].id == "task_00009999"
    assert w.jobs[0].critical_path() == 10_000


def test_the_simulator_runs_the_dags_in_dependency_order(tmp_path, two_sites):
    d = tmp_path / "wfs"
    d.mkdir()
    write(d, SPEC, "a.json")
    write(d, FLAT, "b.json")
    w = read_wfcommons(d, two_sites, arrival_gap_s=5)
    r = run_one(two_sites, w, "sjf")
    assert r.metrics["jobs_completed"] == 2
    spans: dict[tuple[str, str], tuple[float, float]] = {}    # first start, last end
    for a in r.attempts:
        key = (a.task.job.job.id, a.task.task.id)
        first, last = spans.get(key, (math.inf, 0.0))
        spans[key] = (min(first, a.start), max(last, a.end))
    assert len(spans) == w.task_count == 9
    waits = [(spans[j.id, t.id][0], spans[j.id, p][1]) for j in w.jobs for t in j.tasks
             for p in t.after]
    assert len(waits) == 8 and all(start >= end for start, end in waits)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10 ** 12) | st.floats()
    | st.sampled_from(["1.5", "1.0", "x", "", "a/b", "split_00000001", "input", ".."]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(
        ["name", "id", "schemaVersion", "workflow", "specification", "execution", "tasks",
         "jobs", "files", "parents", "children", "inputFiles", "runtimeInSeconds", "runtime",
         "coreCount", "cores", "memoryInBytes", "memory", "sizeInBytes", "size", "link"]),
        inner, max_size=5), max_leaves=30)
_SET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_C = cluster(site("a", node("a", "n1", 8, mem=1024)))


def _read_only_input_errors(value) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "wf.json"
        p.write_text(json.dumps(value))
        try:
            w = read_wfcommons(p, _C)
        except InputError as e:
            assert e.path == str(p)
        else:
            valid_workload(w, _C)
            for j in w.jobs:
                topological_order(j)


@_SET
@given(value=_JSON)
def test_any_json_value_loads_or_raises_input_error(value):
    _read_only_input_errors(value)


def _paths(v, at=()):
    yield at
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        yield from _paths(x, at + (k,))


_BASES = {"spec": SPEC, "flat": FLAT}
_SPOTS = [(name, p) for name, base in _BASES.items() for p in _paths(base) if p]


@_SET
@given(spot=st.sampled_from(_SPOTS), value=_JSON)
def test_any_value_anywhere_in_a_real_instance_loads_or_raises_input_error(spot, value):
    name, at = spot
    target = copy.deepcopy(_BASES[name])
    holder = target
    for k in at[:-1]:
        holder = holder[k]
    holder[at[-1]] = value
    _read_only_input_errors(target)


def test_agora_up_configs_take_an_instance_or_a_folder_of_them(tmp_path):
    from agora.deploy.up_config import UpConfigError, load_up_config

    write(tmp_path, SPEC)
    (tmp_path / "wfs").mkdir()
    for spec, path in (("wf.json", tmp_path / "wf.json"), ("wfs", tmp_path / "wfs")):
        cfg = tmp_path / "up.yaml"
        cfg.write_text(f"workload: {spec}\n")
        assert load_up_config(cfg).workload == str(path)
    cfg.write_text("workload: gone.json\n")
    check(pytest.raises(UpConfigError, load_up_config, cfg).value, cfg, 1, "workload",
          "gone.json is not a file")
