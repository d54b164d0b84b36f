"""What a running Agora tells the tools people already use: a Prometheus scrape-target file
(file_sd format) listing every replica's and every site agent's metrics endpoint, a
``prometheus.yml`` that reads it, and the address of Ray's dashboard. ``agora up`` writes
them under ``<out>/prometheus/`` once the system is up; the Grafana dashboard over these
metrics is ``deploy/grafana/agora-dashboard.json``.

    prometheus --config.file=out/agora/prometheus/prometheus.yml

And what it tells the operator directly: ``StepFailureWatch``, a site agent whose steps fail.
"""

from __future__ import annotations

import json
import time
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


class StepFailureWatch:
    """Tells the operator when a site agent's steps fail (an agent keeps running through a
    failed step, so without this a site that cannot act is silent and the run only stalls):
    ``poll()``, at most every ``every_s``, asks every agent for its ``step_failures`` and
    ``last_step_failure`` and returns one line per agent whose count grew since the last
    poll. A poll that cannot reach the agents in ``timeout_s`` returns nothing."""

    def __init__(self, actors, every_s: float = 10.0, timeout_s: float = 10.0) -> None:
        self.actors = actors
        """the system's own list: an agent started later (``system_watch``) is asked too"""
        self.every_s, self.timeout_s = every_s, timeout_s
        self.seen: dict[str, int] = {}
        self._next = time.monotonic() + every_s

    def poll(self) -> list[str]:
        import ray

        if time.monotonic() < self._next:
            return []
        self._next = time.monotonic() + self.every_s
        try:
            infos = ray.get([a.info.remote() for a in self.actors], timeout=self.timeout_s)
        except Exception:  # noqa: BLE001 - busy or restarting agents: ask again later
            return []
        lines = []
        for i in infos:
            n = int(i.get("step_failures", 0))
            if n > self.seen.get(i["site"], 0):
                lines.append(f"site {i['site']}: its agent's step failed {n} time"
                             f"{'s' if n > 1 else ''} (last: {i.get('last_step_failure')}); "
                             f"it keeps running but may not act -- the agent's log is in "
                             f"Ray's worker logs (pid {i.get('pid')})")
            self.seen[i["site"]] = n
        return lines
