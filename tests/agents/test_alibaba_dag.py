"""The Alibaba v2018 batch_task.csv reader (agents/workloads/alibaba_dag.py): real DAG jobs from
task names, jobs the trace cannot replay whole skipped and counted by reason, everything else
wrong named by file, line and column. Fixtures are written here (no ../shared)."""

from __future__ import annotations

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
from agora.agents.workloads.alibaba_dag import (read_batch_tasks, read_batch_tasks_report,
                                                looks_like_batch_tasks)
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_workload
from tests.errorcheck import check
from tests.simkit import cluster, node, site

# Job-A of the trace's own documentation (trace_2018.md, 2.3), one independent-task job, and
# one job of every kind the reader must skip.
TRACE = """\
M1,10,j_1,1,Terminated,157297,157325,100,0.3
M2_1,1,j_1,1,Terminated,157329,157376,100,0.49
M3_1,4,j_1,1,Terminated,157330,157390,50,0.2
R4_2,2,j_1,1,Terminated,157380,157400,101,1.5
M5_3_4,2,j_1,1,Terminated,157401,157460,200,100
task_Nzg3ODAwNDgzMTAwNTc2NTQ2Mw==,30,j_2,12,Terminated,150000,150300,100,0.59
MergeTask,1,j_2,12,Terminated,150310,150320,100,0.1
M1,5,j_3,1,Failed,161000,161100,100,0.3
M1,5,j_4,1,Terminated,0,161100,100,0.3
M1,5,j_5,1,Terminated,161200,161100,100,0.3
M1,5,j_6,1,Terminated,162000,162100,,0.3
M1,5,j_7,1,Terminated,162000,162100,100,101
M1,5,j_8,1,Terminated,162000,162100,-1,0.3
M2_1,5,j_9,1,Terminated,163000,163100,100,0.3
M1,5,j_10,1,Terminated,163000,163100,100,0.3
R1,5,j_10,1,Terminated,163000,163100,100,0.3
M1_2,5,j_11,1,Terminated,163000,163100,100,0.3
M2_1,5,j_11,1,Terminated,163000,163100,100,0.3
M3_3,5,j_12,1,Terminated,163000,163100,100,0.3
M1,0,j_13,1,Terminated,163000,163100,100,0.3
"""


@pytest.fixture
def two_sites():
    return cluster(site("a", node("a", "n1", 64, mem=65536), node("a", "n2", 32, mem=131072)),
                   site("b", node("b", "n1", 16, mem=32768)))


def write(tmp_path: Path, text: str, name: str = "batch_task.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_the_documented_dag_and_its_values(tmp_path, two_sites):
    p = write(tmp_path, TRACE)
    report = read_batch_tasks_report(p, two_sites)
    jobs = {j.id: j for j in report.workload.jobs}
    assert list(jobs) == ["j_2", "j_1"]        # by arrival: the earliest start of its tasks
    j1 = jobs["j_1"]
    assert j1.arrival == 157297
    assert j1.origin == two_sites.site_names[zlib.crc32(b"j_1") % 2]
    t = {x.id: x for x in j1.tasks}
    assert {k: v.after for k, v in t.items()} == {
        "M1": (), "M2_1": ("M1",), "M3_1": ("M1",), "R4_2": ("M2_1",),
        "M5_3_4": ("M3_1", "R4_2")}
    assert [x.id for x in topological_order(j1)][0] == "M1"
    assert t["M1"].instances == 10 and t["M1"].duration == 28
    assert t["M3_1"].demand.cpu == MILLI // 2                  # plan_cpu 50: half a core
    assert t["R4_2"].demand.cpu == 1010                        # 101 is a value for cpu
    big = 131072                                               # the largest node's MiB
    assert t["M1"].demand.mem == math.ceil(0.3 / 100 * big)
    assert t["M5_3_4"].demand.mem == big                       # plan_mem 100: all of it
    assert all(x.after == () for x in jobs["j_2"].tasks)      # names without a DAG
    assert jobs["j_2"].tasks[0].instances == 30


def test_jobs_the_trace_cannot_replay_whole_are_skipped_and_counted(tmp_path, two_sites,
                                                                    caplog):
    p = write(tmp_path, TRACE)
    report = read_batch_tasks_report(p, two_sites)
    assert report.skipped == {"status": ("j_3",), "times": ("j_4", "j_5"),
                              "plan": ("j_6", "j_7", "j_8"), "parent": ("j_9",),
                              "number": ("j_10",), "cycle": ("j_11", "j_12"),
                              "instances": ("j_13",)}
    with caplog.at_level(logging.WARNING):
        read_batch_tasks(p, two_sites)
    note = caplog.records[-1].getMessage()
    assert note.startswith(f"{p}: skipped 11 jobs the trace cannot replay whole")
    assert "2 with a dependency cycle (j_11, j_12)" in note


def test_a_header_line_options_and_the_loader(tmp_path, two_sites):
    header = ("task_name,instance_num,job_name,task_type,status,start_time,end_time,"
              "plan_cpu,plan_mem\n")
    p = write(tmp_path, header + TRACE)
    w = load_workload(str(p), two_sites, max_jobs=1, machine_mem_mib=1000)
    assert [j.id for j in w.jobs] == ["j_2"]
    assert w.jobs[0].tasks[0].demand.mem == math.ceil(0.59 / 100 * 1000)
    assert len(load_workload(str(write(tmp_path, TRACE)), two_sites).jobs) == 2
    check(pytest.raises(InputError, load_workload, str(p), two_sites, qos_weights={}).value,
          p, None, "qos_weights", "does not apply to batch_task.csv")
    check(pytest.raises(InputError, load_workload, str(p), two_sites, max_jobs=0).value,
          p, None, "max_jobs", "whole number >= 1")
    other = write(tmp_path, "a,b,c\n1,2,3\n", "other.csv")
    check(pytest.raises(InputError, load_workload, str(other), two_sites).value, other, 1,
          None, "neither", "pod list header", "batch_task.csv")
    assert looks_like_batch_tasks(TRACE.splitlines()[0])
    assert not looks_like_batch_tasks(",,,,,,,,")


@pytest.mark.parametrize("row, field, words", [
    ("M1,1,j_x,1,Terminated,1,2,100", None, ["found 8 columns", "9 comma-separated"]),
    ("M1,x,j_x,1,Terminated,1,2,100,0.3", "instance_num", ["'x'", "whole number"]),
    ("M1,1.5,j_x,1,Terminated,1,2,100,0.3", "instance_num", ["'1.5'"]),
    ("M1,1,j_x,1,Terminated,-3,2,100,0.3", "start_time", ["negative"]),
    ("M1,1,j_x,1,Terminated,1,NaN,100,0.3", "end_time", ["'NaN'"]),
    ("M1,1,j_x,1,Terminated,1,2,-5,0.3", "plan_cpu", ["negative", "invalid marker -1"]),
    ("M1,1,j_x,1,Terminated,1,2,100,100.5", "plan_mem", ["'100.5'", "markers -1 and 101"]),
    ("M1,1,j_x,1,Terminated,1,2,1e300,0.3", "plan_cpu", ["<= 10,000,000"]),
    ("M1,1,j/1,1,Terminated,1,2,100,0.3", "job_name", ["'/'"]),
    ("M 1,1,j_x,1,Terminated,1,2,100,0.3", "task_name", ["white space"]),
])
def test_what_is_not_the_traces_doing_names_file_line_and_column(tmp_path, two_sites, row,
                                                                 field, words):
    p = write(tmp_path, TRACE.splitlines()[0] + "\n" + row + "\n")
    with pytest.raises(InputError) as e:
        read_batch_tasks(p, two_sites)
    check(e.value, p, 2, field, *words)


def test_a_task_twice_in_its_job_is_an_error(tmp_path, two_sites):
    p = write(tmp_path, TRACE + TRACE.splitlines()[2] + "\n")
    with pytest.raises(InputError) as e:
        read_batch_tasks(p, two_sites)
    check(e.value, p, 21, "task_name", "already on line 3")


def test_a_chain_of_ten_thousand_tasks_reads_without_recursion(tmp_path, two_sites):
    rows = ["M1,1,j_1,1,Terminated,10,11,100,0.1"] + [
        f"M{k}_{k - 1},1,j_1,1,Terminated,{10 + k},{11 + k},100,0.1" for k in range(2, 10_001)]
    w = read_batch_tasks(write(tmp_path, "\n".join(rows) + "\n"), two_sites)
    assert len(w.jobs[0].tasks) == 10_000
    assert [t.id for t in topological_order(w.jobs[0])][-1] == "M10000_9999"


def test_the_simulator_runs_the_dags_in_dependency_order(tmp_path, two_sites):
    w = read_batch_tasks(write(tmp_path, TRACE), two_sites)
    r = run_one(two_sites, w, "sjf")
    assert r.metrics["jobs_completed"] == 2
    ends: dict[tuple[str, str], float] = {}
    starts: dict[tuple[str, str], float] = {}
    for a in r.attempts:
        key = (a.task.job.job.id, a.task.task.id)
        ends[key] = max(ends.get(key, 0.0), a.end)
        starts[key] = min(starts.get(key, math.inf), a.start)
    for j in w.jobs:
        for t in j.tasks:
            for parent in t.after:
                assert starts[j.id, t.id] >= ends[j.id, parent]


_CELL = st.sampled_from(["M1", "R2_1", "M3_1_2", "task_x", "j_1", "j_2", "1", "0", "-1", "101",
                         "100", "0.5", "", "Terminated", "Failed", "1e3", "x", "157297"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(_CELL, min_size=7, max_size=10), max_size=8))
def test_any_rows_load_or_raise_input_error(rows):
    c = cluster(site("a", node("a", "n1", 8, mem=1024)))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "batch_task.csv"
        p.write_text("".join(",".join(r) + "\n" for r in rows))
        try:
            w = read_batch_tasks(p, c)
        except InputError as e:
            assert e.path == str(p)
        else:
            for j in w.jobs:
                topological_order(j)


def test_a_plan_value_written_nan_skips_its_job_as_an_empty_one_does(tmp_path, two_sites):
    """A probe: ``nan`` (a missing value as numpy writes it) refused the whole file where an
    empty cell skipped the job."""
    rows = ("M1,1,j_a,1,Terminated,1,2,nan,0.3\n"
            "M1,1,j_b,1,Terminated,1,2,50,NaN\n"
            "M1,1,j_c,1,Terminated,1,2,50,0.3\n")
    report = read_batch_tasks_report(write(tmp_path, rows), two_sites)
    assert report.skipped == {"plan": ("j_a", "j_b")}
    assert [j.id for j in report.workload.jobs] == ["j_c"]
