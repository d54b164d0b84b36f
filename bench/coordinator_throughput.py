"""Coordinator throughput and latency: n replica processes (`agora coordinator`) on this
machine over loopback gRPC, with checkpoints, SQLite WAL persistence (synchronous FULL or NORMAL) and
authentication (Ed25519 client signatures, per-link MACs) all on.

    python -m bench.coordinator_throughput [--seconds 8] [--sync both|FULL|NORMAL]
        [--repeat 3] [--only 4-none,4-16,...] [--out bench/results/coordinator-table.md]

Rows: n (f) | batching | sync | committed bid batches/s | accepted assignments/s | p50 | p99.
- "none": PBFT batch size 1, each request one signed bid batch holding one assignment;
- "up to 16": batch size 16, each request a bid batch of 50 assignments.
Latency is from signing a request to holding f+1 matching replies. Every bid is for an open
task of the client's own site and for the current round as the client last saw it (see
``Load``: rounds close on their own once every site decided); "accepted assignments" counts
the bids the state machine admitted. The clients of the load generator share one request
stream per replica (``RequestStreams``).
Then, for n=4: time until commits resume after SIGKILL of the primary (against 2x the
view-change timeout), and throughput with one backup silent (SIGSTOP) against normal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

from agora.agents.domain import Demand, Job, Task
from agora.coordinator.client import CoordinatorClient
from agora.coordinator.request_stream import RequestStreams
from agora.coordinator.transport import channel_options, client_channel_credentials
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
SITES = 4
TASKS_PER_JOB = 50
INSTANCES = 40
TICK_S = 1.0
VC_TIMEOUT = 0.5


def make_group(tmp: Path, n: int, batch: int, clients: list[str], sync: str = "FULL",
               window: int = 8, quiet_site: bool = False) -> LocalGroup:
    """n replicas over SITES sites of one huge node each (capacity is never the limit), not
    started (``with g.serving()`` starts them); ``quiet_site``: one more site that never
    sends (rounds then close on the replicas' votes, as when a site is slow, not as soon as
    the SITES sites decided)."""
    sites = [{"name": f"s{k}", "nodes": [{"name": "big", "cpu": 100_000,
                                          "mem": 16_000_000, "count": 1}]}
             for k in range(SITES + quiet_site)]
    (tmp / "cluster.yaml").write_text(yaml.safe_dump({"sites": sites}))
    g = LocalGroup(tmp, n=n, clients=clients, key_seed=b"bench", cluster="cluster.yaml",
                   batch_size=batch, batch_timeout_s=0.001 if batch > 1 else 0.0,
                   checkpoint_interval=64, watermark_window=256, max_outstanding=window,
                   view_change_timeout_s=VC_TIMEOUT, request_timeout_s=20.0,
                   sqlite_synchronous=sync, round_timeout_s=3600.0, site_timeout_s=3600.0)
    return g


async def wait_ready(g: LocalGroup, op: CoordinatorClient) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(not isinstance(s, str) for s in await op.status()):
            return
        await asyncio.sleep(0.3)
    raise RuntimeError("replicas did not start")


async def setup(op: CoordinatorClient, jobs_per_site: int) -> None:
    for k in range(SITES):
        jobs = [Job(id=f"s{k}-j{j}", arrival=0.0, origin=f"s{k}", tasks=tuple(
            Task(f"t{t}", 1.0, Demand(1, 1), instances=INSTANCES)
            for t in range(TASKS_PER_JOB))) for j in range(jobs_per_site)]
        for i in range(0, len(jobs), 20):
            r = await op.submit_jobs(jobs[i:i + 20])
            assert r.accepted == len(jobs[i:i + 20]), r.rejections[:3]


class Load:
    """Closed-loop clients: each keeps one request outstanding. A request is one site's part
    of the current round (``SiteRound``, bidding) with ``per_request`` bids, each for one
    instance of an open task of the site's own jobs; each client cycles through its own slice
    of its site's tasks, so no two of its requests in a row bid for the same task. The state
    machine closes a round as soon as every site has decided (a site's later part in the same
    round replaces its earlier one); each client follows the round from its results
    (``Result.round``), and a part sent for a round that closed meanwhile is refused
    (``wrong_round``; counted, as the protocol's cost). A watchdog votes ``CloseRound`` (the
    replicas' own voters) if no round has closed for TICK_S, as the replicas' round timers
    would. Throughput counts the whole window."""

    def __init__(self, g: LocalGroup, clients: list[str], per_request: int, jobs_per_site: int):
        self.g, self.per_request = g, per_request
        # the clients of this process share one connection and request stream per replica,
        # as the skeleton's one client process does (request_stream.RequestStreams)
        self.shared = RequestStreams(g.config.replicas, client_channel_credentials(g.config),
                                     channel_options(g.config))
        self.clients = [CoordinatorClient(g.config, g.keys, c, timeout_s=30.0,
                                          streams=self.shared) for c in clients]
        self.voters = [CoordinatorClient(g.config, g.keys, f"replica:{i}", timeout_s=30.0)
                       for i in range(g.config.f + 1)]
        self.jobs_per_site = jobs_per_site
        self.round = 0
        self.round_at = time.perf_counter()
        self.log: list[tuple[float, float, int]] = []   # (done at, latency, accepted bids)
        self.ticks: list[tuple[float, int, int]] = []   # (done at, round, instances allocated)
        self.stop = False
        self.rejected = 0
        self.stale = 0                                  # parts for a round already closed

    def _saw(self, r: pb.Result) -> None:
        alloc = sum(a.instance_end - a.instance_begin for a in r.allocations)
        if alloc:
            self.ticks.append((time.perf_counter(), r.round - 1, alloc))
        if r.round > self.round:
            self.round, self.round_at = r.round, time.perf_counter()

    async def client_loop(self, idx: int, c: CoordinatorClient) -> None:
        site = c.client_id.split(":")[1].split("/")[0]
        sub = int(c.client_id.split("/")[1])
        subs = max(1, sum(1 for x in self.clients if x.client_id.startswith(f"site:{site}/")))
        tasks_total = self.jobs_per_site * TASKS_PER_JOB
        mine = list(range(sub, tasks_total, subs))       # this client's slice of tasks
        per = min(self.per_request, len(mine))
        k = 0
        while not self.stop:
            pick = [mine[(k + j) % len(mine)] for j in range(per)]
            k = (k + per) % len(mine)
            t0 = time.perf_counter()
            try:
                r = await c.submit_round(pb.SiteRound(
                    site=site, round=self.round, bidding=True, bids=[
                        pb.Bid(job_id=f"{site}-j{t // TASKS_PER_JOB}",
                               task_id=f"t{t % TASKS_PER_JOB}", instances=1, price=1)
                        for t in pick]))
            except Exception as e:  # a view change in progress: keep going
                print(f"  client {c.client_id}: {e}", file=sys.stderr)
                await asyncio.sleep(0.05)
                continue
            t1 = time.perf_counter()
            self._saw(r)
            self.log.append((t1, t1 - t0, r.accepted))
            self.rejected += per - r.accepted
            self.stale += any(x.field.endswith(".round") for x in r.rejections)

    async def watchdog(self) -> None:
        while not self.stop:
            await asyncio.sleep(TICK_S / 4)
            if time.perf_counter() - self.round_at < TICK_S:
                continue
            rnd = self.round
            try:
                for v in self.voters:
                    raw = await v.call("CloseRound", pb.Command(
                        close_round=pb.CloseRound(round=rnd)))
                    if raw:
                        self._saw(pb.Result.FromString(raw))
            except Exception as e:
                print(f"  watchdog: {e}", file=sys.stderr)
            self.round_at = time.perf_counter()

    async def run(self, op: CoordinatorClient, seconds: float, during=None) -> None:
        for c in self.clients:
            c.open()
        tasks = [asyncio.ensure_future(self.client_loop(i, c))
                 for i, c in enumerate(self.clients)]
        tasks.append(asyncio.ensure_future(self.watchdog()))
        if during is not None:
            await during(self)
        else:
            await asyncio.sleep(seconds)
        self.stop = True
        await asyncio.wait(tasks, timeout=30)
        for c in self.clients + self.voters:
            await c.close()
        await self.shared.close()


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(g: LocalGroup) -> float:
    """CPU seconds used so far by the group's replica processes and this process."""
    return time.process_time() + sum(proc_cpu_s(p.pid) for p in g.procs.values())


def summary(log, t_from: float, t_to: float) -> tuple[float, float, float, float]:
    rows = [x for x in log if t_from <= x[0] <= t_to]
    span = t_to - t_from
    lat = sorted(x[1] for x in rows) or [float("nan")]
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    return len(rows) / span, sum(x[2] for x in rows) / span, p(0.5), p(0.99)


async def scenario(n: int, batch: int, per_request: int, n_clients: int, seconds: float,
                   mode: str = "normal", sync: str = "FULL", window: int = 8,
                   quiet_site: bool = False) -> dict:
    """One row's run. ``n_clients`` clients spread over the SITES sites (one client: site
    s0 only); ``window``: the primary's max_outstanding batches. Besides rates, ``cpu_s``:
    CPU seconds of the replicas and of this process (the clients) in the measured window.
    ``quiet_site``: see ``make_group``."""
    clients = ([f"site:s{k}/{m}" for k in range(SITES) for m in range(n_clients // SITES)]
               if n_clients >= SITES else [f"site:s0/{m}" for m in range(n_clients)])
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as tmp:
        g = make_group(Path(tmp), n, batch, clients + ["operator"], sync, window, quiet_site)
        # started and seen serving (a port picked free and taken by another process before
        # a replica bound it: the group again on fresh ports), stopped after
        with g.serving():
            async with CoordinatorClient(g.config, g.keys, "operator", timeout_s=30.0) as op:
                await wait_ready(g, op)
                # enough distinct tasks per round for every client's bids
                want = int(1000 * per_request * TICK_S / SITES) if batch > 1 else 400
                jobs_per_site = max(2, min(60, want // TASKS_PER_JOB + 1))
                await setup(op, jobs_per_site)
                load = Load(g, clients, per_request, jobs_per_site)
                out: dict = {"n": n, "f": (n - 1) // 3, "batch": batch, "per": per_request,
                             "clients": n_clients}
                warm = 1.5
                if mode == "normal":
                    t0 = time.perf_counter()
                    la0 = os.getloadavg()[0]

                    async def during(ld):
                        await asyncio.sleep(warm)
                        c0, k0 = cpu_seconds(g), time.process_time()
                        await asyncio.sleep(seconds)
                        out["cpu_s"] = cpu_seconds(g) - c0
                        out["client_cpu_s"] = time.process_time() - k0
                    await load.run(op, 0, during)
                    out["rate"] = summary(load.log, t0 + warm, t0 + warm + seconds)
                    out["load"] = (la0, os.getloadavg()[0])
                    out["rejected_bids"] = load.rejected
                    out["stale_parts"] = load.stale
                    out["rounds"] = load.round
                    out["allocated"] = sum(x[2] for x in load.ticks)
                elif mode == "silent":
                    async def during(ld):
                        await asyncio.sleep(warm)
                        t = time.perf_counter()
                        await asyncio.sleep(seconds / 2)
                        out["normal"] = summary(ld.log, t, time.perf_counter())
                        s = await op.status()
                        victim = (s[0].primary + 1) % n
                        g.procs[victim].send_signal(signal.SIGSTOP)
                        t = time.perf_counter()
                        await asyncio.sleep(seconds / 2)
                        out["silent"] = summary(ld.log, t, time.perf_counter())
                    await load.run(op, 0, during)
                elif mode == "primary":
                    async def during(ld):
                        await asyncio.sleep(warm + 1.0)
                        s = await op.status()
                        primary = s[0].primary
                        g.procs[primary].send_signal(signal.SIGKILL)
                        t_kill = time.perf_counter()
                        while time.perf_counter() - t_kill < 10 * VC_TIMEOUT + 10:
                            await asyncio.sleep(0.01)
                            if any(x[0] > t_kill and x[0] - x[1] > t_kill for x in ld.log):
                                break
                        after = [x[0] for x in ld.log if x[0] - x[1] > t_kill]
                        out["resume_s"] = (min(after) - t_kill) if after else float("nan")
                        await asyncio.sleep(1.0)
                        out["after"] = summary(ld.log, time.perf_counter() - 1.0,
                                               time.perf_counter())
                    await load.run(op, 0, during)
                return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--out", type=Path,
                   default=ROOT / "bench" / "results" / "coordinator-table.md",
                   help="where the table goes (the hand analysis is in coordinator.md)")
    p.add_argument("--only", default="", help="comma-separated row names: 4-none, 4-16, "
                   "7-16, 10-16, primary, silent")
    p.add_argument("--sync", default="both", choices=["FULL", "NORMAL", "both"],
                   help="SQLite synchronous of the replicas (FULL: fsync per group commit; "
                        "NORMAL: crash-safe, not power-loss-safe); both: a row of each")
    p.add_argument("--repeat", type=int, default=1, help="runs per row; the median is shown")
    a = p.parse_args(argv)
    rows_spec = [("4-none", 4, 1, 1, 8), ("4-16", 4, 16, 50, 32), ("7-16", 7, 16, 50, 32),
                 ("10-16", 10, 16, 50, 32)]
    syncs = ["FULL", "NORMAL"] if a.sync == "both" else [a.sync]
    only = set(a.only.split(",")) if a.only else None
    lines = ["| n (f) | batching | sync | committed bid batches/s | accepted assignments/s | "
             "p50 ms | p99 ms | load avg (1 min) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name, n, batch, per, clients in rows_spec:
        if only and name not in only:
            continue
        for sync in syncs:
            runs = [asyncio.run(scenario(n, batch, per, clients, a.seconds, sync=sync))
                    for _ in range(a.repeat)]
            runs.sort(key=lambda r: r["rate"][0])
            r = runs[len(runs) // 2]
            rate, inst, p50, p99 = r["rate"]
            allr = ", ".join(f"{x['rate'][0]:.0f}" for x in runs)
            lines.append(f"| {n} ({(n - 1) // 3}) | {'none' if batch == 1 else 'up to 16'} "
                         f"({clients} clients, {per} bids/request) | {sync} | {rate:.0f}"
                         f"{f' (runs: {allr})' if len(runs) > 1 else ''} | {inst:.0f} | "
                         f"{p50:.1f} | {p99:.1f} | {r['load'][0]:.1f} → {r['load'][1]:.1f} |")
            print(lines[-1], f"[rounds {r['rounds']}, bids refused {r['rejected_bids']} "
                  f"(stale parts {r['stale_parts']}), "
                  f"instances allocated {r['allocated']}]", flush=True)
    extra = []
    if not only or "primary" in only:
        r = asyncio.run(scenario(4, 1, 1, 8, a.seconds, "primary", sync=syncs[0]))
        extra.append(f"- primary killed (SIGKILL), n=4, view-change timeout {VC_TIMEOUT} s "
                     f"({syncs[0]}): commits resumed after **{r['resume_s']:.2f} s** "
                     f"(2x timeout = {2 * VC_TIMEOUT:.1f} s); then {r['after'][0]:.0f} "
                     f"requests/s")
        print(extra[-1], flush=True)
    if not only or "silent" in only:
        r = asyncio.run(scenario(4, 1, 1, 8, a.seconds, "silent", sync=syncs[0]))
        ratio = r["silent"][0] / r["normal"][0] if r["normal"][0] else float("nan")
        extra.append(f"- one silent backup (SIGSTOP), n=4, no batching ({syncs[0]}): "
                     f"{r['silent'][0]:.0f} requests/s, p50 {r['silent'][2]:.1f} ms, p99 "
                     f"{r['silent'][3]:.1f} ms vs normal {r['normal'][0]:.0f} requests/s, "
                     f"p50 {r['normal'][2]:.1f} ms, p99 {r['normal'][3]:.1f} ms "
                     f"(**{100 * ratio:.0f}%** of normal)")
        print(extra[-1], flush=True)
    cmd = " ".join(["python -m bench.coordinator_throughput"] + (argv or sys.argv[1:]))
    text = ("# Coordinator throughput: the table (written by bench/coordinator_throughput.py)\n\n"
            "Analysis: bench/results/coordinator.md (by hand; this file is overwritten).\n\n"
            f"Command: `{cmd}`\n\n"
            f"Machine: {os.cpu_count()} cores (shared), all replicas and the load generator "
            "on it; loopback gRPC; SQLite WAL; checkpoint every 64; Ed25519 client "
            "signatures, HMAC link MACs. A request is one site's part of the current round; "
            "rounds close as soon as every site decided (see `Load`), a part for a round that "
            "closed meanwhile is refused as stale; throughput counts every committed "
            "request.\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(extra) + "\n")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
