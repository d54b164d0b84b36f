"""The older Alibaba cluster-trace-v2017 batch_task.csv, read by the same reader
(agents/workloads/alibaba_dag.py): 8 columns, no DAG, plan_mem a fraction of the largest
machine, its own header (by the schema's long names) or none, negative times for tasks made
before its window (their jobs skipped). Rows written here in its format (no ../shared)."""

from __future__ import annotations

import pytest

from agora.agents.domain import MILLI
from agora.agents.workloads.alibaba_dag import read_batch_tasks_report
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_workload
from tests.errorcheck import check
from tests.simkit import cluster, node, site

HEADER = ("task_create_time, task_end_time, job_id, task_id,number_of_instances, status, "
          "number_of_cpus_requested_per_instance_in_the_task,"
          "normalized_memory_requested_per_instance_in_the_task\n")
ROWS = """\
7000,7100,30,301,12,Terminated,50,0.25
7010,7300,30,302,1,Terminated,100,0.5
8000,8050,31,310,3,Waiting,,
-60,900,32,320,2,Terminated,50,0.1
9000,9400,33,330,7,Terminated,200,1.0
"""


@pytest.fixture
def one_site():
    return cluster(site("a", node("a", "n1", 64, mem=65536), node("a", "n2", 32, mem=131072)))


@pytest.mark.parametrize("header", [HEADER, ""])
def test_v2017_rows_become_independent_tasks_scaled_to_the_largest_machine(
        tmp_path, one_site, header):
    p = tmp_path / "batch_task.csv"
    p.write_text(header + ROWS)
    rep = read_batch_tasks_report(p, one_site)
    jobs = {j.id: j for j in rep.workload.jobs}
    assert sorted(jobs) == ["30", "33"]
    a, b = jobs["30"].tasks
    assert (a.id, a.instances, a.duration, a.after) == ("301", 12, 100.0, ())
    assert (b.id, b.instances, b.duration, b.after) == ("302", 1, 290.0, ())
    assert a.demand.cpu == MILLI // 2 and b.demand.cpu == MILLI          # 100 is one core
    assert a.demand.mem == 131072 // 4 and b.demand.mem == 131072 // 2   # a fraction of 1
    assert jobs["33"].tasks[0].demand.mem == 131072 and jobs["30"].arrival == 7000
    assert rep.skipped == {"status": ("31",), "times": ("32",)}
    assert load_workload(str(p), one_site).jobs == rep.workload.jobs     # the loader knows it


@pytest.mark.parametrize("row,line,field,words", [
    ("7000,7100,30,301,twelve,Terminated,50,0.25", 2, "number_of_instances", ("'twelve'",)),
    ("7000,7100,30,301,12,Terminated,50,1.5", 2, "plan_mem", ("fraction",)),
    ("7000,x,30,301,12,Terminated,50,0.25", 2, "task_end_time", ("'x'",)),
    ("7000,7100,30,a/b,12,Terminated,50,0.25", 2, "task_id", ("'a/b'",)),
])
def test_a_bad_v2017_row_is_named_by_its_own_column(tmp_path, one_site, row, line, field,
                                                    words):
    p = tmp_path / "batch_task.csv"
    p.write_text("7000,7100,29,290,1,Terminated,50,0.25\n" + row + "\n")
    with pytest.raises(InputError) as e:
        read_batch_tasks_report(p, one_site)
    check(e.value, p, line, field, *words)


def test_a_bad_first_row_is_reported_not_skipped_as_a_header(tmp_path, one_site):
    """A header names every column; a first line with numbers where v2017 has them is a row,
    and a bad one is named (it was skipped as a header, silently losing a job: a probe)."""
    p = tmp_path / "batch_task.csv"
    p.write_text("abc,200,1,1,2,Terminated,0.5,0.1\n150,300,2,1,1,Terminated,1,0.2\n")
    with pytest.raises(InputError) as e:
        read_batch_tasks_report(p, one_site)
    check(e.value, p, 1, "task_create_time", "'abc'")
