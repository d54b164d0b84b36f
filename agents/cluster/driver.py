"""The cluster engine's round loop: the world's clock drives rounds of the site actors, the
PBFT coordinator clears them, and the world starts exactly what the coordinator committed.

At each decision point of the world (``agents.cluster.world.ClusterWorld``):

1. jobs that arrived are submitted to the coordinator (the operator's client);
2. rounds, as in the simulation engine's ``LearnedPolicy.schedule``, until a round places
   nothing: each site actor gets its own row of the round's observation (plus, in the
   first round, its instances that ended, which it reports itself) -- phase ``prepare``
   (reports, trigger, peer codes over gRPC) for every site, then phase ``bid`` (bid batch
   to the coordinator) -- and the operator's ``Tick`` clears the round;
3. the world starts the committed allocations on the nodes the coordinator chose.

**Decision latency** of an allocation: wall time from the start of the round that placed
it (its task was open and in the agents' window) to the commit of the tick that allocated
it, answered by f+1 replicas -- at which point it is also queryable.
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
        self.round_s: list[float] = []
        self.phases: list[tuple[float, float, float]] = []
        """per committed round: seconds in prepare (reports, codes), bid, tick"""
        self.stats = defaultdict(int)

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
        ended = merge_runs(self.sim.take_ended())
        n_sites = len(self.actors)
        while True:
            window = candidates(ctx, self.k)
            if not window and not ended:
                return
            rv = self.builder.view(self.sim, window, self.t0) if window else None
            t_round = time.perf_counter()
            obs = [self._obs(rv, i, ended.get(i, [])) for i in range(n_sites)]
            ended = {}
            prep = self._get([a.prepare.remote(o) for a, o in zip(self.actors, obs)])
            t_prep = time.perf_counter()
            active = [p["active"] for p in prep]
            self.stats["codes_sent"] += sum(p["sent"] for p in prep)
            self.stats["codes_suppressed"] += sum(a and not p["sent"] for a, p in
                                                  zip(active, prep))
            self.stats["code_bytes"] += sum(p["wire_bytes"] * p["acked"] for p in prep)
            if not any(active):
                return
            bids = self._get([a.bid.remote(self.round) for a, on in zip(self.actors, active)
                              if on])
            self.stats["bids"] += sum(b["bids"] for b in bids)
            self.stats["bids_accepted"] += sum(b["accepted"] for b in bids)
            if not any(b["accepted"] for b in bids):
                return
            t_bid = time.perf_counter()
            res = self.loop.run(self.operator.client.tick(self.round, at_s=ctx.now))
            if res.rejections and res.kind == "tick" and res.round == self.round:
                raise WorldMismatch(f"tick refused: {res.rejections[0].reason}")
            t_commit = time.perf_counter()
            self.round = int(res.round)
            self.stats["rounds"] += 1
            for a in res.allocations:
                self.sim.start_allocated(a.job_id, a.task_id, a.instance_begin,
                                         a.instance_end, a.node,
                                         self.sim.cluster.site_names.index(a.site))
                self.latencies.append(t_commit - t_round)
            self.round_s.append(t_commit - t_round)
            self.phases.append((t_prep - t_round, t_bid - t_prep, t_commit - t_bid))
            self.stats["allocations"] += len(res.allocations)
            if self.on_round is not None:
                self.on_round(self)
            if not res.allocations:
                return

    def finish(self) -> None:
        """After the world's last event: the sites report the instances that ended since
        the last decision (no decision follows them), so the coordinator ends the episode
        holding no stale reservation."""
        ended = merge_runs(self.sim.take_ended())
        if ended:
            obs = [self._obs(None, i, ended.get(i, [])) for i in range(len(self.actors))]
            self._get([a.prepare.remote(o) for a, o in zip(self.actors, obs)])

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
