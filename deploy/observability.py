"""What a running Agora tells the tools people already use: a Prometheus scrape-target file
(file_sd format) listing every replica's and every site agent's metrics endpoint, a
``prometheus.yml`` that reads it, and the address of Ray's dashboard. ``agora up`` writes
them under ``<out>/prometheus/`` once the system is up; the Grafana dashboard over these
metrics is ``deploy/grafana/agora-dashboard.json``.

    prometheus --config.file=out/agora/prometheus/prometheus.yml
"""

from __future__ import annotations

import json
from pathlib import Path

from agora.coordinator.private_file import write_private

GRAFANA_DASHBOARD = Path(__file__).resolve().parent / "grafana" / "agora-dashboard.json"


def scrape_targets(replicas: list[str], agents: dict[str, str]) -> list[dict]:
    """file_sd groups: ``replicas`` as host:port; ``agents`` site -> host:port."""
    groups = []
    if replicas:
        groups.append({"targets": list(replicas), "labels": {"job": "agora-replicas"}})
    for site, target in sorted(agents.items()):
        groups.append({"targets": [target], "labels": {"job": "agora-agents", "site": site}})
    return groups


def write_prometheus_files(out: Path, replicas: list[str], agents: dict[str, str]) -> Path:
    """``<out>/prometheus/targets.json`` and a ``prometheus.yml`` that reads it; returns the
    folder. Written atomically (Prometheus re-reads the targets file when it changes)."""
    folder = Path(out) / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    write_private(folder / "targets.json",
                  json.dumps(scrape_targets(replicas, agents), indent=1) + "\n")
    (folder / "prometheus.yml").write_text(
        "# written by agora up: scrape every Agora replica and site agent\n"
        "global:\n  scrape_interval: 5s\n"
        "scrape_configs:\n"
        "  - job_name: agora\n"
        "    file_sd_configs:\n"
        f"      - files: ['{folder / 'targets.json'}']\n")
    return folder


def system_targets(system, metrics_host: str) -> tuple[list[str], dict[str, str]]:
    """The metrics endpoints of a running ``deploy.launch.System``: its replicas' and its
    agents' (empty where metrics are off). ``metrics_host``: the interface the agents'
    endpoints listen on (a wildcard: scrape them at their node's address)."""
    import ray

    group = system.group
    replicas = []
    for i in range(group.n):
        if group.config.metrics_port_of(i) is None:
            continue
        replicas.append(f"{group.config.metrics_host_of(i)}:{group.metrics_port(i)}")
    agents = {}
    for info in ray.get([a.info.remote() for a in system.actors], timeout=60):
        if info.get("metrics_port"):
            host = (info["address"].rsplit(":", 1)[0] if metrics_host in ("0.0.0.0", "::")
                    else metrics_host)
            agents[info["site"]] = f"{host}:{info['metrics_port']}"
    return replicas, agents
