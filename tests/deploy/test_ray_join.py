"""Joining a Ray cluster (``ray.address``): what its live nodes must carry
(``deploy.ray_runtime.check_joined``). A site no live Ray node carries is refused in one line
naming the resource and where to read how; an Agora node none carries (its Ray node dead)
only starts down -- one dead Ray node refused the whole start, and the keeper spent its
restarts on it (a probe); and ``agora site list`` names each site's nodes down."""

from __future__ import annotations

import logging

import pytest

from agora.agents.cluster.node_runner import node_resource
from agora.agents.domain import Node
from agora.deploy.ray_runtime import check_joined
from agora.deploy.up_config import site_resource

NODES = [Node("a/n0", "a", cpu=1000, mem=512), Node("a/n1", "a", cpu=1000, mem=512),
         Node("b/n0", "b", cpu=1000, mem=512)]
ALL = {site_resource("a"): 1.0, site_resource("b"): 1.0,
       **{node_resource(n.name): 1.0 for n in NODES}, "CPU": 4.0}


def test_every_resource_carried_joins_quietly(caplog):
    with caplog.at_level(logging.WARNING):
        check_joined(ALL, "ray://x:10001", ["a", "b"], NODES)
    assert caplog.records == []


def test_a_site_no_live_node_carries_is_refused_naming_its_resource():
    have = {k: v for k, v in ALL.items() if k != site_resource("b")}
    with pytest.raises(ValueError) as e:
        check_joined(have, "10.0.0.1:6379", ["a", "b"], NODES)
    msg = str(e.value)
    assert f"no live Ray node carries the resource {site_resource('b')!r}" in msg
    assert "docs/deploying.md" in msg and "more" not in msg
    with pytest.raises(ValueError, match=r"\(and 1 more site\(s\)\)"):
        check_joined({"CPU": 1.0}, "auto", ["a", "b"], [])


def test_a_node_no_live_ray_node_carries_starts_down_with_a_warning(caplog):
    have = {k: v for k, v in ALL.items() if k != node_resource("a/n1")}
    with caplog.at_level(logging.WARNING):
        check_joined(have, "auto", ["a", "b"], NODES)       # not refused
    [rec] = caplog.records
    assert "node a/n1" in rec.getMessage() and "starts down" in rec.getMessage()
    check_joined(have, "auto", ["a", "b"], [])             # agora replay: no runners


def test_agora_site_list_names_each_sites_nodes_down():
    """An Agora node down (its Ray node dead) was visible only in agora up's log (a probe)."""
    from agora.deploy.cli_sites import site_rows
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    view = pb.LedgerView(version=7, sites=[pb.SiteStatus(site="s2"), pb.SiteStatus(site="s")],
                         nodes_down=["s2/b", "s/a", "s2/a"])
    rows = {r["site"]: r["nodes_down"] for r in site_rows(view)}
    assert rows == {"s2": ["s2/a", "s2/b"], "s": ["s/a"]}


def test_a_resumed_schedule_starts_without_a_site_no_live_node_carries(caplog):
    """A restart after a site's only Ray node died was refused five times over and left every
    site without service (a re-probe): resumed, the site's agent is not started, the rest
    serve."""
    from agora.deploy.ray_runtime import sites_unplaced

    have = {k: v for k, v in ALL.items() if k not in (site_resource("b"), node_resource("b/n0"))}
    with caplog.at_level(logging.WARNING):
        check_joined(have, "auto", ["a", "b"], NODES, resumed=True)
    text = " | ".join(r.getMessage() for r in caplog.records)
    assert f"{site_resource('b')!r}: that site's agent is not started" in text
    assert "node b/n0" in text and "starts down" in text
    assert sites_unplaced(have, ["a", "b"]) == ["b"]
    with pytest.raises(ValueError):                           # a first start: refused
        check_joined(have, "auto", ["a", "b"], NODES)
