"""protos/convert.py on hand-built objects: a cluster, a workload and its jobs go round
exactly, unset messages mean the domain defaults, values a message cannot carry are refused,
and a bad field (of a cluster or a workload, or an unknown field number) is refused naming its
path; ProtoError survives pickling (Ray ships exceptions that way)."""

from __future__ import annotations

import math
import pickle

import pytest

from agora.agents.domain import (Cluster, Demand, Faults, Job, Link, Node, NodeOutage, PowerModel,
                                 Site, Task, Workload)
from agora.protos import convert
from agora.protos.agora.v1 import cluster_pb2, resources_pb2, workload_pb2


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
