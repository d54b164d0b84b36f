"""The cluster engine's round loop: the world's clock drives rounds of the site actors, the
PBFT coordinator clears them, and the world starts exactly what the coordinator committed.

At each decision point of the world (``agents.cluster.world.ClusterWorld``):

1. jobs that arrived are submitted to the coordinator (the operator's client);
2. rounds, as in the simulation engine's ``LearnedPolicy.schedule``, until a round places
   nothing: each site actor gets its own row of the round's observation (plus the
   instances of its site that ended, which it reports itself) -- phase ``prepare``
   (trigger, peer codes over gRPC) for every site, then phase ``bid``, which returns the
   site's *signed* part of the round (its ended instances and its bids) -- and the round
   goes to the coordinator as one ordered command (``Round``: every replica checks every
   site's signature, applies all ended instances, then all bids, then clears);
3. the world starts the committed allocations on the nodes the coordinator chose.

One PBFT request per round instead of one per site plus a tick: the sites' parts are
carried, not re-signed, so the driver can drop a part (the site could send its own
``BidBatch``) but cannot forge or alter one.

**Decision latency** of an allocation: wall time from the start of the round that placed
it (its task was open and in the agents' window) to the commit of the round, answered by
f+1 replicas -- at which point it is also queryable.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict

import numpy as np
import ray

from agents.cluster.brain import SiteObs
from agents.cluster.world import ClusterWorld, WorldMismatch
from agents.learn.features import FeatureBuilder, candidates
from protos.agora.v1 import coordinator_pb2 as pb


class _NoDecision:
    """A decision point with nothing open (``finish``): only reports go out."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.pool = ()


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` blocks for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def merge_runs(ended: list[tuple[int, str, str, int, str]]) -> dict[int, list]:
    """Per site: (job, task, begin, end, outcome) with consecutive instances merged."""
    out: dict[int, list] = defaultdict(list)
    for site, job, task, inst, outcome in sorted(ended):
        runs = out[site]
        if runs and runs[-1][:2] == (job, task) and runs[-1][3] == inst and \
                runs[-1][4] == outcome:
            j, t, b, _, o = runs[-1]
            runs[-1] = (j, t, b, inst + 1, o)
        else:
            runs.append((job, task, inst, inst + 1, outcome))
    return out


class ClusterPolicy:
    """The simulator's ``Policy`` seam, answered by the distributed system."""

    name = "cluster"

    def __init__(self, actors: list, operator, loop: LoopThread, k: int, *,
                 call_timeout_s: float = 120.0, on_round=None) -> None:
        self.actors = actors
        self.operator = operator
        self.loop = loop
        self.k = k
        self.call_timeout_s = call_timeout_s
        self.on_round = on_round
        self.round = 0
        self.latencies: list[float] = []
        """seconds, one per committed allocation row"""
        self.phases: list[tuple[float, float, float]] = []
        """per committed round: seconds in prepare (reports, codes), bid, tick"""
        self.stats = defaultdict(int)
        self.actor_prepare_s: list[float] = []
        """per round: the slowest site's own time in ``prepare`` (the rest of the phase is
        Ray's call and return)"""
        self.unreported: dict[int, list] = {}
        """site -> ended instances (merged runs) its next signed part must report"""

    def reset(self, sim: ClusterWorld) -> None:
        self.sim = sim
        self.builder = FeatureBuilder(sim.cluster, self.k)
        self.t0 = sim.jobs[0].job.arrival if sim.jobs else sim.now
        self.round = int(self.loop.run(self.operator.status_round()))

    def _get(self, refs: list) -> list:
        return ray.get(refs, timeout=self.call_timeout_s)

    def _submit_arrivals(self) -> None:
        jobs = [js.job for js in self.sim.take_arrived()]
        for i in range(0, len(jobs), 1000):
            res = self.loop.run(self.operator.client.submit_jobs(jobs[i:i + 1000]))
            if res.rejections:
                raise WorldMismatch(f"the coordinator refused jobs the world admitted: "
                                    f"{res.rejections[0].field}: {res.rejections[0].reason}")
            self.stats["jobs_submitted"] += res.accepted

    def schedule(self, ctx) -> None:
        self._submit_arrivals()
        self._add_ended()
        n_sites = len(self.actors)
        while True:
            window = candidates(ctx, self.k)
            if not window and not self.unreported:
                return
            rv = self.builder.view(self.sim, window, self.t0) if window else None
            t_round = time.perf_counter()
            reports, self.unreported = self.unreported, {}
            obs = [self._obs(rv, i, reports.get(i, [])) for i in range(n_sites)]
            prep = self._get([a.prepare.remote(o) for a, o in zip(self.actors, obs)])
            t_prep = time.perf_counter()
            self.actor_prepare_s.append(max(p["prepare_s"] for p in prep))
            active = [p["active"] for p in prep]
            self.stats["codes_sent"] += sum(p["sent"] for p in prep)
            self.stats["codes_suppressed"] += sum(a and not p["sent"] for a, p in
                                                  zip(active, prep))
            self.stats["code_bytes"] += sum(p["wire_bytes"] * p["acked"] for p in prep)
            asked = [i for i in range(n_sites) if active[i] or reports.get(i)]
            parts = self._get([self.actors[i].bid.remote(self.round) for i in asked])
            for i, part in zip(asked, parts):
                if part.get("lost_observation") and reports.get(i):
                    self.unreported.setdefault(i, []).extend(reports[i])  # next round
            signed = [pb.SignedSiteRound.FromString(p["signed"]) for p in parts
                      if p["signed"] is not None]
            self.stats["bids"] += sum(p["bids"] for p in parts)
            if not signed:
                return
            t_bid = time.perf_counter()
            res = self.loop.run(self.operator.client.clear_round(self.round, ctx.now, signed))
            if res.kind != "round" or res.round != self.round + 1:
                raise WorldMismatch(f"round {self.round} was not cleared: "
                                    f"{[r.reason for r in res.rejections[:3]]}")
            t_commit = time.perf_counter()
            self.round = int(res.round)
            self.stats["rounds"] += 1
            self.stats["round_rejections"] += len(res.rejections)
            for a in res.allocations:
                self.sim.start_allocated(a.job_id, a.task_id, a.instance_begin,
                                         a.instance_end, a.node,
                                         self.sim.cluster.site_names.index(a.site))
                self.latencies.append(t_commit - t_round)
            self.phases.append((t_prep - t_round, t_bid - t_prep, t_commit - t_bid))
            self.stats["allocations"] += len(res.allocations)
            if self.on_round is not None:
                self.on_round(self)
            if not res.allocations:
                return

    def _add_ended(self) -> None:
        for site, runs in merge_runs(self.sim.take_ended()).items():
            self.unreported.setdefault(site, []).extend(runs)

    def finish(self) -> None:
        """After the world's last event: the sites report the instances that ended since
        the last decision (no decision follows them), so the coordinator ends the episode
        holding no stale reservation."""
        self._add_ended()
        for _ in range(3):          # a site restarted mid-report reports again
            if not self.unreported:
                return
            self.schedule(_NoDecision(self.sim.now))
        if self.unreported:
            raise WorldMismatch(f"ended instances never reported: {self.unreported}")

    def _obs(self, rv, i: int, completions: list) -> SiteObs:
        cap = self.sim.cap
        sl = cap.site_slice[i]
        alive = cap.alive[sl]
        free = (int(cap.free_cpu[sl][alive].sum()), int(cap.free_mem[sl][alive].sum()),
                int(cap.free_gpu[sl][alive].sum()))
        if rv is None:
            k = self.k
            return SiteObs(self.round, np.zeros((k, 1), np.float32), np.zeros(k, bool),
                           np.zeros(1, np.float32), np.zeros(1, np.float32), [], free,
                           completions)
        tasks = [(t.job.job.id, t.task.id, t.open,
                  (t.demand.cpu, t.demand.mem, t.demand.gpu)) for t in rv.window]
        return SiteObs(self.round, rv.slots[i], rv.mask[i], rv.own[i], rv.local[i], tasks,
                       free, completions)


class Operator:
    """The operator's coordinator client (submits jobs, ticks rounds) on a loop thread."""

    def __init__(self, client) -> None:
        self.client = client

    async def status_round(self) -> int:
        """The schedule's current round, as f+1 replicas report it."""
        from coordinator.client import agreed_status
        return int(agreed_status(await self.client.status(), self.client.f).get("round", 0))
