"""Native cluster YAML: the valid fixture, round trips, and every error naming file, line and
field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agora.agents.domain import Link, NodeOutage, PowerModel
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.native import read_cluster, write_cluster
from agora.agents.workloads.yamlmarks import load_yaml
from tests.errorcheck import check, fails

FIX = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def cluster():
    return read_cluster(FIX / "cluster_small.yaml")


def test_cluster_fixture(cluster):
    assert cluster.source == str(FIX / "cluster_small.yaml")
    assert cluster.site_names == ("east", "west", "edge")
    east, west, edge = cluster.sites
    assert [n.name for n in east.nodes] == ["east/cpu-0", "east/cpu-1", "east/v100"]
    assert [n.name for n in west.nodes] == ["west/a100-0", "west/a100-1", "west/a100-2"]
    assert [n.name for n in edge.nodes] == ["edge/box"]
    v100 = east.nodes[2]
    assert (v100.site, v100.cpu, v100.mem, v100.gpus, v100.gpu_model) == ("east", 500, 4096, 4,
                                                                         "V100")
    assert east.nodes[0].cpu == 64_000 and east.nodes[0].gpus == 0
    assert east.nodes[0].gpu_model is None
    assert east.power == PowerModel(150, 420, 50, 300, 1.25)
    assert west.power == PowerModel()
    assert edge.power == PowerModel(pue=1.0)
    assert cluster.default_link == Link(40, 5000)
    assert cluster.link("west", "east") == Link(60, 40000)
    assert cluster.links[frozenset({"east", "edge"})] == Link(8.5, 1000)
    assert cluster.link("edge", "west") == Link(40, 5000)
    assert cluster.gpu_models == {"V100", "A100"}
    f = cluster.faults
    assert (f.seed, f.task_failure_prob, f.overrun_prob, f.overrun_factor, f.max_attempts) == \
        (7, 0.01, 0.1, 2.0, 3)
    assert f.outages == (NodeOutage(at=100, until=250.5, node="west/a100-1"),
                         NodeOutage(at=1000, until=None, site="edge"))


def test_default_cluster_reads():
    c = read_cluster(Path(__file__).parents[2] / "agents" / "workloads" / "cluster-default.yaml")
    assert len(c.sites) == 8 and len(c.nodes) == 43


def test_cluster_round_trip(cluster, tmp_path):
    out = tmp_path / "c.yaml"
    write_cluster(cluster, out)
    back = read_cluster(out)
    assert back.sites == cluster.sites
    assert back.links == cluster.links
    assert back.default_link == cluster.default_link
    assert back.faults == cluster.faults


def test_yamlmarks_lines(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("a: 1\nb:\n  - x\n  -\n    c: 2\n", encoding="utf-8")
    d = load_yaml(str(p))
    assert d == {"a": 1, "b": ["x", {"c": 2}]}
    assert d.key_lines == {"a": 1, "b": 2}
    assert d["b"].item_lines == [3, 5] and d["b"][1].key_lines == {"c": 5}


GOOD = """sites:
  - name: s1
    nodes:
      - {name: n, cpu: 4, mem: 1024}
  - name: s2
    nodes:
      - name: g
        cpu: 8
        mem: 2048
        gpus: 2
        gpu_model: T4
"""


@pytest.mark.parametrize("old,new,line,field,words", [
    ("cpu: 8", "cpu: -8", 8, "sites[1].nodes[0].cpu", ["-8", "> 0"]),
    ("cpu: 8", "cpu: .nan", 8, "sites[1].nodes[0].cpu", ["NaN"]),
    ("cpu: 8", "cpu: '8'", 8, "sites[1].nodes[0].cpu", ["'8'"]),
    ("mem: 2048", "mem: 20.5", 9, "sites[1].nodes[0].mem", ["whole number"]),
    ("mem: 2048", "memory: 2048", 9, "sites[1].nodes[0].memory", ["unknown key", "cpu, mem"]),
    ("        gpu_model: T4\n", "", 7, "sites[1].nodes[0].gpu_model", ["gpu model"]),
    ("gpus: 2", "gpus: 0", 11, "sites[1].nodes[0].gpu_model", ["no gpus"]),
    ("        mem: 2048\n", "", 7, "sites[1].nodes[0].mem", ["missing"]),
    ("name: s2", "name: s1", 5, "sites[1].name", ["already defined"]),
    ("{name: n, cpu: 4, mem: 1024}", "{name: n, cpu: 4, mem: 1024, count: 0}", 4,
     "sites[0].nodes[0].count", [">= 1"]),
    # a name of 62 characters is valid alone, but with count 20 its last node is
    # '<name>-19', 65 characters, which the coordinator refuses in every node report
    ("{name: n, cpu: 4, mem: 1024}", "{name: " + "n" * 62 + ", cpu: 4, mem: 1024, count: 20}",
     4, "sites[0].nodes[0].name", ["-19", "65 characters", "at most 64"]),
])
def test_cluster_errors(tmp_path, old, new, line, field, words):
    assert old in GOOD
    p = tmp_path / "bad.yaml"
    check(fails(read_cluster, p, GOOD.replace(old, new)), p, line, field, *words)


def test_cluster_unparseable(tmp_path):
    p = tmp_path / "bad.yaml"
    check(fails(read_cluster, p, GOOD.replace("cpu: 8", "cpu: [8")), p, 9, None, "not valid YAML")


def test_a_character_yaml_refuses_is_named_on_one_line_with_its_line_and_column(tmp_path):
    # yaml's reader error said where as a character offset, on a second line
    p = tmp_path / "bad.yaml"
    e = fails(read_cluster, p, "sites:\n  - {name: a\x0f, nodes: []}\n")
    check(e, p, 2, None, "not valid YAML", "#x000f", "(column 13)")
    assert "\n" not in str(e) and "position" not in str(e)
    assert "\n" not in str(InputError(path="f", line=1, field=None, problem="a\n  b"))
    check(fails(read_cluster, p, ""), p, None, None, "empty")
    check(fails(read_cluster, p, b"sites:\n  - \xff\n"), p, 2, None, "UTF-8")
    check(fails(read_cluster, p, "- 1\n- 2\n"), p, 1, None, "found a list", "mapping")
    check(fails(read_cluster, p, GOOD + "sites: []\n"), p, 12, "sites", "appears twice")
    check(fails(read_cluster, p, "sites: []\n"), p, 1, "sites", "empty list")
    check(fails(read_cluster, p, "sites:\n  - name: s\n    nodes: []\n"), p, 3,
          "sites[0].nodes", "empty list")


def test_cluster_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(InputError) as ei:
        read_cluster(p)
    check(ei.value, p, None, None, "cannot read")


LINKS = GOOD + """links:
  default: {latency_ms: 40, bandwidth_mbps: 5000}
  pairs:
    - {a: s1, b: s2, latency_ms: 10, bandwidth_mbps: 100}
faults:
  outages:
    - {node: s2/g, at: 5, until: 10}
"""


@pytest.mark.parametrize("old,new,line,field,words", [
    ("b: s2,", "b: s3,", 15, "links.pairs[0].b", ["unknown site 's3'", "s1, s2"]),
    ("b: s2,", "b: s1,", 15, "links.pairs[0].b", ["distinct"]),
    ("bandwidth_mbps: 100", "bandwidth_mbps: 0", 15, "links.pairs[0].bandwidth_mbps",
     [">= 0.001"]),
    ("bandwidth_mbps: 100", "bandwidth_mbps: 5.0e-324", 15, "links.pairs[0].bandwidth_mbps",
     [">= 0.001"]),
    ("latency_ms: 40", "latency_ms: -1", 13, "links.default.latency_ms", ["negative"]),
    # past these bounds a run gave JCTs of 1e297 s, or inf and nan in --json
    ("latency_ms: 40", "latency_ms: 1.0e+300", 13, "links.default.latency_ms", ["<= 1,000,000"]),
    ("bandwidth_mbps: 100", "bandwidth_mbps: 1.0e+12", 15, "links.pairs[0].bandwidth_mbps",
     ["<= 1,000,000,000"]),
    ("until: 10", "until: 1.0e+300", 18, "faults.outages[0].until", ["<= 10,000,000,000"]),
    ("  outages:", "  overrun_factor: 1.0e+308\n  outages:", 17, "faults.overrun_factor",
     ["<= 1,000"]),
    ("  outages:", "  max_attempts: 1000000000\n  outages:", 17, "faults.max_attempts",
     ["<= 1,000"]),
    ("node: s2/g", "node: s2/h", 18, "faults.outages[0].node", ["unknown node 's2/h'"]),
    ("node: s2/g", "site: s9", 18, "faults.outages[0].site", ["unknown site 's9'"]),
    ("node: s2/g", "node: s2/g, site: s2", 18, "faults.outages[0]", ["both node and site"]),
    ("until: 10", "until: 5", 18, "faults.outages[0].until", ["> 5"]),
    ("  outages:", "  task_failure_prob: 1\n  outages:", 17, "faults.task_failure_prob",
     ["< 1"]),
    ("  outages:", "  fail: 1\n  outages:", 17, "faults.fail", ["unknown key", "max_attempts"]),
])
def test_cluster_link_fault_errors(tmp_path, old, new, line, field, words):
    assert old in LINKS
    p = tmp_path / "bad.yaml"
    check(fails(read_cluster, p, LINKS.replace(old, new)), p, line, field, *words)


def test_power_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    text = GOOD.replace("  - name: s2\n", "  - name: s2\n    power: {node_idle_w: 500}\n")
    check(fails(read_cluster, p, text), p, 6, "sites[1].power.node_idle_w", "above")
    text = GOOD.replace("  - name: s2\n", "  - name: s2\n    power: {pue: 0.9}\n")
    check(fails(read_cluster, p, text), p, 6, "sites[1].power.pue", ">= 1")
    text = GOOD.replace("  - name: s2\n", "  - name: s2\n    power: {node_peak_w: 1.0e+308}\n")
    check(fails(read_cluster, p, text), p, 6, "sites[1].power.node_peak_w", "<= 10,000,000")


def test_duplicate_node_names(tmp_path):
    p = tmp_path / "bad.yaml"
    text = GOOD.replace("      - {name: n, cpu: 4, mem: 1024}\n",
                        "      - {name: n, cpu: 4, mem: 1024, count: 2}\n"
                        "      - {name: n-1, cpu: 4, mem: 1024}\n")
    check(fails(read_cluster, p, text), p, 5, "sites[0].nodes[1].name", "'s1/n-1' already used")


def test_a_cluster_has_at_most_max_nodes_in_all(tmp_path, monkeypatch):
    # each count <= 100,000, but a 2 KB file of 20 such entries built 2,000,000 nodes (11 s,
    # 370 MiB to read; 200 entries would not fit in memory): the total is bounded too
    from agora.agents.limits import MAX_NODES
    from agora.agents.workloads import native_cluster

    assert MAX_NODES == 1_000_000
    monkeypatch.setattr(native_cluster, "MAX_NODES", 4)
    p = tmp_path / "bad.yaml"
    text = GOOD.replace("{name: n, cpu: 4, mem: 1024}", "{name: n, cpu: 4, mem: 1024, count: 4}")
    check(fails(read_cluster, p, text), p, 7, "sites[1].nodes[0].count",
          "1 more nodes make 5 in the cluster", "at most 4 nodes in all sites together")
    p.write_text(GOOD)
    assert len(read_cluster(p).nodes) == 2
