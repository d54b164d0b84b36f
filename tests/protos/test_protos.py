"""The agora.v1 contract: generated code matches the .proto files, and protos/convert.py
carries domain objects across exactly and refuses bad messages with a field path."""

from __future__ import annotations

import itertools
import math
import pickle
import subprocess
import sys

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import (
    Cluster,
    Demand,
    Faults,
    Job,
    Link,
    Node,
    NodeOutage,
    PowerModel,
    Site,
    Task,
    Workload,
)
from agora.agents.limits import MAX_CORES, MAX_GPUS, MAX_INSTANCES, MAX_MEM_MIB, id_problem
from agora.protos import convert, generate
from agora.protos.agora.v1 import cluster_pb2, resources_pb2, workload_pb2

ROOT = generate.ROOT
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# (message class, from_proto, to_proto) for every converter pair.
CONVERTERS = [
    (resources_pb2.Demand, convert.demand_from_proto, convert.demand_to_proto),
    (cluster_pb2.Cluster, convert.cluster_from_proto, convert.cluster_to_proto),
    (workload_pb2.Job, convert.job_from_proto, convert.job_to_proto),
    (workload_pb2.Workload, convert.workload_from_proto, convert.workload_to_proto),
]


# ---- (a) generated code is what the one script generates ----

def test_committed_generated_code_is_what_generate_writes(tmp_path):
    done = subprocess.run([sys.executable, "-m", "agora.protos.generate", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fresh, committed = generate.generated_files(tmp_path), generate.generated_files(ROOT)
    protos = generate.proto_files()
    assert protos and fresh == sorted(p.removesuffix(".proto") + s for p in protos
                                      for s in generate.GENERATED_SUFFIXES)
    assert committed == fresh, ("generated files missing or extra in the repository; run "
                                "`python -m agora.protos.generate`")
    stale = [rel for rel in fresh if (tmp_path / rel).read_bytes() != (ROOT / rel).read_bytes()]
    assert not stale, f"{stale} differ from the .proto files; run `python -m agora.protos.generate`"


def test_generate_refuses_another_grpcio_tools(monkeypatch):
    monkeypatch.setattr(generate.metadata, "version", lambda name: "1.82.0")
    with pytest.raises(SystemExit) as e:
        generate.check_grpcio_tools()
    assert "grpcio-tools==1.81.1" in str(e.value.code) and "protobuf 7" in str(e.value.code)


# ---- (b) hand-built round trips and refusals ----

def small_cluster() -> Cluster:
    east = Site(name="east", nodes=(
        Node(name="e1", site="east", cpu=64_000, mem=256 * 1024, gpus=8, gpu_model="A100"),
        Node(name="e2", site="east", cpu=32_000, mem=128 * 1024)))
    west = Site(name="west", nodes=(Node(name="w1", site="west", cpu=8_000, mem=16_384,
                                         gpus=1, gpu_model="T4"),),
                power=PowerModel(node_idle_w=80.0, node_peak_w=250.5, gpu_idle_w=0.0,
                                 gpu_peak_w=70.0, pue=1.0))
    edge = Site(name="edge", nodes=())
    return Cluster(
        sites=(east, west, edge),
        links={frozenset(("west", "east")): Link(latency_ms=35.5, bandwidth_mbps=1_000.0),
               frozenset(("edge", "east")): Link(latency_ms=0.0, bandwidth_mbps=0.5)},
        default_link=Link(latency_ms=80.0, bandwidth_mbps=100.0),
        faults=Faults(seed=-7, task_failure_prob=0.1, overrun_prob=1.0, overrun_factor=2.0,
                      max_attempts=3, outages=(NodeOutage(at=10.0, until=20.0, node="e1",
                                                          site="east"),
                                               NodeOutage(at=5.0, until=None, site="edge"),
                                               NodeOutage(at=0.0, until=1e-9, node="w1"))),
        source="hand-built")


def small_workload() -> Workload:
    gpu = Demand(cpu=4_000, mem=8_192, gpu=2_000, gpu_models=frozenset({"A100", "H100"}))
    share = Demand(cpu=500, mem=512, gpu=250)
    etl = Job(id="etl", arrival=0.0, origin="east", weight=2.5, deadline=3600.0, tasks=(
        Task(id="load", duration=10.0, demand=Demand(cpu=1_000, mem=2_048), instances=100,
             data_mb=512.0),
        Task(id="train", duration=600.0, demand=gpu, after=("load",)),
        Task(id="report", duration=1.5, demand=share, after=("train", "load"))))
    pod = Job(id="pod", arrival=0.0, origin="west", tasks=(
        Task(id="main", duration=0.0, demand=Demand(cpu=0, mem=0)),))
    late = Job(id="a-late", arrival=12.25, origin="edge", deadline=12.25, tasks=(
        Task(id="x", duration=3.0, demand=share, instances=2),))
    return Workload(jobs=(etl, pod, late), source="hand-built", seed=42)


def test_cluster_round_trips_exactly():
    c = small_cluster()
    msg = convert.cluster_to_proto(c)
    assert convert.cluster_from_proto(msg) == c
    again = convert.decode(cluster_pb2.Cluster, msg.SerializeToString(), "cluster")
    assert convert.cluster_from_proto(again) == c
    assert [(m.site_a, m.site_b) for m in msg.links] == [("east", "edge"), ("east", "west")]


def test_workload_and_job_round_trip_exactly():
    w = small_workload()
    msg = convert.workload_to_proto(w)
    assert convert.workload_from_proto(msg) == w
    assert convert.workload_from_proto(workload_pb2.Workload.FromString(
        msg.SerializeToString())) == w
    assert convert.workload_from_proto(convert.workload_to_proto(
        Workload(jobs=(), seed=None))) == Workload(jobs=(), seed=None)
    for j in w.jobs:
        assert convert.job_from_proto(convert.job_to_proto(j)) == j


def test_gpu_models_none_is_an_empty_repeated_field():
    assert list(convert.demand_to_proto(Demand(cpu=1, mem=1, gpu=500)).gpu_models) == []
    assert convert.demand_from_proto(resources_pb2.Demand(
        resources=resources_pb2.Resources(gpu_milli=500))).gpu_models is None
    assert list(convert.demand_to_proto(Demand(cpu=1, mem=1, gpu=1000, gpu_models=frozenset(
        {"b", "a"}))).gpu_models) == ["a", "b"]
    with pytest.raises(ValueError, match=r"demand\.gpu_models: an empty set"):
        convert.demand_to_proto(Demand(cpu=1, mem=1, gpu_models=frozenset()))


def test_unset_messages_mean_the_domain_defaults():
    msg = cluster_pb2.Cluster(sites=[cluster_pb2.Site(name="s")])
    assert convert.cluster_from_proto(msg) == Cluster(sites=(Site(name="s", nodes=()),),
                                                      source="")


def test_to_proto_refuses_values_it_cannot_carry():
    node = Node(name="n", site="s", cpu=1, mem=1, gpus=1, gpu_model="")
    with pytest.raises(ValueError, match=r"cluster\.sites\[0\]\.nodes\[0\]\.gpu_model"):
        convert.cluster_to_proto(Cluster(sites=(Site(name="s", nodes=(node,)),)))
    with pytest.raises(ValueError, match=r"cluster\.links"):
        convert.cluster_to_proto(Cluster(sites=(), links={frozenset({"s"}): Link()}))


def _set(path: str, value):
    """A mutation of a message: set the field at dotted ``path`` (``a.b[1].c``) to ``value``."""
    def apply(msg):
        *parents, last = path.split(".")
        for part in parents:
            name, _, index = part.partition("[")
            msg = getattr(msg, name)
            if index:
                msg = msg[int(index[:-1])]
        if value is None:
            msg.ClearField(last)
        elif isinstance(value, list):
            del getattr(msg, last)[:]
            getattr(msg, last).extend(value)
        else:
            setattr(msg, last, value)
    return apply


BAD_CLUSTERS = [
    ("sites[0].nodes[0].cpu_milli", -1, "an integer >= 0"),
    ("sites[0].nodes[1].name", "", "a name"),
    ("sites[0].nodes[1].name", "e1", "unique node names"),
    ("sites[1].nodes[0].site", "east", "'west'"),
    ("sites[0].nodes[0].gpus", -2, ">= 0"),
    ("sites[2].name", "east", "unique site names"),
    ("sites[1].power.pue", 0.5, ">= 1"),
    ("sites[1].power.node_peak_w", 10.0, "a peak >= 80"),
    ("sites[1].power.gpu_idle_w", math.nan, "finite"),
    ("links[0].site_b", "mars", "one of ['east', 'edge', 'west']"),
    ("links[0].site_b", "east", "a site other than site_a"),
    ("links[1].site_b", "edge", "one link per pair"),
    ("links[0].bandwidth_mbps", 0.0, "> 0"),
    ("links[1].latency_ms", math.inf, "finite"),
    ("default_link.site_a", "east", "site_a and site_b empty"),
    ("faults.task_failure_prob", 1.5, "<= 1"),
    ("faults.overrun_factor", 0.5, ">= 1"),
    ("faults.max_attempts", 0, ">= 1"),
    ("faults.outages[0].until_s", 10.0, "> 10"),
    ("faults.outages[0].node", "w1", "the name of one node"),
    ("faults.outages[1].site", "", "a node, a site, or both"),
    ("faults.outages[2].site", "mars", "one of"),
]


@pytest.mark.parametrize("path,value,expected", BAD_CLUSTERS)
def test_bad_cluster_field_is_named(path, value, expected):
    msg = convert.cluster_to_proto(small_cluster())
    _set(path, value)(msg)
    with pytest.raises(convert.ProtoError) as e:
        convert.cluster_from_proto(msg)
    field = e.value.field
    assert field == f"cluster.{path}" or (field.startswith("cluster.") and path.startswith(
        field.removeprefix("cluster."))), field
    assert expected in str(e.value)


BAD_WORKLOADS = [
    ("jobs[0].tasks[1].demand.resources.cpu_milli", -5, "tasks[1].demand.resources.cpu_milli"),
    ("jobs[0].tasks[1].demand.resources.gpu_milli", 1500, "a multiple of 1000"),
    ("jobs[0].tasks[1].demand.gpu_models", ["A100", "A100"], "unique gpu models"),
    ("jobs[0].tasks[1].demand.gpu_models", ["", "A100"], "gpu_models[0]: empty"),
    ("jobs[0].tasks[1].demand.resources", None, "demand.resources: missing"),
    ("jobs[0].tasks[1].demand", None, "tasks[1].demand: missing"),
    ("jobs[0].tasks[0].instances", 0, "instances: 0 is too small"),
    ("jobs[0].tasks[0].duration_s", -1.0, "duration_s: -1.0 is out of range"),
    ("jobs[0].tasks[0].data_mb", math.nan, "data_mb: nan"),
    ("jobs[0].tasks[0].id", "train", "unique task ids"),
    ("jobs[0].tasks[0].after", ["report"], "no cycle"),
    ("jobs[0].tasks[1].after", ["train"], "waits for itself"),
    ("jobs[0].tasks[2].after", ["nope"], "tasks[2].after[0]: unknown task 'nope'"),
    ("jobs[0].tasks[2].after", ["load", "load"], "unique task ids"),
    ("jobs[0].tasks", [], "at least one task"),
    ("jobs[0].weight", 0.0, "weight: 0.0 is out of range; expected a finite number > 0"),
    ("jobs[0].deadline_s", -1.0, "deadline_s: -1.0 is out of range; expected a finite number"),
    ("jobs[2].deadline_s", 12.0, ">= 12.25"),
    ("jobs[1].origin", "", "jobs[1].origin: empty"),
    ("jobs[1].id", "etl", "unique job ids"),
    ("jobs[1].arrival_s", -0.5, "arrival_s"),
    ("jobs[2].arrival_s", 0.0, "jobs sorted by (arrival_s, id)"),
]


@pytest.mark.parametrize("path,value,expected", BAD_WORKLOADS)
def test_bad_workload_field_is_named(path, value, expected):
    msg = convert.workload_to_proto(small_workload())
    _set(path, value)(msg)
    with pytest.raises(ValueError, match=r"^workload\.") as e:
        convert.workload_from_proto(msg)
    assert expected in str(e.value)


def test_unknown_fields_are_refused_with_their_path():
    msg = convert.workload_to_proto(small_workload())
    msg.jobs[0].tasks[1].demand.MergeFromString(b"\xa0\x06\x01")  # field 100, varint 1
    data = msg.SerializeToString()
    with pytest.raises(ValueError, match=r"^workload\.jobs\[0\]\.tasks\[1\]\.demand: unknown "
                                         r"field number\(s\) \[100\]"):
        convert.workload_from_proto(workload_pb2.Workload.FromString(data))
    # Bytes of another message do not parse, or parse into fields that fail the checks.
    with pytest.raises(ValueError):
        convert.cluster_from_proto(convert.decode(cluster_pb2.Cluster, data))
    with pytest.raises(ValueError, match=r"^cluster: cannot be parsed"):
        convert.decode(cluster_pb2.Cluster, b"\x0a\x05ab", "cluster")


def test_proto_error_survives_pickle():
    # Ray ships exceptions between processes by pickling them.
    e = pickle.loads(pickle.dumps(convert.ProtoError("job.weight", "0.0 is out of range", "> 0")))
    assert (e.field, e.problem, e.expected, str(e)) == (
        "job.weight", "0.0 is out of range", "> 0", "job.weight: 0.0 is out of range; expected > 0")


# ---- (c) properties ----

NAMES = st.text(st.characters(codec="utf-8"), min_size=1, max_size=6)
AMOUNTS = st.integers(0, 2**63 - 1)
SECONDS = st.floats(0.0, 1e9)
SEEDS = st.integers(-(2**63), 2**63 - 1)
PROB = st.floats(0.0, 1.0)
# within agents/limits.py's bounds (test_bounds_are_refused_naming_the_field: past them)
DEMANDS = st.builds(Demand, cpu=st.integers(0, int(MAX_CORES * 1000)),
                    mem=st.integers(0, MAX_MEM_MIB),
                    gpu=st.integers(0, 999) | st.integers(1, MAX_GPUS).map(lambda k: k * 1000),
                    gpu_models=st.none() | st.frozensets(NAMES, min_size=1, max_size=3))


@st.composite
def powers(draw) -> PowerModel:
    idle, gidle = draw(st.floats(0, 1e4)), draw(st.floats(0, 1e4))
    return PowerModel(node_idle_w=idle, node_peak_w=idle + draw(st.floats(0, 1e4)),
                      gpu_idle_w=gidle, gpu_peak_w=gidle + draw(st.floats(0, 1e4)),
                      pue=draw(st.floats(1.0, 3.0)))


LINKS = st.builds(Link, latency_ms=st.floats(0, 1e4),
                  bandwidth_mbps=st.floats(0, 1e6, exclude_min=True))


@st.composite
def clusters(draw) -> Cluster:
    sites = []
    for name in draw(st.lists(NAMES, max_size=4, unique=True)):
        nodes = tuple(Node(name=n, site=name, cpu=draw(AMOUNTS), mem=draw(AMOUNTS),
                           gpus=draw(st.integers(0, 2**31 - 1)),
                           gpu_model=draw(st.none() | NAMES))
                      for n in draw(st.lists(NAMES, max_size=3, unique=True)))
        sites.append(Site(name=name, nodes=nodes, power=draw(powers())))
    names = sorted(s.name for s in sites)
    links = {frozenset(p): draw(LINKS) for p in itertools.combinations(names, 2)
             if draw(st.booleans())}
    outages = []
    for _ in range(draw(st.integers(0, 3)) if sites else 0):
        site = draw(st.sampled_from(sites))
        node = draw(st.sampled_from([None, *(n.name for n in site.nodes)]))
        at = draw(SECONDS)
        until = draw(st.none() | st.floats(at, at + 1e6, exclude_min=True))
        unique_node = node is not None and sum(n.name == node for n in
                                               [n for s in sites for n in s.nodes]) == 1
        site_name = None if unique_node and draw(st.booleans()) else site.name
        outages.append(NodeOutage(at=at, until=until, node=node, site=site_name))
    faults = Faults(seed=draw(SEEDS), task_failure_prob=draw(PROB), overrun_prob=draw(PROB),
                    overrun_factor=draw(st.floats(1.0, 10.0)),
                    max_attempts=draw(st.integers(1, 2**31 - 1)), outages=tuple(outages))
    return Cluster(sites=tuple(sites), links=links, default_link=draw(LINKS), faults=faults,
                   source=draw(st.text(max_size=10, alphabet=st.characters(codec="utf-8"))))


IDS = NAMES.filter(lambda x: id_problem(x) is None)


@st.composite
def jobs(draw) -> Job:
    ids = draw(st.lists(IDS, min_size=1, max_size=5, unique=True))
    tasks = [Task(id=t, duration=draw(SECONDS), demand=draw(DEMANDS),
                  instances=draw(st.integers(1, MAX_INSTANCES)),
                  after=tuple(draw(st.lists(st.sampled_from(ids[:i]), unique=True)))
                  if i else (), data_mb=draw(st.floats(0, 1e9)))
             for i, t in enumerate(ids)]
    arrival = draw(SECONDS)
    return Job(id=draw(IDS), arrival=arrival, origin=draw(NAMES),
               tasks=tuple(draw(st.permutations(tasks))),
               weight=draw(st.floats(0, 1e6, exclude_min=True)),
               deadline=draw(st.none() | st.floats(0, 1e9).map(lambda d: arrival + d)))


WORKLOADS = st.builds(
    lambda js, source, seed: Workload(jobs=tuple(sorted(js, key=lambda j: (j.arrival, j.id))),
                                      source=source, seed=seed),
    st.lists(jobs(), max_size=4, unique_by=lambda j: j.id), st.text(max_size=10),
    st.none() | SEEDS)


@SETTINGS
@given(st.one_of(DEMANDS, clusters(), jobs(), WORKLOADS))
def test_valid_domain_objects_round_trip_exactly(obj):
    cls, from_proto, to_proto = next(c for c in CONVERTERS
                                     if c[0].DESCRIPTOR.name == type(obj).__name__)
    msg = to_proto(obj)
    assert from_proto(msg) == obj
    assert from_proto(cls.FromString(msg.SerializeToString())) == obj


SCALARS = {
    FD.TYPE_INT64: st.integers(-3, 3) | st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_INT32: st.integers(-3, 3) | st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_DOUBLE: st.sampled_from([0.0, -0.0, 1.0, 1000.0]) | st.floats(),
    FD.TYPE_STRING: st.sampled_from(["", "a", "b", "east", "A100"]) | st.text(
        st.characters(codec="utf-8"), max_size=4),
}


def _message_class(fd):
    return message_factory.GetMessageClass(fd.message_type)


@st.composite
def random_messages(draw, cls, depth: int = 3):
    """A message of ``cls`` with any fields set to any values of their types."""
    msg = cls()
    for fd in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        field = getattr(msg, fd.name)
        if fd.message_type is not None:
            if depth == 0:
                continue
            values = draw(st.lists(random_messages(_message_class(fd), depth - 1),
                                   min_size=1, max_size=3 if fd.is_repeated else 1))
            if fd.is_repeated:
                field.extend(values)
            else:
                field.CopyFrom(values[0])
        elif fd.is_repeated:
            field.extend(draw(st.lists(SCALARS[fd.type], max_size=3)))
        else:
            setattr(msg, fd.name, draw(SCALARS[fd.type]))
    return msg


def _fields(msg):
    """(message, field descriptor) for every field of ``msg`` and of its nested messages."""
    for fd in msg.DESCRIPTOR.fields:
        yield msg, fd
        if fd.message_type is not None:
            children = getattr(msg, fd.name) if fd.is_repeated else (
                [getattr(msg, fd.name)] if msg.HasField(fd.name) else [])
            for child in children:
                yield from _fields(child)


@st.composite
def mutated(draw, valid, to_proto):
    """A valid object's message with one field anywhere in it set to a random value."""
    msg = to_proto(draw(valid))
    parent, fd = draw(st.sampled_from(list(_fields(msg))))
    if fd.message_type is not None:
        new = draw(st.none() | random_messages(_message_class(fd), 1))
        field = getattr(parent, fd.name)
        if fd.is_repeated:
            del field[draw(st.integers(0, len(field))):]
            field.extend([] if new is None else [new])
        elif new is None:
            parent.ClearField(fd.name)
        else:
            field.CopyFrom(new)
    elif fd.is_repeated:
        field = getattr(parent, fd.name)
        del field[draw(st.integers(0, len(field))):]
        field.extend(draw(st.lists(SCALARS[fd.type], max_size=2)))
    elif fd.has_presence and draw(st.booleans()):
        parent.ClearField(fd.name)
    else:
        setattr(parent, fd.name, draw(SCALARS[fd.type]))
    return msg


def _valid_or_value_error(msg, from_proto, to_proto):
    try:
        obj = from_proto(msg)
    except ValueError as e:
        assert str(e)
        return
    # What a reader accepts is a valid object: it goes round exactly.
    assert from_proto(to_proto(obj)) == obj


@SETTINGS
@given(st.data())
def test_random_messages_give_an_object_or_value_error(data):
    cls, from_proto, to_proto = data.draw(st.sampled_from(CONVERTERS))
    _valid_or_value_error(data.draw(random_messages(cls)), from_proto, to_proto)


@SETTINGS
@given(st.data())
def test_mutated_valid_messages_give_an_object_or_value_error(data):
    valid = {resources_pb2.Demand: DEMANDS, cluster_pb2.Cluster: clusters(),
             workload_pb2.Job: jobs(), workload_pb2.Workload: WORKLOADS}
    cls, from_proto, to_proto = data.draw(st.sampled_from(CONVERTERS))
    _valid_or_value_error(data.draw(mutated(valid[cls], to_proto)), from_proto, to_proto)


@SETTINGS
@given(st.sampled_from(CONVERTERS), st.binary(max_size=64))
def test_random_bytes_give_an_object_or_value_error(converter, data):
    cls, from_proto, to_proto = converter
    try:
        msg = convert.decode(cls, data)
    except ValueError:
        return
    _valid_or_value_error(msg, from_proto, to_proto)
