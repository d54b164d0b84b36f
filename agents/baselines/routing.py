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

- the origin's wait is estimated from when its running instances end: on the origin's live
  nodes that could hold the task, they free their resource (cpu, or gpu for gpu work) at
  their end times, a fluid pool that the instances already held back for it in this decision
  use first;
- the instance goes to the site with room and the cheapest transfer if that transfer is
  shorter than the origin's wait (it finishes sooner there: run times do not depend on the
  site), else it waits for the origin (nothing else is done with it this decision).

An origin with no live node that could hold the task, or nothing running on one, is never
waited for (the rule stays work-conserving there), and nothing waits while nothing runs
that could end. The estimate ignores memory and fragmentation: a wait it underestimates
is found again at the next end there. It reads the origin's end times; in Agora these
follow from the committed ledger (what runs where since when) and the stated durations, so
a site could compute them without a message -- except where runs overrun or fail.

**SRPT-delay:τ** (``srpt-delay:120``) is the same rule knowing nothing of when the origin
frees: every origin that holds running work is taken to free in τ seconds (delay
scheduling's fixed wait; τ >= 0 seconds, tuned per scenario like the other families; it
waits when the transfer takes τ s or more, so ``srpt-delay:0`` always waits for a busy
origin -- it is not plain SRPT). ``bench/routing.py`` sets the two against each other and
against the greedy baselines.
"""

from __future__ import annotations

import numpy as np

from agora.agents.baselines.ordering import srpt_scan
from agora.agents.ledger import TaskEntry
from agora.agents.sim.engine import Decision, Simulator


class OriginWait:
    """The origins' release profiles within one decision, per origin and demand shape: when
    the running instances on the origin's live nodes that could hold the shape end, and what
    they free of its resource (cpu millicores, or milli-gpus for gpu work), cumulated."""

    def __init__(self, sim: Simulator, now: float) -> None:
        self.sim = sim
        self.now = now
        self._profiles: dict[tuple[int, tuple], tuple[np.ndarray, np.ndarray]] = {}
        self.held: dict[tuple[int, bool], int] = {}
        """what this decision held back for each origin, per resource: queued ahead"""

    def _profile(self, site: int, t: TaskEntry) -> tuple[np.ndarray, np.ndarray]:
        key = (site, t.shape)
        p = self._profiles.get(key)
        if p is None:
            cap = self.sim.cap
            sl = cap.site_slice[site]
            ok = (cap.static_mask(t.demand)[sl] & cap.alive[sl]).tolist()
            gpu = t.demand.gpu > 0
            free_now = (cap.free_gpu if gpu else cap.free_cpu)[sl].tolist()
            free = sum(f for f, use in zip(free_now, ok) if use)
            ends: list[tuple[float, int]] = []
            for node, use in zip(range(sl.start, sl.stop), ok):
                if use:
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
        those already held for it; inf when nothing running there, on a live node that could
        hold ``t``, would make room."""
        gpu = t.demand.gpu > 0
        times, freed = self._profile(site, t)
        need = self.held.get((site, gpu), 0) + (t.demand.gpu if gpu else t.demand.cpu)
        i = int(np.searchsorted(freed, need, side="left"))
        return float(times[i] - self.now) if i < len(times) else float("inf")

    def hold(self, site: int, t: TaskEntry, n: int) -> None:
        """``n`` instances of ``t`` wait for ``site``: later ones queue behind them."""
        gpu = t.demand.gpu > 0
        k = (site, gpu)
        self.held[k] = self.held.get(k, 0) + n * (t.demand.gpu if gpu else t.demand.cpu)


class FixedWait(OriginWait):
    """``OriginWait`` without the end times: ``wait_s`` for any origin that runs something
    on a live node that could hold the task."""

    def __init__(self, sim: Simulator, now: float, wait_s: float) -> None:
        super().__init__(sim, now)
        self.wait_s = wait_s

    def seconds(self, site: int, t: TaskEntry) -> float:
        times, _ = self._profile(site, t)
        return self.wait_s if len(times) else float("inf")


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
            while t.open:
                sites = ctx.feasible_sites(t)
                if sites is None:
                    break
                transfer, site = cheapest_transfer(sim, t, sites)
                if site < 0:
                    break
                if transfer >= wait.seconds(origin, t):
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
