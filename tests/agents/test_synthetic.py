"""Tests of agents/workloads/synthetic.py: determinism, feasibility, DAG shape, calibrated
load, deadlines, gpu models, origins and parameter validation."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agora.agents.domain import (MILLI, Cluster, Node, Site, Workload, fits_node, topological_order,
                                 why_unschedulable)
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_workload
from agora.agents.workloads.synthetic import _PARAMS, generate, params_from_source


def _site(name: str, *specs: tuple[str, float, int, int, str | None, int]) -> Site:
    """specs: (node name, cores, MiB, gpus, gpu model, count)."""
    nodes = tuple(Node(name=f"{name}/{nm}-{i}", site=name, cpu=round(cores * MILLI), mem=mem,
                       gpus=gpus, gpu_model=model)
                  for nm, cores, mem, gpus, model, count in specs for i in range(count))
    return Site(name=name, nodes=nodes)


@pytest.fixture(scope="module")
def gpu_cluster() -> Cluster:
    """Three sites, two gpu models, small edge nodes that cannot hold the biggest requests."""
    return Cluster(sites=(
        _site("dc", ("cpu", 64, 262144, 0, None, 4), ("v100", 48, 376832, 4, "V100", 2)),
        _site("west", ("cpu", 32, 131072, 0, None, 4), ("t4", 16, 65536, 2, "T4", 1)),
        _site("edge", ("box", 8, 32768, 0, None, 3)),
    ), source="test-gpu")


@pytest.fixture(scope="module")
def cpu_cluster() -> Cluster:
    return Cluster(sites=(
        _site("a", ("cpu", 32, 131072, 0, None, 4)),
        _site("b", ("cpu", 16, 65536, 0, None, 2)),
    ), source="test-cpu")


def _offered_load(w: Workload, cluster: Cluster) -> list[float]:
    """Measured offered load per resource (cpu, mem, gpu): work / (capacity x span), with the
    span of n arrivals estimated as n mean gaps."""
    cap = cluster.capacity()
    work = [0.0, 0.0, 0.0]
    for j in w.jobs:
        for t in j.tasks:
            x = t.instances * t.duration
            work[0] += t.demand.cpu * x
            work[1] += t.demand.mem * x
            work[2] += t.demand.gpu * x
    n = len(w.jobs)
    span = (w.jobs[-1].arrival - w.jobs[0].arrival) * n / (n - 1)
    return [work[r] / (cap[r] * span) if cap[r] else 0.0 for r in range(3)]


def _tasks(w: Workload):
    return [t for j in w.jobs for t in j.tasks]


def test_same_seed_same_workload_and_different_seed_differs(gpu_cluster):
    a = generate(gpu_cluster, seed=7, jobs=200)
    b = generate(gpu_cluster, seed=7, jobs=200)
    c = generate(gpu_cluster, seed=8, jobs=200)
    assert a == b
    assert a.seed == 7 and c.seed == 8
    assert a.jobs != c.jobs


def test_source_records_every_parameter_and_reproduces(gpu_cluster):
    kw = dict(seed=3, jobs=50, load=1.1, dag=0.7, long_frac=0.1, short_mean=30.0,
              long_mean=900.0, gpu_frac=0.4, deadline_frac=0.5, deadline_slack=2.0,
              origin_skew=1.5, data_mb_mean=50.0, max_stages=5, max_instances=3)
    w = generate(gpu_cluster, **kw)
    assert w.source.startswith("synthetic:seed=3,jobs=50,load=1.1,")
    back = params_from_source(w.source)
    assert back.pop("cluster") == "test-gpu"
    assert back == kw
    assert generate(gpu_cluster, **back) == w


def test_shape_ids_and_units(gpu_cluster):
    w = generate(gpu_cluster, seed=1, jobs=500, max_stages=5, max_instances=6)
    assert len(w.jobs) == 500
    assert [j.id for j in w.jobs] == [f"j{i:05d}" for i in range(500)]
    assert w.jobs[0].arrival == 0.0
    assert [(j.arrival, j.id) for j in w.jobs] == sorted((j.arrival, j.id) for j in w.jobs)
    for j in w.jobs:
        assert j.origin in gpu_cluster.site_names
        assert [t.id for t in j.tasks] == [f"t{k}" for k in range(len(j.tasks))]
    for t in _tasks(w):
        assert 1 <= t.instances <= 6
        assert t.duration >= 1.0 and math.isclose(t.duration * 10, round(t.duration * 10))
        assert t.data_mb >= 0 and t.data_mb == round(t.data_mb)
        d = t.demand
        assert isinstance(d.cpu, int) and isinstance(d.mem, int) and isinstance(d.gpu, int)
        assert d.cpu > 0 and d.mem > 0
        assert d.gpu < MILLI or d.gpu % MILLI == 0


def test_every_task_fits_some_empty_node(gpu_cluster):
    w = generate(gpu_cluster, seed=2, jobs=1500, gpu_frac=0.6)
    seen = set()
    for t in _tasks(w):
        if t.demand.key in seen:
            continue
        seen.add(t.demand.key)
        assert why_unschedulable(t.demand, gpu_cluster) is None, t.demand
    # The mix does reach the edges the redraw has to avoid (16 cores, 4 gpus, model T4).
    assert any(t.demand.cpu == 16 * MILLI for t in _tasks(w))
    assert any(t.demand.gpu == 4 * MILLI for t in _tasks(w))
    assert not any(t.demand.gpu == 4 * MILLI and t.demand.gpu_models == frozenset({"T4"})
                   for t in _tasks(w))


def test_clamps_when_no_drawn_size_can_fit():
    # A quarter-core node with 256 MiB and a shared gpu: nothing in the mix fits as drawn.
    tiny = Cluster(sites=(_site("x", ("nano", 0.25, 256, 1, "Jetson", 1)),))
    w = generate(tiny, seed=0, jobs=30, gpu_frac=0.5)
    node = tiny.nodes[0]
    assert all(fits_node(t.demand, node) for t in _tasks(w))
    assert any(t.demand.gpu for t in _tasks(w))


def test_dags_are_acyclic_and_wait_only_on_earlier_stages(gpu_cluster):
    w = generate(gpu_cluster, seed=4, jobs=600, dag=0.5, max_stages=4)
    n_dag = 0
    fan_in = 0
    for j in w.jobs:
        assert [t.id for t in topological_order(j)] == [t.id for t in j.tasks]
        index = {t.id: k for k, t in enumerate(j.tasks)}
        for t in j.tasks:
            assert all(index[p] < index[t.id] for p in t.after)
            if len(t.after) == 2:
                fan_in += 1
        stages = len({t.after for t in j.tasks})
        if len(j.tasks) > 1:
            n_dag += 1
            assert 2 <= stages <= 4
        # Critical path of a stage chain: the longest task of each stage, summed.
        by_after: dict[tuple, float] = {}
        for t in j.tasks:
            by_after[t.after] = max(by_after.get(t.after, 0.0), t.duration)
        assert math.isclose(j.critical_path(), sum(by_after.values()))
    assert n_dag == 300  # exactly dag x jobs
    assert fan_in > 0


def test_single_task_jobs_when_dag_is_zero(cpu_cluster):
    w = generate(cpu_cluster, seed=0, jobs=200, dag=0.0)
    assert all(len(j.tasks) == 1 and j.tasks[0].after == () for j in w.jobs)


@pytest.mark.parametrize("load", [0.85, 1.2])
def test_offered_load_on_dominant_resource_matches(gpu_cluster, load):
    w = generate(gpu_cluster, seed=11, jobs=3000, load=load)
    measured = _offered_load(w, gpu_cluster)
    assert max(measured) == pytest.approx(load, rel=0.10), measured


def test_offered_load_without_gpus_is_on_cpu_or_mem(cpu_cluster):
    w = generate(cpu_cluster, seed=5, jobs=3000, load=0.85, gpu_frac=0.9)
    assert not any(t.demand.gpu for t in _tasks(w))  # gpu_frac ignored: no gpus
    measured = _offered_load(w, cpu_cluster)
    assert measured[2] == 0.0
    assert max(measured) == pytest.approx(0.85, rel=0.10), measured


def test_deadlines(gpu_cluster):
    w = generate(gpu_cluster, seed=6, jobs=1000, deadline_frac=0.3, deadline_slack=2.5)
    with_deadline = [j for j in w.jobs if j.deadline is not None]
    assert len(with_deadline) == 300
    for j in with_deadline:
        want = j.arrival + 2.5 * j.critical_path()
        assert want - 1e-6 <= j.deadline <= want + 0.1 + 1e-6
        assert math.isclose(j.deadline * 10, round(j.deadline * 10))
    assert all(j.deadline is None for j in generate(gpu_cluster, jobs=100, deadline_frac=0).jobs)


def test_gpu_fraction_and_models_come_from_the_cluster(gpu_cluster):
    w = generate(gpu_cluster, seed=9, jobs=1500, gpu_frac=0.3)
    tasks = _tasks(w)
    gpu_tasks = [t for t in tasks if t.demand.gpu]
    assert len(gpu_tasks) / len(tasks) == pytest.approx(0.3, abs=0.04)
    shares = sum(t.demand.gpu < MILLI for t in gpu_tasks)
    assert shares / len(gpu_tasks) == pytest.approx(0.5, abs=0.1)
    restricted = [t for t in gpu_tasks if t.demand.gpu_models is not None]
    assert restricted and all(len(t.demand.gpu_models) == 1 for t in restricted)
    assert set().union(*(t.demand.gpu_models for t in restricted)) <= gpu_cluster.gpu_models
    assert all(t.demand.gpu_models is None for t in tasks if not t.demand.gpu)


def test_origins_uniform_or_skewed(gpu_cluster):
    uniform = Counter(j.origin for j in generate(gpu_cluster, jobs=1500, dag=0).jobs)
    assert all(c / 1500 == pytest.approx(1 / 3, abs=0.06) for c in uniform.values())
    skewed = Counter(j.origin for j in generate(gpu_cluster, jobs=1500, dag=0,
                                                origin_skew=2.0).jobs)
    # weights 1, 1/4, 1/9 -> 36/49, 9/49, 4/49
    assert skewed["dc"] / 1500 == pytest.approx(36 / 49, abs=0.06)
    assert skewed["dc"] > skewed["west"] > skewed["edge"]


@pytest.mark.parametrize("kw, message", [
    (dict(load=-1), "load must be in (0, 10], got -1"),
    (dict(load=0), "load must be in (0, 10], got 0"),
    (dict(load=float("nan")), "load must be in (0, 10], got nan"),
    (dict(jobs=0), "jobs must be an integer in [1, 10000000], got 0"),
    (dict(jobs=2.5), "jobs must be an integer in [1, 10000000], got 2.5"),
    (dict(seed=-3), "seed must be an integer in [0, "),
    (dict(dag=1.5), "dag must be in [0, 1], got 1.5"),
    (dict(gpu_frac=True), "gpu_frac must be in [0, 1], got True"),
    (dict(short_mean=0), "short_mean must be in (0, 1e+06], got 0"),
    (dict(deadline_slack=0.5), "deadline_slack must be in [1, 1000], got 0.5"),
    (dict(max_stages=1), "max_stages must be an integer in [2, 64], got 1"),
    (dict(max_instances=0), "max_instances must be an integer in [1, 4096], got 0"),
    (dict(origin_skew=-0.1), "origin_skew must be in [0, 10], got -0.1"),
])
def test_parameter_validation_names_parameter_value_and_range(cpu_cluster, kw, message):
    with pytest.raises(ValueError) as err:
        generate(cpu_cluster, **kw)
    assert message in str(err.value)


def test_cluster_without_nodes_is_rejected():
    with pytest.raises(ValueError, match="no nodes"):
        generate(Cluster(sites=(Site(name="empty", nodes=()),)), jobs=5)


def test_params_from_source_rejects_foreign_strings():
    with pytest.raises(ValueError, match="not a synthetic"):
        params_from_source("trace:foo.csv")


def test_a_load_so_low_that_arrivals_pass_the_time_limit_is_refused_with_the_least_that_works(
        cpu_cluster):
    """``load=1e-300`` drew arrivals near 1e304 s: the run's makespan and energy printed as
    300-digit numbers. Refused, naming ``load`` and the least load that fits the span."""
    with pytest.raises(ValueError, match=r"load must offer the 50 jobs within 1e\+10 s") as err:
        generate(cpu_cluster, jobs=50, load=1e-300)
    least = float(str(err.value).rsplit("load >= ", 1)[1].split(" ")[0])
    wl = generate(cpu_cluster, jobs=50, load=least)
    assert wl.jobs[-1].arrival <= 1e10


@pytest.mark.parametrize("load", [5e-324, 1e-320])
def test_a_load_whose_rate_underflows_is_refused_like_any_load_too_low(cpu_cluster, load):
    # load=3e-324 (subnormal) made the arrival rate 0.0: 1.0 / rate raised ZeroDivisionError,
    # a traceback out of agora simulate (found by a hypothesis probe of synthetic specs)
    with pytest.raises(ValueError, match=r"load must offer the 50 jobs .* use load >= "):
        generate(cpu_cluster, jobs=50, load=load)
    assert generate(cpu_cluster, jobs=1, load=load).jobs[0].arrival == 0.0


_SPEC_VALUES = st.one_of(
    st.sampled_from(["0", "-0", "1", "-1", "0.5", "2", "10", "64", "4096", "1e3", "1e308",
                     "1e-308", "5e-324", "3e-324", "nan", "inf", "-inf", "true", "", "9" * 30]),
    st.floats().map(repr), st.integers(-10**20, 10**20).map(str),
    st.text(st.characters(blacklist_characters=","), max_size=6))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kv=st.lists(st.tuples(st.sampled_from(sorted(set(_PARAMS) - {"jobs", "max_instances"})),
                             _SPEC_VALUES), max_size=4, unique_by=lambda t: t[0]))
@example(kv=[("load", "3e-324")])
def test_any_synthetic_spec_gives_jobs_within_the_bounds_or_an_input_error(gpu_cluster, kv):
    """``--workload synthetic:...`` with any values: a workload every reader bound holds, or
    an InputError naming the spec -- never another exception (load=3e-324 raised
    ZeroDivisionError). jobs stays small so each example is quick."""
    spec = "synthetic:jobs=5," + ",".join(f"{k}={v}" for k, v in kv)
    try:
        wl = load_workload(spec, gpu_cluster)
    except InputError as e:
        assert e.path == spec
        return
    for j in wl.jobs:
        assert 0 <= j.arrival <= 1e10 and (j.deadline is None or j.arrival < j.deadline <= 1e10)
        assert all(0 <= t.duration <= 1e9 and 0 <= t.data_mb <= 1e9 for t in j.tasks)
