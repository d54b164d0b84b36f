"""Where every site agent can be reached now: a Ray named actor.

A site agent registers ``(address, epoch)`` when it starts and again after every restart
(a new process listens on a new port); peers and the launcher look addresses up here when a
stream breaks. The registry holds no scheduling state: losing it loses nothing that the
agents do not re-register at their next round.
"""

from __future__ import annotations

import ray

REGISTRY_NAME = "agora-registry"


@ray.remote(num_cpus=0, max_restarts=-1)
class Registry:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, int, dict]] = {}
        self.registrations = 0

    def register(self, site: str, address: str, epoch: int, info: dict | None = None) -> int:
        self.entries[site] = (address, epoch, dict(info or {}))
        self.registrations += 1
        return self.registrations

    def lookup(self, site: str) -> str | None:
        e = self.entries.get(site)
        return e[0] if e else None

    def restarts(self) -> int:
        """Registrations beyond each site's first: agent restarts seen."""
        return self.registrations - len(self.entries)

    def all(self) -> dict[str, dict]:
        return {s: {"address": a, "epoch": ep, **info}
                for s, (a, ep, info) in sorted(self.entries.items())}


def get_or_create(namespace: str | None = None):
    return Registry.options(name=REGISTRY_NAME, get_if_exists=True,
                            lifetime=None, namespace=namespace).remote()
