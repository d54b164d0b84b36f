"""SWF reader: the bounds of agents/limits.py (F2), negative values other than -1 and the
skipped-jobs note (F6), and a property test over arbitrary numbers in every field."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import MILLI, Cluster, Node, Site, Workload
from agora.agents.limits import (MAX_CORES, MAX_GPUS, MAX_INSTANCES, MAX_MEM_MIB, MAX_SECONDS,
                                 MAX_TIME, id_problem)
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.swf import FIELDS, MAX_JOB_NUMBER, read_swf, read_swf_report
from tests.errorcheck import check

CLUSTER = Cluster(sites=(Site(name="a", nodes=(Node(name="a/n", site="a", cpu=4000, mem=4096),)),
                         Site(name="b", nodes=(Node(name="b/n", site="b", cpu=8000, mem=8192),))))
HEADER = "; tiny test trace\n"


def swf_line(num: int = 1, **over: str | int | float) -> str:
    """One SWF line: job ``num``, submitted at 0, running 100 s on 4 processors, with the
    named fields replaced."""
    vals: dict[str, str | int | float] = {f: -1 for f in FIELDS}
    vals.update(job_number=num, submit_time=0, wait_time=0, run_time=100,
                allocated_processors=4, requested_processors=4, status=1)
    vals.update(over)
    return " ".join(str(vals[f]) for f in FIELDS)


def write(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "x.swf"
    p.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return p


def fails(p: Path, **kw) -> InputError:
    with pytest.raises(InputError) as ei:
        read_swf(p, CLUSTER, **kw)
    return ei.value


# ----------------------------------------------------------------------------- F2: bounds

@pytest.mark.parametrize("field", ["submit_time", "run_time", "allocated_processors"])
def test_a_number_that_is_not_finite_is_shown_short_and_not_offered_minus_one(tmp_path,
                                                                              field):
    # a probe: a 5,000-digit number echoed whole (5,130 characters), and submit_time's
    # "-1 when unknown" here contradicted its own check, which refuses -1
    for tok in ("9" * 5000, "nan"):
        e = fails(write(tmp_path, swf_line(**{field: tok})))
        assert e.field == field and len(str(e)) < 300, str(e)[:400]
        assert "when unknown" not in str(e), str(e)


def test_processors_past_max_instances_refused(tmp_path):
    p = write(tmp_path, swf_line(allocated_processors=2_000_000))
    check(fails(p), p, 2, "allocated_processors", "found 2000000", "<= 1,000,000")


def test_tera_processors_refused_before_anything_is_built(tmp_path):
    p = write(tmp_path, swf_line(allocated_processors=10 ** 12))
    check(fails(p), p, 2, "allocated_processors", "found 1000000000000", "<= 1,000,000")


def test_processors_at_the_bound_accepted(tmp_path):
    p = write(tmp_path, swf_line(allocated_processors=MAX_INSTANCES))
    (job,) = read_swf(p, CLUSTER).jobs
    assert job.tasks[0].instances == MAX_INSTANCES


def test_requested_processors_bound_when_allocated_unknown(tmp_path):
    p = write(tmp_path, swf_line(allocated_processors=-1, requested_processors=MAX_INSTANCES + 1))
    check(fails(p), p, 2, "requested_processors", "found 1000001", "<= 1,000,000")


def test_rigid_processors_bounded_by_cores(tmp_path):
    p = write(tmp_path, swf_line(allocated_processors=int(MAX_CORES) + 1, used_memory=0))
    check(fails(p, rigid=True), p, 2, "allocated_processors", "found 100001", "<= 100,000",
          "rigid")
    p = write(tmp_path, swf_line(allocated_processors=int(MAX_CORES), used_memory=0))
    (job,) = read_swf(p, CLUSTER, rigid=True).jobs
    assert job.tasks[0].demand.cpu == MAX_CORES * MILLI and job.tasks[0].instances == 1


def test_rigid_memory_bounded(tmp_path):
    # 20,000 processors x the default 1024 MiB each: past 16 TiB on one instance
    p = write(tmp_path, swf_line(allocated_processors=20_000))
    check(fails(p, rigid=True), p, 2, "allocated_processors", "mem_per_proc_mib",
          "16,777,216 MiB")
    p = write(tmp_path, swf_line(allocated_processors=20_000, used_memory=1024 * 1024))
    check(fails(p, rigid=True), p, 2, "used_memory", "16,777,216 MiB")
    # the same job as a bag of instances is within the bounds
    assert read_swf(p, CLUSTER).jobs[0].tasks[0].demand.mem == 1024


def test_times_past_bounds_refused(tmp_path):
    p = write(tmp_path, swf_line(submit_time="1e300"))
    check(fails(p), p, 2, "submit_time", "found 1e300", "<= 10,000,000,000")
    p = write(tmp_path, swf_line(submit_time=MAX_TIME * 1.000001))
    check(fails(p), p, 2, "submit_time", "<= 10,000,000,000")
    p = write(tmp_path, swf_line(run_time="1e300"))
    check(fails(p), p, 2, "run_time", "found 1e300", "<= 1,000,000,000")
    p = write(tmp_path, swf_line(run_time=int(MAX_SECONDS) + 1))
    check(fails(p), p, 2, "run_time", "<= 1,000,000,000")


def test_times_at_bounds_accepted(tmp_path):
    p = write(tmp_path, swf_line(submit_time=int(MAX_TIME), run_time=int(MAX_SECONDS)))
    (job,) = read_swf(p, CLUSTER).jobs
    assert job.arrival == MAX_TIME and job.tasks[0].duration == MAX_SECONDS


def test_memory_past_bound_refused(tmp_path):
    p = write(tmp_path, swf_line(used_memory="1e15"))
    check(fails(p), p, 2, "used_memory", "found 1e15", "16,777,216 MiB")
    p = write(tmp_path, swf_line(used_memory=MAX_MEM_MIB * 1024))
    assert read_swf(p, CLUSTER).jobs[0].tasks[0].demand.mem == MAX_MEM_MIB


def test_mem_per_proc_option_bounded(tmp_path):
    p = write(tmp_path, swf_line())
    check(fails(p, mem_per_proc_mib=MAX_MEM_MIB + 1), p, None, "mem_per_proc_mib",
          "16,777,216")


def test_job_number_bounded(tmp_path):
    p = write(tmp_path, swf_line(num=10 ** 300))
    check(fails(p), p, 2, "job_number", "9,007,199,254,740,992")
    p = write(tmp_path, swf_line(num=MAX_JOB_NUMBER))
    assert read_swf(p, CLUSTER).jobs[0].id == str(MAX_JOB_NUMBER)


# ----------------------------------------------------------------------------- F6: negatives, skips

@pytest.mark.parametrize("field", ["allocated_processors", "used_memory", "run_time",
                                   "submit_time"])
def test_negative_other_than_minus_one_refused(tmp_path, field):
    p = write(tmp_path, swf_line(**{field: -5}))
    check(fails(p), p, 2, field, "found -5", "negative")


def test_negative_requested_processors_refused_when_used(tmp_path):
    p = write(tmp_path, swf_line(allocated_processors=-1, requested_processors=-5))
    check(fails(p), p, 2, "requested_processors", "found -5", "negative", "-1 when unknown")


def test_minus_one_is_unknown(tmp_path):
    p = write(tmp_path, swf_line(1, allocated_processors=-1, requested_processors=3),
              swf_line(2, allocated_processors=-1, requested_processors=-1),
              swf_line(3, run_time=-1), swf_line(4, allocated_processors=0))
    r = read_swf_report(p, CLUSTER)
    assert [j.id for j in r.workload.jobs] == ["1"]
    assert r.workload.jobs[0].tasks[0].instances == 3
    assert r.skipped_jobs == (2, 3, 4) and r.skipped == 3


def test_skipped_jobs_named_in_a_warning(tmp_path, caplog):
    p = write(tmp_path, swf_line(1), swf_line(2, submit_time=5, allocated_processors=0))
    with caplog.at_level(logging.WARNING, logger="agora.agents.workloads.swf"):
        w = read_swf(p, CLUSTER)
    assert [j.id for j in w.jobs] == ["1"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (f"{p}: skipped 1 job the archive marks as not run "
                                        f"(job 2: run_time -1 or no processors)")


def test_no_warning_when_nothing_skipped(tmp_path, caplog):
    p = write(tmp_path, swf_line(1))
    with caplog.at_level(logging.INFO, logger="agora.agents.workloads.swf"):
        read_swf(p, CLUSTER)
    assert not caplog.records


def test_note_lists_first_jobs_and_counts_the_rest(tmp_path):
    p = write(tmp_path, *(swf_line(k, run_time=-1) for k in range(1, 13)))
    r = read_swf_report(p, CLUSTER)
    assert r.workload.jobs == () and r.skipped == 12
    assert r.note() == (f"{p}: skipped 12 jobs the archive marks as not run "
                        f"(jobs 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more: run_time -1 or "
                        f"no processors)")


def test_skip_warning_reaches_stderr_without_logging_setup(tmp_path):
    """The `agora` command configures no logging: the warning must still reach stderr."""
    p = write(tmp_path, swf_line(1), swf_line(2, allocated_processors=0))
    code = ("import sys\n"
            "from agora.agents.workloads.loader import load_workload\n"
            "from agora.agents.domain import Cluster, Node, Site\n"
            "c = Cluster(sites=(Site(name='a', nodes=(Node(name='a/n', site='a', cpu=1000, "
            "mem=1024),)),))\n"
            "print(len(load_workload(sys.argv[1], c).jobs))\n")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    assert f"{p}: skipped 1 job the archive marks as not run (job 2" in out.stderr


# ----------------------------------------------------------------------------- property

EDGES = [-1, 0, 1, -5, MAX_INSTANCES, MAX_INSTANCES + 1, int(MAX_CORES), int(MAX_CORES) + 1,
         int(MAX_SECONDS), int(MAX_SECONDS) + 1, int(MAX_TIME), int(MAX_TIME) + 1,
         MAX_MEM_MIB * 1024, MAX_MEM_MIB * 1024 + 1, MAX_JOB_NUMBER, MAX_JOB_NUMBER + 2,
         10 ** 12, 10 ** 300]
NUMBER = st.one_of(
    st.sampled_from(EDGES).map(str),
    st.integers(min_value=-3, max_value=3000).map(str),
    st.integers(min_value=-10 ** 20, max_value=10 ** 20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-2, max_value=2e10).map(repr),
)


def within_bounds(w: Workload, lines: int, skipped: int) -> None:
    assert len(w.jobs) + skipped == lines  # every line is a job or a skipped job
    assert [(j.arrival, j.id) for j in w.jobs] == sorted((j.arrival, j.id) for j in w.jobs)
    for j in w.jobs:
        assert id_problem(j.id) is None and j.origin in CLUSTER.site_names
        assert math.isfinite(j.arrival) and 0 <= j.arrival <= MAX_TIME
        for t in j.tasks:
            d = t.demand
            assert 0 <= t.duration <= MAX_SECONDS
            assert isinstance(t.instances, int) and 1 <= t.instances <= MAX_INSTANCES
            assert 0 < d.cpu <= MAX_CORES * MILLI and 0 <= d.mem <= MAX_MEM_MIB
            assert 0 <= d.gpu <= MAX_GPUS * MILLI


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.lists(NUMBER, min_size=len(FIELDS), max_size=len(FIELDS)),
                     min_size=1, max_size=4),
       rigid=st.booleans(), mem_per_proc=st.sampled_from([0, 1024, MAX_MEM_MIB]))
def test_any_numbers_give_bounded_jobs_or_input_error(tmp_path, rows, rigid, mem_per_proc):
    p = tmp_path / "prop.swf"
    p.write_text(HEADER + "\n".join(" ".join(r) for r in rows) + "\n", encoding="utf-8")
    try:
        r = read_swf_report(p, CLUSTER, rigid=rigid, mem_per_proc_mib=mem_per_proc)
    except InputError as e:
        assert e.path == str(p) and e.line is not None and 2 <= e.line <= len(rows) + 1
        assert e.field in FIELDS and f"field '{e.field}'" in str(e)
        return
    within_bounds(r.workload, len(rows), r.skipped)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(["submit_time", "run_time", "allocated_processors",
                              "used_memory", "job_number"]),
       value=NUMBER, rigid=st.booleans())
def test_one_field_any_number(tmp_path, field, value, rigid):
    """One otherwise valid line with one field replaced: a bounded job, a skip (only for
    the documented not-run values), or an InputError naming that very field."""
    p = tmp_path / "one.swf"
    p.write_text(HEADER + swf_line(7, **{field: value}) + "\n", encoding="utf-8")
    try:
        r = read_swf_report(p, CLUSTER, rigid=rigid)
    except InputError as e:
        check(e, p, 2, field)
        return
    within_bounds(r.workload, 1, r.skipped)
    if r.skipped:
        v = float(value)
        assert (field, v) in (("run_time", -1), ("allocated_processors", 0))
