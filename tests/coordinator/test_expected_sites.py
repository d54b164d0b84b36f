"""The round's expected sites (``agents.sim.fitting.fitting_sites``): the gpu-less shapes compared
with every node in one numpy comparison give the same sites as asking each shape's fit mask in
turn (the code before), on random clusters, loads and backlogs."""

from __future__ import annotations

from hypothesis import given, strategies as st

from agora.agents.domain import Cluster, Demand, Node, Site
from agora.agents.sim.capacity import Capacity
from agora.agents.sim.fitting import fitting_sites
from tests.coordinator.state_helpers import SETTINGS

demands = st.builds(
    Demand, cpu=st.integers(0, 9000), mem=st.integers(0, 20000),
    gpu=st.sampled_from([0, 0, 0, 250, 1000, 2000]),
    gpu_models=st.sampled_from([None, frozenset({"T4"}), frozenset({"A100"})]))


@st.composite
def loaded(draw):
    sites = []
    for s in range(draw(st.integers(1, 5))):
        nodes = tuple(Node(f"s{s}/n{k}", f"s{s}", cpu=draw(st.integers(1000, 8000)),
                           mem=draw(st.integers(1024, 16384)),
                           gpus=(g := draw(st.integers(0, 2))),
                           gpu_model=draw(st.sampled_from(["T4", "A100"])) if g else None)
                      for k in range(draw(st.integers(1, 4))))
        sites.append(Site(name=f"s{s}", nodes=nodes))
    cap = Capacity(Cluster(sites=tuple(sites)))
    for d in draw(st.lists(demands, max_size=12)):          # some load
        node = draw(st.integers(0, cap.n_nodes - 1))
        if cap.fit_mask(d)[node]:
            cap.place(node, d)
    for node in draw(st.lists(st.integers(0, cap.n_nodes - 1), max_size=2)):
        cap.set_alive(node, False)
    return cap


def one_by_one(cap: Capacity, shapes: list[Demand]) -> set[int]:
    found: set[int] = set()
    for d in shapes:
        found.update(int(i) for i in cap.sites_of(cap.fit_mask(d)).nonzero()[0])
    return found


@SETTINGS
@given(loaded(), st.lists(demands, max_size=30), st.data())
def test_the_sites_found_at_once_are_those_found_shape_by_shape(cap, shapes, data):
    truth = one_by_one(cap, shapes)
    assert fitting_sites(cap, shapes, set(range(cap.n_sites))) == truth
    wanted = data.draw(st.sets(st.integers(0, cap.n_sites - 1)))   # it may stop early:
    found = fitting_sites(cap, shapes, wanted)                       # never wrong, never
    assert wanted & truth <= found <= truth                          # short of the wanted
