"""Native jobs reader: a cpu demand under one millicore is refused, not rounded to 0 (F17)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import Cluster, Node, Site
from agora.agents.limits import MAX_CORES
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.native import read_jobs
from tests.errorcheck import check

CLUSTER = Cluster(sites=(Site(name="a", nodes=(Node(name="a/n", site="a", cpu=4000, mem=4096),)),))


def job(cpu) -> str:
    return json.dumps({"id": "j", "arrival": 0, "origin": "a",
                       "tasks": [{"id": "t", "duration": 1, "demand": {"cpu": cpu, "mem": 1}}]})


@pytest.mark.parametrize("cpu", [0.0004, 0.0005, 0.0009, 1e-300])
def test_cpu_under_a_millicore_refused(tmp_path, cpu):
    p = tmp_path / "j.jsonl"
    p.write_text(job(cpu) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as ei:
        read_jobs(p, CLUSTER)
    check(ei.value, p, 1, "tasks[0].demand.cpu", f"found {cpu:g}", "under one millicore",
          "0, or at least 0.001 cores")


@pytest.mark.parametrize("cpu, milli", [(0, 0), (0.0, 0), (0.001, 1), (0.0015, 2), (2, 2000)])
def test_cpu_zero_or_a_millicore_accepted(tmp_path, cpu, milli):
    p = tmp_path / "j.jsonl"
    p.write_text(job(cpu) + "\n", encoding="utf-8")
    assert read_jobs(p, CLUSTER).jobs[0].tasks[0].demand.cpu == milli


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cpu=st.floats(min_value=0, max_value=MAX_CORES))
def test_a_positive_cpu_demand_never_becomes_zero(tmp_path, cpu):
    p = tmp_path / "j.jsonl"
    p.write_text(job(cpu) + "\n", encoding="utf-8")
    try:
        d = read_jobs(p, CLUSTER).jobs[0].tasks[0].demand
    except InputError as e:
        check(e, p, 1, "tasks[0].demand.cpu")
        assert 0 < cpu < 0.001
    else:
        assert (d.cpu > 0) == (cpu > 0)
