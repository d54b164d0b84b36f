"""Cross-site routing with data movement: run a task where it would *finish* first, counting
the transfer of its inputs, instead of on the first site with room.

A task's inputs are at its job's origin; run elsewhere, an instance first moves ``data_mb``
over the link (``Link.transfer_s``) while holding its resources (``sim.engine``). The
baselines that only order work (``ordering``) send an instance to the nearest site with room
the moment its origin is full: on slow links with big inputs that can cost more than waiting.

**SRPT-EFT** keeps job-level SRPT's order (``ordering.srpt_scan``) and chooses the site by
earliest finish time, the site rule of HEFT (Topcuoglu, Hariri and Wu, IEEE TPDS 13(3),
2002), with the waiting alternative of delay scheduling (Zaharia et al., EuroSys 2010: a task
waits a little for a slot where its data is). Per instance, when the origin has no room now:

- the origin's wait is estimated from when its running instances end: the origin frees their
  resource (cpu, or gpu for gpu work) at their end times, a fluid pool that the instances
  already held back for it in this decision use first;
- the instance goes to the site with room and the cheapest transfer if that transfer is
  shorter than the origin's wait (it finishes sooner there: run times do not depend on the
  site), else it waits for the origin (nothing else is done with it this decision).

An origin that could never hold the task, or has nothing running that would free room, is
never waited for (the rule stays work-conserving there). The estimate ignores memory and
fragmentation: a wait it underestimates costs only a later decision (the next end at the
origin decides again). It reads the origin's end times; in Agora these follow from the
committed ledger (what runs where since when) and the stated durations, so a site could
compute them without a message -- except where runs overrun or fail.

**SRPT-delay:τ** (``srpt-delay:120``) is the same rule knowing nothing of when the origin
frees: every origin that holds running work is taken to free in τ seconds (delay
scheduling's fixed wait; τ >= 0 seconds, tuned per scenario like the other families).
``bench/routing.py`` sets the two against each other and against the greedy baselines.
"""

from __future__ import annotations

import numpy as np

from agora.agents.baselines.ordering import srpt_scan
from agora.agents.ledger import TaskEntry
from agora.agents.sim.engine import Decision, Simulator


class OriginWait:
    """The origins' release profiles within one decision: when each origin's running
    instances end and what they free, cumulated, per resource (cpu millicores, milli-gpus)."""

    def __init__(self, sim: Simulator, now: float) -> None:
        self.sim = sim
        self.now = now
        self._profiles: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}
        self.held: dict[tuple[int, bool], int] = {}

    def _profile(self, site: int, gpu: bool) -> tuple[np.ndarray, np.ndarray]:
        key = (site, gpu)
        p = self._profiles.get(key)
        if p is None:
            cap = self.sim.cap
            sl = cap.site_slice[site]
            alive = cap.alive[sl]
            free = int(((cap.free_gpu if gpu else cap.free_cpu)[sl] * alive).sum())
            ends: list[tuple[float, int]] = []
            for node in range(sl.start, sl.stop):
                for a in self.sim.node_running[node]:
                    d = a.task.demand
                    ends.append((a.end, d.gpu if gpu else d.cpu))
            ends.sort()
            times = np.array([e for e, _ in ends], dtype=float)
            freed = free + np.cumsum(np.array([c for _, c in ends], dtype=np.int64))
            p = self._profiles[key] = (times, freed)
        return p

    def seconds(self, site: int, t: TaskEntry) -> float:
        """Estimated seconds until ``site`` has room for one more instance of ``t`` behind
        those already held for it; inf when nothing running there would make room."""
        gpu = t.demand.gpu > 0
        times, freed = self._profile(site, gpu)
        need = self.held.get((site, gpu), 0) + (t.demand.gpu if gpu else t.demand.cpu)
        i = int(np.searchsorted(freed, need, side="left"))
        return float(times[i] - self.now) if i < len(times) else float("inf")

    def hold(self, site: int, t: TaskEntry, n: int) -> None:
        """``n`` instances of ``t`` wait for ``site``: later ones queue behind them."""
        gpu = t.demand.gpu > 0
        k = (site, gpu)
        self.held[k] = self.held.get(k, 0) + n * (t.demand.gpu if gpu else t.demand.cpu)


def cheapest_transfer(sim: Simulator, t: TaskEntry, sites: np.ndarray) -> tuple[float, int]:
    """(seconds, site): the site among ``sites`` (a mask; not the origin) to which moving
    ``t``'s inputs is quickest, nearest first among equals; (inf, -1) when there is none."""
    origin = t.job.origin
    names = sim.cluster.site_names
    best = (float("inf"), -1)
    for s in sim.nearest[origin]:
        if s != origin and sites[s]:
            seconds = sim.cluster.link(names[origin], names[s]).transfer_s(t.task.data_mb)
            if seconds < best[0]:
                best = (seconds, s)
    return best


class FixedWait(OriginWait):
    """``OriginWait`` without the end times: ``wait_s`` for any origin that runs something."""

    def __init__(self, sim: Simulator, now: float, wait_s: float) -> None:
        super().__init__(sim, now)
        self.wait_s = wait_s

    def seconds(self, site: int, t: TaskEntry) -> float:
        times, _ = self._profile(site, t.demand.gpu > 0)
        return self.wait_s if len(times) else float("inf")


class EarliestFinish:
    name = "srpt-eft"

    def reset(self, sim: Simulator) -> None:
        self.sim = sim

    def origin_wait(self, now: float) -> OriginWait:
        return OriginWait(self.sim, now)

    def schedule(self, ctx: Decision) -> None:
        sim = self.sim
        wait = self.origin_wait(ctx.now)
        for t in ctx.fitting(srpt_scan(ctx)):
            origin = t.job.origin
            if ctx.feasible_sites(t)[origin]:
                ctx.assign(t, origin, t.open)
            can_wait = sim.cap.static_sites(t.demand)[origin] and sim.cap.alive[
                sim.cap.site_slice[origin]].any()
            while t.open:
                sites = ctx.feasible_sites(t)
                if sites is None:
                    break
                transfer, site = cheapest_transfer(sim, t, sites)
                if site < 0:
                    break
                if can_wait and transfer >= wait.seconds(origin, t):
                    wait.hold(origin, t, t.open)  # the rest of this task waits too
                    break
                if not ctx.assign(t, site, 1):
                    break


class DelayedRouting(EarliestFinish):
    family = "srpt-delay"

    def __init__(self, wait_s: float) -> None:
        if not 0 <= wait_s < float("inf"):
            raise ValueError(f"policy srpt-delay:{wait_s:g}: the wait must be a number of "
                             f"seconds >= 0, e.g. srpt-delay:120")
        self.wait_s = float(wait_s)
        self.name = f"srpt-delay:{wait_s:g}"

    def origin_wait(self, now: float) -> OriginWait:
        return FixedWait(self.sim, now, self.wait_s)
