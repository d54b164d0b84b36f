"""Alibaba node and pod lists: the name rules and bounds of agents/limits.py (F7), and a
property test over arbitrary numbers (and names) in every column."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import MILLI, Cluster, Node, Site, Workload
from agora.agents.limits import (MAX_CORES, MAX_GPUS, MAX_MEM_MIB, MAX_SECONDS, MAX_TIME,
                                 id_problem, site_name_problem)
from agora.agents.workloads.alibaba import (NODE_HEADER, POD_HEADER, read_alibaba_nodes,
                                            read_alibaba_pod_demands, read_alibaba_pods)
from agora.agents.workloads.errors import InputError
from tests.errorcheck import check

CLUSTER = Cluster(sites=(Site(name="s", nodes=(Node(name="s/n", site="s", cpu=8000, mem=8192,
                                                    gpus=2, gpu_model="V100"),)),))
MAX_MILLI = int(MAX_CORES * MILLI)


def csv_text(header: tuple[str, ...], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def node_row(sn: str = "n1", cpu: str = "32000", mem: str = "262144", gpu: str = "0",
             model: str = "") -> list[str]:
    return [sn, cpu, mem, gpu, model]


def pod_row(name: str = "p1", cpu: str = "1000", mem: str = "1024", num_gpu: str = "0",
            gpu_milli: str = "0", spec: str = "", qos: str = "LS", phase: str = "Running",
            created: str = "0", deleted: str = "100", scheduled: str = "5") -> list[str]:
    return [name, cpu, mem, num_gpu, gpu_milli, spec, qos, phase, created, deleted, scheduled]


def nodes_file(tmp_path: Path, *rows: list[str]) -> Path:
    p = tmp_path / "nodes.csv"
    p.write_text(csv_text(NODE_HEADER, list(rows)), encoding="utf-8")
    return p


def pods_file(tmp_path: Path, *rows: list[str]) -> Path:
    p = tmp_path / "pods.csv"
    p.write_text(csv_text(POD_HEADER, list(rows)), encoding="utf-8")
    return p


def node_fails(p: Path) -> InputError:
    with pytest.raises(InputError) as ei:
        read_alibaba_nodes(p, 1)
    return ei.value


def pod_fails(p: Path) -> InputError:
    with pytest.raises(InputError) as ei:
        read_alibaba_pods(p, CLUSTER)
    return ei.value


# ----------------------------------------------------------------------------- node names

@pytest.mark.parametrize("sn, words", [
    ("n 1", ["'n 1'"]), ("n\x011", ["'n\\x011'"]), ("ñode", ["'ñode'"]), ("a/b", ["'a/b'"]),
    ("x" * 300, ["300 characters"]), ("", ["''"]), ("-n", ["'-n'"]),
])
def test_node_serial_follows_the_node_name_rule(tmp_path, sn, words):
    p = nodes_file(tmp_path, node_row(), node_row(sn=sn))
    check(node_fails(p), p, 3, "sn", *words, "1-64 letters, digits")


def test_node_serial_at_64_characters_accepted(tmp_path):
    p = nodes_file(tmp_path, node_row(sn="n" * 64))
    (node,) = read_alibaba_nodes(p, 1).nodes
    assert node.name == "site-0/" + "n" * 64


# ----------------------------------------------------------------------------- node sizes

@pytest.mark.parametrize("col, value, words", [
    ("cpu", "999999999999999999", ["cpu_milli", "<= 100,000,000"]),
    ("cpu", str(MAX_MILLI + 1), ["cpu_milli", "<= 100,000,000"]),
    ("mem", str(MAX_MEM_MIB + 1), ["memory_mib", "<= 16,777,216"]),
    ("gpu", "99999", ["gpu", "<= 1,024"]),
    ("gpu", str(MAX_GPUS + 1), ["gpu", "<= 1,024"]),
])
def test_node_sizes_past_bounds_refused(tmp_path, col, value, words):
    row = node_row(**{col: value})
    if col == "gpu":
        row[4] = "V100"
    p = nodes_file(tmp_path, row)
    check(node_fails(p), p, 2, words[0], f"found {value}", *words[1:])


def test_node_sizes_at_bounds_accepted(tmp_path):
    p = nodes_file(tmp_path, node_row(cpu=str(MAX_MILLI), mem=str(MAX_MEM_MIB),
                                      gpu=str(MAX_GPUS), model="V100"))
    (n,) = read_alibaba_nodes(p, 1).nodes
    assert (n.cpu, n.mem, n.gpus) == (MAX_MILLI, MAX_MEM_MIB, MAX_GPUS)


# ----------------------------------------------------------------------------- pod names

@pytest.mark.parametrize("name, words", [
    ("a/b", ["contains '/'"]), ("a b", ["white space"]), ("a\x01b", ["control"]),
    ("x" * 300, ["300 characters"]),
])
def test_pod_name_follows_the_id_rule(tmp_path, name, words):
    p = pods_file(tmp_path, pod_row(), pod_row(name=name))
    check(pod_fails(p), p, 3, "name", *words, "printable characters")
    with pytest.raises(InputError) as ei:
        read_alibaba_pod_demands(p)
    check(ei.value, p, 3, "name", *words)


def test_pod_name_at_128_characters_accepted(tmp_path):
    p = pods_file(tmp_path, pod_row(name="p" * 128))
    assert read_alibaba_pods(p, CLUSTER).jobs[0].id == "p" * 128


# ----------------------------------------------------------------------------- pod sizes, times

@pytest.mark.parametrize("over, col, words", [
    ({"cpu": "999999999999999999"}, "cpu_milli", ["<= 100,000,000"]),
    ({"cpu": str(MAX_MILLI + 1)}, "cpu_milli", ["<= 100,000,000"]),
    ({"mem": str(MAX_MEM_MIB + 1)}, "memory_mib", ["<= 16,777,216"]),
    ({"num_gpu": "2000", "gpu_milli": "1000"}, "num_gpu", ["found 2000", "<= 1,024"]),
    ({"created": "1e300", "scheduled": ""}, "creation_time", ["'1e300'", "10,000,000,000"]),
    ({"deleted": "1e300"}, "deletion_time", ["'1e300'", "10,000,000,000"]),
    ({"deleted": "1e15"}, "deletion_time", ["'1e15'", "10,000,000,000"]),
    ({"scheduled": "1e11"}, "scheduled_time", ["'1e11'", "10,000,000,000"]),
    ({"created": "0", "scheduled": "0", "deleted": "2000000000"}, "deletion_time",
     ["2e+09 s", "duration <= 1,000,000,000"]),
    ({"created": "0", "scheduled": "", "deleted": str(int(MAX_SECONDS) + 1)}, "deletion_time",
     ["creation_time", "duration <= 1,000,000,000"]),
])
def test_pod_values_past_bounds_refused(tmp_path, over, col, words):
    p = pods_file(tmp_path, pod_row(**over))
    check(pod_fails(p), p, 2, col, *words)


def test_pod_values_at_bounds_accepted(tmp_path):
    p = pods_file(tmp_path, pod_row(cpu=str(MAX_MILLI), mem=str(MAX_MEM_MIB),
                                    num_gpu=str(MAX_GPUS), gpu_milli="1000",
                                    created=str(int(MAX_TIME) - int(MAX_SECONDS)),
                                    scheduled="", deleted=str(int(MAX_TIME))))
    (job,) = read_alibaba_pods(p, CLUSTER).jobs
    d = job.tasks[0].demand
    assert (d.cpu, d.mem, d.gpu) == (MAX_MILLI, MAX_MEM_MIB, MAX_GPUS * MILLI)
    assert job.tasks[0].duration == MAX_SECONDS and job.arrival == MAX_TIME - MAX_SECONDS


# ----------------------------------------------------------------------------- property

EDGES = ["-1", "0", "1", "5", "460", "1000", "1024", "1025", str(MAX_MILLI), str(MAX_MILLI + 1),
         str(MAX_MEM_MIB), str(MAX_MEM_MIB + 1), str(int(MAX_SECONDS)),
         str(int(MAX_SECONDS) + 1), str(int(MAX_TIME)), str(int(MAX_TIME) + 1),
         "999999999999999999", "1e300", "1e15", ""]
NUMBER = st.one_of(
    st.sampled_from(EDGES),
    st.integers(min_value=-5, max_value=5000).map(str),
    st.integers(min_value=-10 ** 20, max_value=10 ** 20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=0, max_value=2e10).map(repr),
)
# names: any text a UTF-8 CSV line can hold (no lone surrogates; no line breaks: a quoted one
# would span lines)
NAME = st.one_of(st.sampled_from(["p", "n-1", "a/b", "a b", "x" * 129, "x" * 65, "."]),
                 st.text(st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85"
                                                            "\u2028\u2029"), max_size=140))
SET = settings(max_examples=300, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def pods_within_bounds(w: Workload, rows: int) -> None:
    assert len(w.jobs) == rows  # nothing dropped
    for j in w.jobs:
        assert id_problem(j.id) is None and j.origin in CLUSTER.site_names
        assert math.isfinite(j.arrival) and 0 <= j.arrival <= MAX_TIME
        (t,) = j.tasks
        d = t.demand
        assert 0 <= t.duration <= MAX_SECONDS and t.instances == 1
        assert 0 <= d.cpu <= MAX_MILLI and 0 <= d.mem <= MAX_MEM_MIB
        assert 0 <= d.gpu <= MAX_GPUS * MILLI and (d.gpu < MILLI or d.gpu % MILLI == 0)


@SET
@given(rows=st.lists(st.tuples(NAME, st.lists(NUMBER, min_size=4, max_size=4),
                               st.lists(NUMBER, min_size=3, max_size=3)),
                     min_size=1, max_size=3))
def test_pods_any_numbers_give_bounded_jobs_or_input_error(tmp_path, rows):
    data = [[name, *sizes, "", "LS", "Running", *times] for name, sizes, times in rows]
    p = pods_file(tmp_path, *data)
    try:
        w = read_alibaba_pods(p, CLUSTER)
    except InputError as e:
        assert e.path == str(p) and e.line is not None and 2 <= e.line <= len(rows) + 1
        assert e.field in POD_HEADER and f"field '{e.field}'" in str(e)
    else:
        pods_within_bounds(w, len(rows))
    try:
        ds = read_alibaba_pod_demands(p)
    except InputError as e:
        assert e.path == str(p) and e.field in POD_HEADER
    else:
        assert len(ds) == len(rows)
        for name, d in ds:
            assert id_problem(name) is None
            assert 0 <= d.cpu <= MAX_MILLI and 0 <= d.mem <= MAX_MEM_MIB
            assert 0 <= d.gpu <= MAX_GPUS * MILLI


@SET
@given(col=st.sampled_from(["cpu", "mem", "num_gpu", "gpu_milli", "created", "deleted",
                            "scheduled"]), value=NUMBER)
def test_pods_one_column_any_number(tmp_path, col, value):
    """One valid row with one column replaced: a bounded job or an InputError on that row."""
    p = pods_file(tmp_path, pod_row(**{col: value}))
    try:
        w = read_alibaba_pods(p, CLUSTER)
    except InputError as e:
        assert e.line == 2 and e.field in POD_HEADER and f"{p}:2: field '{e.field}'" in str(e)
    else:
        pods_within_bounds(w, 1)


@SET
@given(rows=st.lists(st.tuples(NAME, st.lists(NUMBER, min_size=3, max_size=3),
                               st.sampled_from(["", "V100", "A100"])),
                     min_size=1, max_size=3))
def test_nodes_any_numbers_give_bounded_nodes_or_input_error(tmp_path, rows):
    p = nodes_file(tmp_path, *[[sn, *sizes, model] for sn, sizes, model in rows])
    try:
        c = read_alibaba_nodes(p, 1)
    except InputError as e:
        assert e.path == str(p) and (e.line is None or 2 <= e.line <= len(rows) + 1)
        assert e.field in NODE_HEADER + ("sites",) or e.field is None
        return
    assert len(c.nodes) == len(rows)
    for n in c.nodes:
        site, _, sn = n.name.partition("/")
        assert site == n.site and site_name_problem(sn) is None
        assert 1 <= n.cpu <= MAX_MILLI and 1 <= n.mem <= MAX_MEM_MIB
        assert 0 <= n.gpus <= MAX_GPUS and (n.gpus > 0) == (n.gpu_model is not None)


@pytest.mark.parametrize("header", [b"na\rme,cpu_milli,memory_mib,num_gpu,gpu_milli\n",
                                    b"name,cpu_milli,memory_mib,num_gpu,gpu_mi\rlli\n"])
def test_a_pod_demand_list_whose_header_is_not_csv_names_the_line(tmp_path, header):
    """A carriage return inside the header made csv raise its own error before the reader
    looked at the file (hypothesis, CI 2026-12-01): now the file, line 1 and the expected
    columns of the variant are named."""
    from agora.agents.workloads.alibaba import read_alibaba_pod_demands
    p = tmp_path / "pods.csv"
    p.write_bytes(header + b"pod1,1000,100,0,0\n")
    with pytest.raises(InputError) as e:
        read_alibaba_pod_demands(p)
    assert (e.value.path, e.value.line) == (str(p), 1)
    assert "not valid CSV" in str(e.value) and "5 comma-separated columns" in str(e.value)
