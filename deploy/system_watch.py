"""What ``agora up``'s running system watches while it serves (``launch.System``; one
daemon thread): replica processes that exited are started again, agents that came back
with new keys are admitted, and on a joined Ray cluster the agent of a site that had no
live Ray node at start is started once one carries the site's resource."""

from __future__ import annotations

import logging
import time

from agora.deploy.site_admission import admit_sites

log = logging.getLogger("agora.launch")


class RepeatedWarnings:
    """A warning per topic that recurs (a late agent that fails to start, every 2 s) is
    logged the first time, then at most every ``every_s`` with how often it recurred; a
    success (``clear``) lets the next failure be logged at once. Before, a late agent's
    failure filled ``agora.log`` with the same line every 2 s until it started."""

    def __init__(self, every_s: float = 60.0, clock=time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self._seen: dict[str, list] = {}
        """topic -> [when last logged, failures not logged since]"""

    def warn(self, topic: str, text: str) -> None:
        now, seen = self.clock(), self._seen.get(topic)
        if seen is None:
            self._seen[topic] = [now, 0]
            log.warning("%s", text)
        elif now - seen[0] >= self.every_s:
            log.warning("%s (still failing: %d more times in the last %.0f s)", text,
                        seen[1] + 1, now - seen[0])
            seen[:] = [now, 0]
        else:
            seen[1] += 1

    def clear(self, topic: str) -> None:
        self._seen.pop(topic, None)


def watch(system, period_s: float = 0.5, backoff_s: float = 5.0,
          admit_every_s: float = 5.0, place_every_s: float = 2.0,
          warnings: RepeatedWarnings | None = None) -> None:
    """Until ``system.stopping``: start again any replica process that exited, ``backoff_s``
    after it was seen dead (a crash loop is not restarted in a tight loop; meanwhile the
    other 2f+1 replicas go on, changing view if it was the primary); every
    ``admit_every_s``, admit the key of an agent that came back with a new one
    (``admit_sites``); every ``place_every_s``, start the waiting agents that can run now
    (``start_waiting``). A failure that recurs is logged as ``warnings`` allows."""
    g = system.group
    warnings = warnings or RepeatedWarnings()
    dead_since: dict[int, float] = {}
    next_admit = time.monotonic() + admit_every_s
    next_place = time.monotonic() + place_every_s
    while not system.stopping.wait(period_s):
        if system.waiting and time.monotonic() >= next_place:
            try:
                if start_waiting(system):
                    next_admit = time.monotonic()        # its key: at once
                warnings.clear("place")
            except Exception as e:  # noqa: BLE001 - the GCS may be away: next time
                warnings.warn("place", f"starting a waiting site's agent: {e}")
            next_place = time.monotonic() + place_every_s
        if time.monotonic() >= next_admit:
            try:
                admit_sites(system, timeout_s=2.0)
                warnings.clear("admit")
            except Exception as e:  # noqa: BLE001 - the group may be changing view: next time
                warnings.warn("admit", f"admitting agents' keys: {e}")
            next_admit = time.monotonic() + admit_every_s
        for i, p in list(g.procs.items()):
            if p.poll() is None or system.stopping.is_set():
                dead_since.pop(i, None)
                continue
            t = dead_since.setdefault(i, time.monotonic())
            if time.monotonic() - t >= backoff_s:
                log.warning("replica %d exited (%s); starting it again", i, p.returncode)
                try:
                    g.start(i)
                except Exception as e:  # noqa: BLE001 - fork refused, a full disk: it
                    # ended this thread for good, and no replica was started again after
                    warnings.warn(f"replica {i}", f"starting replica {i} again: {e}")
                    dead_since[i] = time.monotonic()        # once more after backoff_s
                    continue
                warnings.clear(f"replica {i}")
                dead_since.pop(i, None)
                system.replica_restarts += 1


def start_waiting(system, resources=None) -> list[str]:
    """Start the agent of each waiting site (``System.waiting``: a restart on a joined Ray
    cluster found no live Ray node carrying its resource) that a live Ray node now carries;
    returns those sites. Before, such a site stayed without an agent -- its work placed
    elsewhere, its nodes idle -- until someone ran ``agora up`` again (a probe).
    ``resources``: the resources live Ray nodes carry (default: Ray's view)."""
    import ray

    from agora.deploy.ray_runtime import sites_unplaced

    have = ray.cluster_resources() if resources is None else resources
    still = set(sites_unplaced(have, system.waiting))
    ready = [s for s in system.waiting if s not in still]
    if not ready:
        return []
    # the operator may have removed a site while it waited: no agent for it (it would act
    # with a revoked key)
    removed = {e.site for e in system.loop.run(system.operator.ledger(), timeout=30).sites
               if e.removed}
    started = []
    for s in ready:
        if system.stopping.is_set():
            break
        if s in removed:
            system.waiting.remove(s)
            log.warning("site %s: a live Ray node carries its resource now, but the operator "
                        "removed the site: its agent is not started", s)
            continue
        actor, ref = system.make_agent(s)
        system.specs.append(ref)
        system.fresh.add(s)
        system.sites.append(s)
        system.actors.append(actor)
        system.waiting.remove(s)
        started.append(s)
        log.warning("site %s: a live Ray node carries its resource now: its agent starts",
                    s)
    return started
