"""What Agora hands to Prometheus and Grafana (issue 15): a file_sd scrape-target file and a
prometheus.yml reading it; a Grafana dashboard whose every query names a series Agora
exports."""

from __future__ import annotations

import json
import re

import yaml

from agora.agents import metrics
from agora.deploy.observability import GRAFANA_DASHBOARD, scrape_targets, write_prometheus_files


def test_targets_file_is_file_sd_with_a_job_per_kind_and_a_site_label(tmp_path):
    folder = write_prometheus_files(tmp_path, ["127.0.0.1:9001", "127.0.0.1:9002"],
                                    {"east": "10.0.0.5:9100"})
    groups = json.loads((folder / "targets.json").read_text())
    assert groups == scrape_targets(["127.0.0.1:9001", "127.0.0.1:9002"],
                                    {"east": "10.0.0.5:9100"})
    assert groups[0] == {"targets": ["127.0.0.1:9001", "127.0.0.1:9002"],
                         "labels": {"job": "agora-replicas"}}
    assert groups[1] == {"targets": ["10.0.0.5:9100"],
                         "labels": {"job": "agora-agents", "site": "east"}}
    prom = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["file_sd_configs"][0]["files"] == [
        str(folder / "targets.json")]


def test_every_dashboard_query_names_an_exported_series():
    dash = json.loads(GRAFANA_DASHBOARD.read_text())
    exported = set()
    for family in metrics.REGISTRY.collect():
        for sample in family.samples or []:
            exported.add(sample.name)
        exported.add(family.name)
        exported.update({f"{family.name}_total", f"{family.name}_bucket"})
    used = set()
    for panel in dash["panels"]:
        for t in panel["targets"]:
            used.update(re.findall(r"\bagora_[a-z_]+", t["expr"]))
    assert used and used <= exported, used - exported
    assert len(dash["panels"]) >= 8 and dash["uid"] == "agora-overview"


def test_the_targets_file_follows_agents_and_replicas_that_moved(tmp_path):
    """The targets file was written once at start: an agent restarted by Ray, or started
    late (a site whose Ray node came back), listens on a new port, as a restarted replica
    does, and Prometheus kept scraping the dead ones. ``ScrapeTargets`` reads them again and
    rewrites the file when they changed; an agent that did not answer keeps its target.
    (The read is a fake here; ``system_targets`` asks the running system.)"""
    from agora.deploy.observability import ScrapeTargets

    replicas, agents = ["h:1", "h:2"], {"a": "n1:10", "b": "n2:20"}
    write_prometheus_files(tmp_path, replicas, agents)
    reads = iter([(["h:1", "h:2"], {"a": "n1:10", "b": "n2:20"}),        # nothing moved
                  (["h:1", "h:7"], {"a": "n1:11", "c": "n3:30"}),        # b did not answer
                  RuntimeError("Ray away")])

    def read():
        got = next(reads)
        if isinstance(got, Exception):
            raise got
        return got

    t = ScrapeTargets(None, "0.0.0.0", tmp_path, replicas, agents, every_s=0.0, read=read)
    view_agents = agents                      # the web view holds the same objects
    assert t.poll() is False
    assert t.poll() is True
    assert replicas == ["h:1", "h:7"]
    assert view_agents == {"a": "n1:11", "b": "n2:20", "c": "n3:30"}
    groups = json.loads((tmp_path / "prometheus" / "targets.json").read_text())
    assert groups[0]["targets"] == ["h:1", "h:7"]
    assert {g["labels"]["site"]: g["targets"] for g in groups[1:]} == {
        "a": ["n1:11"], "b": ["n2:20"], "c": ["n3:30"]}
    assert t.poll() is False                  # a failed read changes nothing
    slow = ScrapeTargets(None, "0.0.0.0", tmp_path, replicas, agents, every_s=3600.0,
                         read=lambda: 1 / 0)
    assert slow.poll() is False               # not yet time
