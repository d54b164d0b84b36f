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
