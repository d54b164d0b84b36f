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


def agent_infos(actors, timeout_s: float) -> list[dict]:
    """The ``info()`` of every agent of ``actors`` that answers within ``timeout_s``. One
    that cannot answer (its Ray node dead: Ray holds it pending) is left out, not waited
    for: asked all together, one such agent failed every ask (a probe)."""
    import ray

    refs = [a.info.remote() for a in list(actors)]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    out = []
    for ref in ready:
        try:
            out.append(ray.get(ref))
        except Exception:  # noqa: BLE001 - an agent that died meanwhile: the next ask
            pass
    return out


def system_targets(system, metrics_host: str, timeout_s: float = 60.0,
                   old: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The metrics endpoints of a running ``deploy.launch.System``: its replicas' and its
    agents' that answer within ``timeout_s`` (empty where metrics are off).
    ``metrics_host``: the interface the agents' endpoints listen on (a wildcard: scrape them
    at their node's address). ``old``: the replicas' targets of the last read -- given, a
    replica's port is not waited for (one restarting keeps its old target)."""
    group = system.group
    replicas = []
    serving = [i for i in range(group.n) if group.config.metrics_port_of(i) is not None]
    for k, i in enumerate(serving):
        try:
            port = group.metrics_port(i, timeout=30.0 if old is None else 0.0)
        except AssertionError:
            if old is None or k >= len(old):
                raise
            replicas.append(old[k])
            continue
        replicas.append(f"{group.config.metrics_host_of(i)}:{port}")
    agents = {}
    for info in agent_infos(system.actors, timeout_s):
        if info.get("metrics_port"):
            host = (info["address"].rsplit(":", 1)[0] if metrics_host in ("0.0.0.0", "::")
                    else metrics_host)
            agents[info["site"]] = f"{host}:{info['metrics_port']}"
    return replicas, agents


class ScrapeTargets:
    """Keeps ``<out>/prometheus/targets.json`` current while the system runs: at most every
    ``every_s`` (``poll``), the endpoints read again -- an agent that Ray restarted, or one
    started late (``system_watch``), listens on a new port, as does a replica started again;
    the file was written once at start and went stale. An agent that does not answer within
    ``timeout_s`` keeps its last target. ``replicas`` and ``agents`` are updated in place
    (the web view scrapes the same objects)."""

    def __init__(self, system, metrics_host: str, out: Path, replicas: list[str],
                 agents: dict[str, str], every_s: float = 15.0, timeout_s: float = 1.0,
                 read=None) -> None:
        self.out, self.replicas, self.agents = out, replicas, agents
        self.every_s = every_s
        self.read = read or (lambda: system_targets(system, metrics_host, timeout_s,
                                                    old=list(self.replicas)))
        self._next = time.monotonic() + every_s

    def poll(self) -> bool:
        """Read and rewrite the targets if it is time and they changed; whether they did."""
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.every_s
        try:
            replicas, agents = self.read()
        except Exception:  # noqa: BLE001 - Ray or a replica busy: the next poll
            return False
        agents = {**self.agents, **agents}
        if replicas == self.replicas and agents == self.agents:
            return False
        write_prometheus_files(self.out, replicas, agents)
        self.replicas[:] = replicas
        self.agents.clear()
        self.agents.update(agents)
        return True


class StepFailureWatch:
    """Tells the operator when a site agent's steps fail (an agent keeps running through a
    failed step, so without this a site that cannot act is silent and the run only stalls):
    ``poll()``, at most every ``every_s``, asks every agent for its ``step_failures`` and
    ``last_step_failure`` and returns one line per agent whose count grew since the last
    poll. An agent that does not answer in ``timeout_s`` is asked again at the next poll
    (one pending agent made every poll return nothing: a site's failing steps went unsaid
    while another site's node was dead)."""

    def __init__(self, actors, every_s: float = 10.0, timeout_s: float = 10.0) -> None:
        self.actors = actors
        """the system's own list: an agent started later (``system_watch``) is asked too"""
        self.every_s, self.timeout_s = every_s, timeout_s
        self.seen: dict[str, int] = {}
        self._next = time.monotonic() + every_s

    def poll(self) -> list[str]:
        if time.monotonic() < self._next:
            return []
        self._next = time.monotonic() + self.every_s
        try:
            infos = agent_infos(self.actors, self.timeout_s)
        except Exception:  # noqa: BLE001 - Ray busy or away: ask again later
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
