"""The WfCommons instance reader (agents/workloads/wfcommons.py): WfFormat 1.5/1.6 and the flat
1.0-1.4 form as DAG jobs, workflows that cannot be replayed whole skipped and counted, folders
and the loader, long chains, the simulator running the DAGs, and ``agora up`` configs.
Malformed input and the properties over arbitrary JSON: test_wfcommons_errors.py; the
instances and helpers both use: wfcommons_fixtures.py."""

from __future__ import annotations

import logging
import math
import zlib

import pytest

from agora.agents.domain import MILLI, topological_order
from agora.agents.limits import MAX_NAME, id_problem
from agora.agents.sim.runner import run_one
from agora.agents.workloads import wfcommons
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_workload
from agora.agents.workloads.wfcommons import read_wfcommons, read_wfcommons_report, skipped_note
from tests.agents import wfcommons_fixtures
from tests.agents.wfcommons_fixtures import FLAT, SPEC, _no_execution, _spec, edited, write
from tests.errorcheck import check

two_sites = wfcommons_fixtures.two_sites        # the shared fixture; pytest finds it by name


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


def test_json_lines_named_json_is_told_to_be_named_jsonl(tmp_path, two_sites):
    """A probe: a jobs file (one JSON object a line) named .json was read as a WfCommons
    instance and refused with only "Extra data"."""
    p = tmp_path / "jobs.json"
    p.write_text('{"id": "j", "tasks": []}\n{"id": "k", "tasks": []}\n')
    with pytest.raises(InputError) as e:
        read_wfcommons(p, two_sites)
    check(e.value, p, 2, None, "Extra data", "name it .jsonl")


def _renamed(spec: dict, names: dict[str, str]) -> dict:
    """``spec`` with task ids renamed everywhere they appear."""
    def edit(v):
        for t in v["workflow"]["specification"]["tasks"]:
            t["id"] = names.get(t["id"], t["id"])
            for k in ("parents", "children"):
                t[k] = [names.get(x, x) for x in t.get(k, [])]
        for e in v["workflow"]["execution"]["tasks"]:
            e["id"] = names.get(e["id"], e["id"])
    return edited(spec, edit)


def test_task_ids_that_are_no_ids_are_mapped_to_distinct_ones_and_edges_follow(tmp_path,
                                                                               two_sites):
    """A probe: real Nextflow instances name files in their task ids (``...__rsem/Sacch
    aromyces_cerevisiae.R64-1-1.dna.toplevel.fa__ID0000512``) and run to 216 characters;
    the whole workflow was refused. Such an id becomes one (white space and '/' made '_',
    a long one cut and ended with 16 hex digits of its sha256), distinct from the others."""
    long = "NFCORE_SAREK:GATK4_HAPLOTYPECALLER__HG00096__" + "x" * 170
    spec = _renamed(SPEC, {"split_fasta_00000001": "MAKE_FASTA__rsem/S.cerevisiae fa",
                           "blastall_00000002": long,
                           "blastall_00000003": "MAKE_FASTA__rsem_S.cerevisiae_fa",
                           "final_5": ".."})
    job = read_wfcommons(write(tmp_path, spec), two_sites).jobs[0]
    ids = [t.id for t in job.tasks]
    assert len(set(ids)) == 5 and all(id_problem(i) is None for i in ids)
    assert ids[2] == "MAKE_FASTA__rsem_S.cerevisiae_fa"          # an id: kept as written
    assert ids[0] == "MAKE_FASTA__rsem_S.cerevisiae_fa~2"        # made, and taken
    assert len(ids[1]) == MAX_NAME and ids[1].startswith(long[:100])
    assert ids[1][-17] == "~" and ids[4] == "_.."
    t = {x.id: x for x in job.tasks}
    assert t[ids[1]].after == (ids[0],) and t[ids[2]].after == (ids[0],)
    assert t["cat_00000004"].after == (ids[1], ids[2]) and t[ids[4]].after == ("cat_00000004",)
    again = read_wfcommons(write(tmp_path, spec, "again.json"), two_sites).jobs[0]
    assert [x.id for x in again.tasks] == ids                     # the same every read


def test_a_long_cycle_is_told_in_one_short_line(tmp_path, two_sites):
    n = 5000
    tasks = [{"id": f"t{i}", "parents": [f"t{(i - 1) % n}"]} for i in range(n)]
    spec = edited(SPEC, lambda v: (
        v["workflow"]["specification"].update(tasks=tasks),
        v["workflow"]["specification"].pop("files"),
        v["workflow"]["execution"].update(tasks=[{"id": f"t{i}", "runtimeInSeconds": 1}
                                                 for i in range(n)])))
    with pytest.raises(InputError) as e:
        read_wfcommons(write(tmp_path, spec), two_sites)
    assert "5000 tasks wait for each other in a cycle" in str(e.value)
    assert len(str(e.value)) < 600


def test_two_long_names_alike_in_a_folder_get_ids_that_fit(tmp_path, two_sites):
    """A review: a name past 128 characters was cut to 128, and the second of two alike
    became 130 with its '~2': the whole folder was refused."""
    folder = tmp_path / "wfs"
    folder.mkdir()
    for k in (1, 2):
        write(folder, edited(SPEC, lambda v: v.update(name="n" * 300)), f"wf{k}.json")
    ids = [j.id for j in read_wfcommons(folder, two_sites).jobs]
    assert len(set(ids)) == 2 and all(id_problem(i) is None for i in ids)
