"""Where every site agent can be reached now: a Ray named actor.

A site agent registers ``(address, epoch)`` when it starts, again after every restart (a new
process listens on a new port, under a new epoch), and every few seconds besides -- so a
restarted registry, which starts empty, has every peer back within that period. Peers look
addresses up here when a stream breaks. The registry holds no scheduling state.
"""

from __future__ import annotations

import ray

REGISTRY_NAME = "agora-registry"


@ray.remote(num_cpus=0, max_restarts=-1)
class Registry:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, int, dict]] = {}
        self.epochs: dict[str, set[int]] = {}

    def register(self, site: str, address: str, epoch: int, info: dict | None = None) -> int:
        """Record (or refresh) a site's address; returns how many incarnations of the site
        this registry has seen."""
        self.entries[site] = (address, epoch, dict(info or {}))
        self.epochs.setdefault(site, set()).add(epoch)
        return len(self.epochs[site])

    def lookup(self, site: str) -> str | None:
        e = self.entries.get(site)
        return e[0] if e else None

    def restarts(self) -> int:
        """Incarnations beyond each site's first: agent restarts seen."""
        return sum(len(e) - 1 for e in self.epochs.values())

    def all(self) -> dict[str, dict]:
        return {s: {"address": a, "epoch": ep, **info}
                for s, (a, ep, info) in sorted(self.entries.items())}


def beside_caller():
    """Affinity to the caller's Ray node (``agora up``'s driver: the head node), for the small
    shared actors: left to Ray, one landed on a site's worker node and died with it (a
    probe). Hard: Ray's soft affinity put them on the other node of a two-node test cluster
    all the same; the caller does not outlive its node either."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def get_or_create(namespace: str | None = None):
    return Registry.options(name=REGISTRY_NAME, get_if_exists=True, lifetime=None,
                            namespace=namespace, scheduling_strategy=beside_caller()).remote()
