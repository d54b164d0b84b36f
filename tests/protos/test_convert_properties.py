"""Properties of protos/convert.py over generated input: every valid domain object (within
agents/limits.py's bounds) goes round exactly, and random messages, valid messages with one
field changed anywhere, and random bytes each give a valid object or a ValueError."""

from __future__ import annotations

import itertools

from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import (Cluster, Demand, Faults, Job, Link, Node, NodeOutage, PowerModel,
                                 Site, Task, Workload)
from agora.agents.limits import MAX_CORES, MAX_GPUS, MAX_INSTANCES, MAX_MEM_MIB, id_problem
from agora.protos import convert
from agora.protos.agora.v1 import cluster_pb2, resources_pb2, workload_pb2
from tests.protos.random_messages import message_class
from tests.protos.random_messages import random_messages as any_message

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# (message class, from_proto, to_proto) for every converter pair.
CONVERTERS = [
    (resources_pb2.Demand, convert.demand_from_proto, convert.demand_to_proto),
    (cluster_pb2.Cluster, convert.cluster_from_proto, convert.cluster_to_proto),
    (workload_pb2.Job, convert.job_from_proto, convert.job_to_proto),
    (workload_pb2.Workload, convert.workload_from_proto, convert.workload_to_proto),
]


NAMES = st.text(st.characters(codec="utf-8"), min_size=1, max_size=6).filter(str.isprintable)
"""a name field: 1-200 printable characters (convert_checks._name)"""
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


def random_messages(cls, depth: int = 3):
    """A message of ``cls`` with any fields set to any values of their types."""
    return any_message(cls, SCALARS, depth)


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
        new = draw(st.none() | random_messages(message_class(fd), 1))
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
