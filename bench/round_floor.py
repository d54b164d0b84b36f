"""The floor under a round's decision latency: the bare PBFT skeleton ordering one part per
site, all sent at once, on this machine.

    python -m bench.round_floor [--sites 4,8,16,32] [--rounds 300] [--gap-ms 30] [--n 4]
        [--skeleton ../shared/anchors/pbft_skel.py] [--seed 0] [--json FILE]

Issue 11 asks a decision (work open -> allocation committed) in p99 <= 50 ms at 16 sites. In
Agora a round's allocation is committed once every site that can hold open work has sent its
signed part and the parts are ordered. Whatever else a scheduler does, those parts must be
ordered, so the time the bare skeleton (``pbft_skel.py``: grpc.aio streams, per-link HMAC,
Ed25519 client signatures; no view change, checkpoints, persistence, application) takes to
order k signed one-bid parts that arrive together is a floor under the decision latency at k
sites -- an optimistic one: its k parts come from one process, already signed (each site's
agent is a process of its own that must wake, observe, decide and sign), they go to the
primary only, and nothing carries the open work to the sites before they bid.

The skeleton's own replicas run unchanged (imported from ``--skeleton``); the client here
sends a round (k requests in one message to the primary, batches of up to k), waits until
each has f+1 matching replies, waits ``--gap-ms`` (rounds are not back to back in a
scheduler) and sends the next. Printed: p50 / p99 / max of the round's time to the last
part's commit, per k, with the load average. Rounds before the first second are warm-up.

``--agents processes`` (the default) is closer to a scheduler: one process per site, as
Agora's agents are. Replica 0 opens each round by sending a message to every site process
(as the committed schedule's update stream carries open work to the agents); each site
process, woken by it, spends ``--think-ms`` of CPU (an agent's step: ~1.5 ms measured in
Agora's replays), signs its one-bid part and sends it to the primary; the replicas order the
parts with the skeleton's normal case (its code, repeated here only so that each site
process has a link of its own), and the round's time runs at replica 0 from its opening
message to the execution of the round's last part -- decision latency's "work open ->
allocation committed", with nothing of Agora in it. ``--agents one`` is the skeleton's own
replicas and one client process sending the round's k parts, already signed, in one message.

The processes are forked: run it as a program (a process that already holds gRPC's threads
forks children whose gRPC hangs).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from argparse import Namespace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SKELETON = ROOT.parent / "shared" / "anchors" / "pbft_skel.py"
WARM_S = 1.0
CLIENT = 100          # the skeleton's replicas answer this id


def load_skeleton(path: Path):
    """The skeleton as a module (its ``replica`` and ``Net``)."""
    if not path.is_file():
        raise SystemExit(f"--skeleton: {path} is not a file; point it at pbft_skel.py "
                         f"(../shared/anchors beside the repository)")
    spec = importlib.util.spec_from_file_location("pbft_skel", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pbft_skel"] = mod
    spec.loader.exec_module(mod)
    return mod


def round_client(skel, a: Namespace, k: int, rounds: int, gap_s: float, seed: int,
                 ready, go, out) -> None:
    """Send ``rounds`` rounds of ``k`` signed parts; put the round times (s) on ``out``."""
    import msgpack
    import nacl.signing

    n, f = a.n, (a.n - 1) // 3
    sk = nacl.signing.SigningKey(hashlib.sha256(b"client").digest())   # the skeleton's key
    rng = random.Random(seed)
    votes: dict[int, int] = {}
    left = {"n": 0}
    ev: asyncio.Event | None = None
    times: list[tuple[float, float]] = []

    def on_msg(m) -> None:
        if m[0] != "R":
            return
        for rid in m[4]:
            c = votes.get(rid, 0) + 1
            votes[rid] = c
            if c == f + 1:
                left["n"] -= 1
                if left["n"] == 0:
                    ev.set()

    def part(rid: int) -> list:
        payload = msgpack.packb([{"task": f"t{rid}", "site": f"s{rid % k}",
                                  "cpu": rng.choice((1, 2, 4)), "mem": 1024,
                                  "agent": f"a{rid % k}"}])
        return [rid, payload, sk.sign(payload).signature]

    async def main() -> None:
        nonlocal ev
        ev = asyncio.Event()
        net = skel.Net(CLIENT, list(range(n)), on_msg)
        await net.start()
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.05)
        await net.connect()
        await asyncio.sleep(0.5)
        rid, start = 0, time.perf_counter()
        for _ in range(rounds):
            parts = [part(rid + j) for j in range(k)]       # signed before the clock starts
            rid += k
            ev.clear()
            left["n"] = k
            t0 = time.perf_counter()
            net.send(0, ["Q", CLIENT, 0, 0, parts])
            try:
                await asyncio.wait_for(ev.wait(), 10.0)
            except asyncio.TimeoutError:
                break
            times.append((t0 - start, time.perf_counter() - t0))
            await asyncio.sleep(gap_s)
        out.put(times)

    asyncio.run(main())


def site_process(skel, j: int, a: Namespace, k: int, think_s: float, ready, go) -> None:
    """Site ``j``: woken by replica 0's opening of round r, it thinks, signs its part and
    sends it to the primary."""
    import msgpack
    import nacl.signing

    sk = nacl.signing.SigningKey(hashlib.sha256(b"client").digest())
    me = CLIENT + j
    net = None

    def on_msg(m) -> None:
        if m[0] != "O":
            return
        r = m[3]
        until = time.thread_time() + think_s
        while time.thread_time() < until:            # an agent's step: CPU, not a sleep
            pass
        payload = msgpack.packb([{"task": f"t{r}", "site": f"s{j}", "cpu": 1 + j % 4,
                                  "mem": 1024, "agent": f"a{j}"}])
        net.send(0, ["Q", me, 0, 0, [[r * k + j, payload, sk.sign(payload).signature]]])

    async def main() -> None:
        nonlocal net
        net = skel.Net(me, list(range(a.n)), on_msg)
        await net.start()
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.05)
        await net.connect()
        await asyncio.sleep(a.secs + 8)

    asyncio.run(main())


def ordering_replica(skel, me: int, a: Namespace, k: int, rounds: int, gap_s: float,
                     ready, go, out) -> None:
    """The skeleton's replica (its normal case, unchanged in substance) with site processes
    for clients; replica 0 also opens the rounds and times them."""
    import msgpack
    import nacl.signing

    n, f = a.n, (a.n - 1) // 3
    vk = nacl.signing.SigningKey(hashlib.sha256(b"client").digest()).verify_key
    log: dict[int, dict] = {}
    st = {"seq": 0, "exec": 1, "pending": []}
    opened: dict[int, float] = {}
    executed: dict[int, int] = {}
    closed: dict[int, float] = {}
    done = asyncio.Event() if me == 0 else None
    net = None

    def entry(s):
        return log.setdefault(s, {"d": None, "batch": None, "P": set(), "C": set(),
                                  "sc": False, "done": False})

    def bcast(m) -> None:
        for p in range(n):
            if p != me:
                net.send(p, m)

    def execute(batch) -> None:
        if me != 0:
            return
        for req in batch:
            r = req[0] // k
            executed[r] = executed.get(r, 0) + 1
            if executed[r] == k:
                closed[r] = time.perf_counter()
                done.set()

    def try_progress(s) -> None:
        e = log[s]
        if e["d"] is None:
            return
        if not e["sc"] and len(e["P"]) >= 2 * f:
            e["sc"] = True
            e["C"].add(me)
            bcast(["C", me, 0, s, e["d"]])
        if e["sc"] and not e["done"] and len(e["C"]) >= 2 * f + 1:
            e["done"] = True
            while st["exec"] in log and log[st["exec"]]["done"]:
                execute(log.pop(st["exec"])["batch"])
                st["exec"] += 1
            if me == 0:
                kick()

    def on_msg(m) -> None:
        t, src, s = m[0], m[1], m[3]
        if t == "Q":
            st["pending"].extend(m[4])
            kick()
            return
        if t == "PP":
            batch = m[5]
            d = hashlib.sha256(msgpack.packb(batch)).digest()
            if d != m[4]:
                return
            for r in batch:
                vk.verify(r[1], r[2])
            e = entry(s)
            e["d"], e["batch"] = d, batch
            e["P"].add(me)
            bcast(["P", me, 0, s, d])
            try_progress(s)
            return
        e = entry(s)
        if e["d"] is not None and m[4] != e["d"]:
            return
        (e["P"] if t == "P" else e["C"]).add(src)
        try_progress(s)

    def kick() -> None:
        while st["pending"] and st["seq"] - st["exec"] + 1 < a.window:
            batch, st["pending"] = st["pending"][:a.batch], st["pending"][a.batch:]
            for r in batch:
                vk.verify(r[1], r[2])
            st["seq"] += 1
            s = st["seq"]
            d = hashlib.sha256(msgpack.packb(batch)).digest()
            e = entry(s)
            e["d"], e["batch"] = d, batch
            e["P"].add(me)
            bcast(["PP", me, 0, s, d, batch])

    async def main() -> None:
        nonlocal net
        sites = [CLIENT + j for j in range(k)]
        net = skel.Net(me, [p for p in range(n) if p != me] + sites, on_msg)
        await net.start()
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.05)
        await net.connect()
        if me != 0:
            await asyncio.sleep(a.secs + 8)
            return
        await asyncio.sleep(0.5)
        start, times = time.perf_counter(), []
        for r in range(rounds):
            done.clear()
            opened[r] = time.perf_counter()
            for p in sites:
                net.send(p, ["O", 0, 0, r])
            try:
                while r not in closed:
                    await asyncio.wait_for(done.wait(), 10.0)
                    done.clear()
            except asyncio.TimeoutError:
                break
            times.append((opened[r] - start, closed[r] - opened[r]))
            await asyncio.sleep(gap_s)
        out.put(times)

    asyncio.run(main())


def run_one(skel, n: int, k: int, rounds: int, gap_s: float, seed: int, base: int,
            agents: str = "processes", think_s: float = 0.0015, warm_s: float = WARM_S) -> dict:
    """One group and its sites or client; the round-time percentiles (ms) of the rounds
    opened ``warm_s`` or later after the first."""
    secs = rounds * (gap_s + 0.2) + 5          # how long the replicas stay up (they exit)
    a = Namespace(n=n, batch=max(k, 1), window=8, conc=k, secs=secs, sig=1, assign=1)
    skel.BASE = base
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs, readies = [], []

    def add(target, *args, out_queue=None) -> None:
        r = ctx.Event()
        readies.append(r)
        tail = (r, go) if out_queue is None else (r, go, out_queue)
        procs.append(ctx.Process(target=target, args=(*args, *tail), daemon=True))

    if agents == "one":
        for i in range(n):
            add(skel.replica, i, a)
        add(round_client, skel, a, k, rounds, gap_s, seed, out_queue=out)
    else:
        for i in range(n):
            add(ordering_replica, skel, i, a, k, rounds, gap_s, out_queue=out)
        for j in range(k):
            add(site_process, skel, j, a, k, think_s)
    la = os.getloadavg()[0]
    for p in procs:
        p.start()
    try:
        for r in readies:
            if not r.wait(60):
                raise SystemExit("the skeleton's processes did not start in 60 s")
        go.set()
        times = out.get(timeout=secs + 60)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(5)
    ms = sorted(t * 1e3 for at, t in times if at >= warm_s)
    if not ms:
        raise SystemExit(f"k={k}: no round completed after the warm-up")
    return {"sites": k, "n": n, "agents": agents, "think_ms": think_s * 1e3,
            "rounds": len(ms), "p50_ms": ms[len(ms) // 2],
            "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))], "max_ms": ms[-1],
            "mean_ms": statistics.fmean(ms), "load_avg": la}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", default="4,8,16,32",
                    help="parts per round, comma-separated (default 4,8,16,32)")
    ap.add_argument("--rounds", type=int, default=300, help="rounds per row (default 300)")
    ap.add_argument("--gap-ms", type=float, default=30.0,
                    help="idle time between rounds (default 30)")
    ap.add_argument("--n", type=int, default=4, help="replicas (default 4)")
    ap.add_argument("--skeleton", type=Path, default=DEFAULT_SKELETON)
    ap.add_argument("--seed", type=int, default=0, help="the parts' demands (recorded)")
    ap.add_argument("--base", type=int, default=52400, help="first port of the replicas")
    ap.add_argument("--agents", choices=("processes", "one"), default="processes",
                    help="a process per site, woken by replica 0 (default), or one client "
                         "process sending every part")
    ap.add_argument("--think-ms", type=float, default=1.5,
                    help="CPU each site process spends before its part (default 1.5)")
    ap.add_argument("--warm-s", type=float, default=WARM_S,
                    help=f"rounds opened before this many seconds are left out "
                         f"(default {WARM_S:g})")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    try:
        ks = [int(x) for x in args.sites.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--sites: got {args.sites!r}; expected numbers separated by commas, e.g. 4,16")
    if not ks or min(ks) < 1 or args.rounds < 1 or args.n < 4:
        ap.error("--sites: each at least 1; --rounds at least 1; --n at least 4")
    skel = load_skeleton(args.skeleton)
    rows = [run_one(skel, args.n, k, args.rounds, args.gap_ms / 1e3, args.seed, args.base,
                    args.agents, args.think_ms / 1e3, args.warm_s) for k in ks]
    how = (f"a process per site, woken by replica 0, {args.think_ms:g} ms of CPU before its "
           f"part" if args.agents == "processes" else "one client process sends every part")
    print(f"bare PBFT skeleton ({args.skeleton.name}), n={args.n}, one signed one-bid part "
          f"per site ({how}); {args.rounds} rounds, {args.gap_ms:g} ms apart, "
          f"seed {args.seed}\n")
    print("| sites (parts a round) | rounds | p50 ms | p99 ms | max ms | load avg |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['sites']} | {r['rounds']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['max_ms']:.1f} | {r['load_avg']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "gap_ms": args.gap_ms,
                                         "agents": args.agents, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
