"""Property tests: whatever bytes a reader is given, it returns a valid Cluster/Workload or
raises InputError naming the file, never anything else."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Callable

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import MILLI, Cluster, Demand, Workload, run_problem, topological_order
from agora.agents.workloads.alibaba import read_alibaba_nodes, read_alibaba_pod_demands, read_alibaba_pods
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.native import read_cluster, read_jobs
from agora.agents.workloads.swf import read_swf

FIX = Path(__file__).parents[1] / "fixtures"
CLUSTER = read_cluster(FIX / "cluster_small.yaml")
SET = settings(max_examples=150, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BAD_VALUES = [float("nan"), float("inf"), -float("inf"), -1, -0.5, 0, 1.5, 10**30, 1e308, "x",
              "1", "", None, True, False, [], {}, ["V100"], ["nope"], {"cpu": 1}, "A100"]
BAD_CELLS = ["", "nan", "-5", "x", "1e400", "1.5", "inf", " 7 ", "\u0663", "1_0", '"', "0",
             "-1", "G2|", "|", "99999999999999999999999"]


# ----------------------------------------------------------------------------- invariants

def _nonneg_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _finite(x: Any, lo: float = 0.0) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) \
        and x >= lo


def valid_workload(w: Workload, cluster: Cluster) -> None:
    assert isinstance(w, Workload)
    ids = [j.id for j in w.jobs]
    assert len(set(ids)) == len(ids)
    assert [(j.arrival, j.id) for j in w.jobs] == sorted((j.arrival, j.id) for j in w.jobs)
    for j in w.jobs:
        assert isinstance(j.id, str) and j.id and _finite(j.arrival)
        assert j.origin in cluster.site_names and _finite(j.weight) and j.weight > 0
        assert j.deadline is None or (_finite(j.deadline) and j.deadline > j.arrival)
        assert j.tasks and len({t.id for t in j.tasks}) == len(j.tasks)
        for t in j.tasks:
            d = t.demand
            assert _nonneg_int(d.cpu) and _nonneg_int(d.mem) and _nonneg_int(d.gpu)
            assert d.gpu < MILLI or d.gpu % MILLI == 0
            assert _finite(t.duration) and _finite(t.data_mb)
            assert isinstance(t.instances, int) and t.instances >= 1
            assert t.run is None or run_problem(t.run) is None
        assert len(topological_order(j)) == len(j.tasks)


def valid_cluster(c: Cluster) -> None:
    assert isinstance(c, Cluster) and c.sites
    names = c.site_names
    assert len(set(names)) == len(names)
    nodes = [n.name for n in c.nodes]
    assert len(set(nodes)) == len(nodes)
    for s in c.sites:
        assert s.nodes
        p = s.power
        assert p.node_idle_w <= p.node_peak_w and p.gpu_idle_w <= p.gpu_peak_w and p.pue >= 1
        for n in s.nodes:
            assert n.site == s.name and n.cpu > 0 and n.mem > 0 and _nonneg_int(n.gpus)
            assert (n.gpus > 0) == (n.gpu_model is not None)
    for k, link in c.links.items():
        assert len(k) == 2 and k <= set(names)
        assert _finite(link.latency_ms) and link.bandwidth_mbps > 0
    f = c.faults
    assert 0 <= f.task_failure_prob < 1 and 0 <= f.overrun_prob <= 1
    assert f.overrun_factor >= 1 and f.max_attempts >= 1
    for o in f.outages:
        assert (o.node is None) != (o.site is None)
        assert o.node in nodes or o.site in names
        assert o.until is None or o.until > o.at >= 0


def valid_demands(ds: list) -> None:
    names = [n for n, _ in ds]
    assert len(set(names)) == len(names) and all(names)
    for _, d in ds:
        assert isinstance(d, Demand) and (d.gpu < MILLI or d.gpu % MILLI == 0)


def outcome(path: Path, data: bytes, read: Callable[[str], Any],
            valid: Callable[[Any], None]) -> None:
    path.write_bytes(data)
    try:
        result = read(str(path))
    except InputError as e:
        assert str(path) in str(e)
        assert e.line is None or e.line >= 1
    else:
        valid(result)


READERS: dict[str, tuple[Callable[[str], Any], Callable[[Any], None]]] = {
    "jobs.jsonl": (lambda p: read_jobs(p, CLUSTER), lambda w: valid_workload(w, CLUSTER)),
    "cluster.yaml": (read_cluster, valid_cluster),
    "pods.csv": (lambda p: read_alibaba_pods(p, CLUSTER), lambda w: valid_workload(w, CLUSTER)),
    "nodes.csv": (lambda p: read_alibaba_nodes(p, 2), valid_cluster),
    "trace.swf": (lambda p: read_swf(p, CLUSTER), lambda w: valid_workload(w, CLUSTER)),
    "demands.csv": (read_alibaba_pod_demands, lambda ds: valid_demands(ds)),
}
FIXTURES = {"jobs.jsonl": "jobs_small.jsonl", "cluster.yaml": "cluster_small.yaml",
            "pods.csv": "alibaba_pods.csv", "nodes.csv": "alibaba_nodes.csv",
            "trace.swf": "small.swf", "demands.csv": "alibaba_pods.csv"}


def run(tmp_path: Path, name: str, data: bytes) -> None:
    read, valid = READERS[name]
    outcome(tmp_path / name, data, read, valid)


# ----------------------------------------------------------------------------- mutations

def _paths(v: Any, at: tuple = ()) -> list[tuple]:
    out = [at]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, at + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, at + (i,))
    return out


def mutate(data: st.DataObject, doc: Any) -> Any:
    """Drop a key/item, or replace any value by a bad one, somewhere in ``doc`` (in place)."""
    paths = [p for p in _paths(doc) if p]
    p = data.draw(st.sampled_from(paths))
    parent = doc
    for k in p[:-1]:
        parent = parent[k]
    if data.draw(st.booleans()):
        del parent[p[-1]]
    else:
        parent[p[-1]] = copy.deepcopy(data.draw(st.sampled_from(BAD_VALUES)))
    return doc


def text_mutation(data: st.DataObject, raw: bytes) -> bytes:
    """Truncate, inject bytes, or drop/duplicate a line."""
    op = data.draw(st.sampled_from(["truncate", "inject", "drop", "dup"]))
    lines = raw.split(b"\n")
    if op == "truncate":
        return raw[:data.draw(st.integers(0, len(raw)))]
    if op == "inject":
        at = data.draw(st.integers(0, len(raw)))
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    i = data.draw(st.integers(0, len(lines) - 1))
    if op == "drop":
        return b"\n".join(lines[:i] + lines[i + 1:])
    return b"\n".join(lines[:i + 1] + lines[i:])


def cell_mutation(data: st.DataObject, raw: bytes, sep: str) -> bytes:
    """Replace, drop or add one cell of one line of a CSV (sep ',') or SWF (sep None) file."""
    lines = raw.decode().split("\n")
    i = data.draw(st.integers(0, len(lines) - 1))
    cells = lines[i].split(sep)
    j = data.draw(st.integers(0, max(len(cells) - 1, 0)))
    op = data.draw(st.sampled_from(["replace", "drop", "add"]))
    bad = data.draw(st.sampled_from(BAD_CELLS))
    if sep is None:
        bad = bad.replace(" ", "") or "-2"
    if op == "replace" and cells:
        cells[j] = bad
    elif op == "drop" and cells:
        del cells[j]
    else:
        cells.insert(j, bad)
    lines[i] = (sep or " ").join(cells)
    return "\n".join(lines).encode("utf-8")


# ----------------------------------------------------------------------------- tests

@SET
@given(name=st.sampled_from(sorted(READERS)), data=st.binary(max_size=400))
def test_garbage_bytes(tmp_path, name, data):
    run(tmp_path, name, data)


HEADERS = {"pods.csv": b"name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
                       b"creation_time,deletion_time,scheduled_time\n",
           "nodes.csv": b"sn,cpu_milli,memory_mib,gpu,model\n", "trace.swf": b"; x\n",
           "jobs.jsonl": b"# x\n", "cluster.yaml": b"sites:\n",
           "demands.csv": b"name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"}


@SET
@given(name=st.sampled_from(sorted(READERS)),
       text=st.text(alphabet=st.sampled_from(list("0123456789-.,e|: \n{}[]\"NaInf#;abx")),
                    max_size=200))
def test_garbage_after_header(tmp_path, name, text):
    run(tmp_path, name, HEADERS[name] + text.encode())


@SET
@given(name=st.sampled_from(sorted(READERS)), data=st.data())
def test_text_mutations(tmp_path, name, data):
    raw = (FIX / FIXTURES[name]).read_bytes()
    for _ in range(data.draw(st.integers(1, 2))):
        raw = text_mutation(data, raw)
    run(tmp_path, name, raw)


JOB_RECORDS = [json.loads(ln) for ln in (FIX / "jobs_small.jsonl").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]


@SET
@given(data=st.data())
def test_job_record_mutations(tmp_path, data):
    recs = json.loads(json.dumps(JOB_RECORDS))
    for _ in range(data.draw(st.integers(1, 2))):
        mutate(data, recs)
    lines = [json.dumps(r) for r in recs] if isinstance(recs, list) else [json.dumps(recs)]
    run(tmp_path, "jobs.jsonl", ("\n".join(lines) + "\n").encode())


CLUSTER_DOC = yaml.safe_load((FIX / "cluster_small.yaml").read_text())


@SET
@given(data=st.data())
def test_cluster_doc_mutations(tmp_path, data):
    doc = json.loads(json.dumps(CLUSTER_DOC))
    for _ in range(data.draw(st.integers(1, 2))):
        mutate(data, doc)
    run(tmp_path, "cluster.yaml", yaml.safe_dump(doc).encode())


@SET
@given(name=st.sampled_from(["pods.csv", "nodes.csv", "trace.swf", "demands.csv"]), data=st.data())
def test_cell_mutations(tmp_path, name, data):
    raw = (FIX / FIXTURES[name]).read_bytes()
    for _ in range(data.draw(st.integers(1, 2))):
        raw = cell_mutation(data, raw, None if name == "trace.swf" else ",")
    run(tmp_path, name, raw)


def test_fixtures_are_valid(tmp_path):
    for name, fixture in FIXTURES.items():
        read, valid = READERS[name]
        valid(read(str(FIX / fixture)))
