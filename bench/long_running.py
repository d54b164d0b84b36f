"""A long-running coordinator: what a replica holds as jobs keep coming, with and without
compaction (``retain_finished_jobs``, coordinator/compaction.py).

    python -m bench.long_running [--jobs 40000] [--batch 100] [--every 10000]
        [--retain 0,10000] [--json FILE]

Each arm runs in a fresh process (its memory is its own): the replicated schedule
(``ScheduleState``, in process: no gRPC, no PBFT -- what every replica executes) over two
sites of one large node; jobs of one task are submitted ``--batch`` at a time, bid for by
their site, allocated when the round closes, and reported completed, as a steady stream of
short jobs would be. Every ``--every`` jobs it prints the jobs the schedule keeps, the
process's resident memory, the snapshot a checkpoint encodes (its size; the time of the
first encoding after the changes, then again with every record cached) and a whole-ledger
query's size and time. CPU-time figures are the process's own (``time.process_time``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _arm(retain: int, jobs: int, batch: int, every: int, out) -> None:
    from agora.agents.domain import Cluster, Demand, Job, Node, Site, Task
    from agora.coordinator.schedule_state import ScheduleState
    from agora.protos.agora.v1 import coordinator_pb2 as pb
    from agora.protos.convert import job_to_proto

    sites = tuple(Site(name=s, nodes=(Node(f"{s}/big", s, cpu=1_000_000, mem=64_000_000),))
                  for s in ("s0", "s1"))
    st = ScheduleState(Cluster(sites=sites), retain_finished_jobs=retain)
    seq = [0]

    def ex(client: str, cmd: pb.Command) -> None:
        seq[0] += 1
        st.execute(client, cmd.SerializeToString(), seq[0])

    ledger_q = pb.Command(query=pb.Query(ledger=pb.LedgerQuery())).SerializeToString()
    rows, t0 = [], time.process_time()
    for b in range(jobs // batch):
        ids = [f"j{b}-{i}" for i in range(batch)]
        ex("operator", pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(
            Job(j, 0.0, "s0", (Task("t", 1.0, Demand(1, 1)),))) for j in ids])))
        rnd = st.round
        ex("site:s0", pb.Command(site_round=pb.SiteRound(site="s0", round=rnd, bidding=True,
                                                        bids=[pb.Bid(job_id=j, task_id="t",
                                                                     instances=1, price=1)
                                                              for j in ids])))
        ex("site:s1", pb.Command(site_round=pb.SiteRound(site="s1", round=rnd, bidding=True)))
        ex("site:s0", pb.Command(site_round=pb.SiteRound(site="s0", ends=[pb.End(
            job_id=j, task_id="t", instance=0, kind=pb.END_COMPLETED, start_s=0.0, end_s=1.0)
            for j in ids])))
        done = (b + 1) * batch
        if done % every == 0:
            t = time.process_time()
            snap = st.snapshot()
            cold = time.process_time() - t
            t = time.process_time()
            st.snapshot()
            warm = time.process_time() - t
            t = time.process_time()
            answer = st.query("operator", ledger_q)
            query = time.process_time() - t
            rows.append({"jobs_run": done, "jobs_kept": len(st.ledger.jobs),
                         "rss_mib": round(_rss_mib(), 1), "snapshot_mb": len(snap) / 1e6,
                         "snapshot_ms": 1e3 * cold, "snapshot_cached_ms": 1e3 * warm,
                         "ledger_mb": len(answer) / 1e6, "ledger_ms": 1e3 * query,
                         "history_rows": len(st.allocations) + len(st.changes)})
    out.put({"retain": retain, "cpu_s": time.process_time() - t0, "rows": rows})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=40_000, help="jobs to run (>= --every)")
    p.add_argument("--batch", type=int, default=100, help="jobs a command (>= 1)")
    p.add_argument("--every", type=int, default=10_000, help="jobs between two rows")
    p.add_argument("--retain", default="0,10000",
                   help="retain_finished_jobs of each arm, comma-separated (0: keep all)")
    p.add_argument("--json", help="also write the rows to this file")
    a = p.parse_args(argv)
    try:
        arms = [int(x) for x in a.retain.split(",")]
    except ValueError:
        p.error(f"--retain: {a.retain!r}; expected integers >= 0, comma-separated")
    if a.batch < 1 or a.every < a.batch or a.jobs < a.every or min(arms) < 0:
        p.error("expected --batch >= 1, --every >= --batch, --jobs >= --every, --retain >= 0")
    ctx = mp.get_context("spawn")
    results = []
    for retain in arms:
        q = ctx.Queue()
        proc = ctx.Process(target=_arm, args=(retain, a.jobs, a.batch, a.every, q))
        proc.start()
        results.append(q.get())
        proc.join()
    print("| retain_finished_jobs | jobs run | jobs kept | RSS MiB | snapshot MB | snapshot ms "
          "(cached) | ledger query MB, ms | history rows |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for res in results:
        for r in res["rows"]:
            print(f"| {res['retain'] or 'all'} | {r['jobs_run']:,} | {r['jobs_kept']:,} | "
                  f"{r['rss_mib']:.0f} | {r['snapshot_mb']:.1f} | {r['snapshot_ms']:.0f} "
                  f"({r['snapshot_cached_ms']:.0f}) | {r['ledger_mb']:.1f}, "
                  f"{r['ledger_ms']:.0f} | {r['history_rows']:,} |")
    for res in results:
        print(f"retain {res['retain'] or 'all'}: {res['cpu_s']:.1f} s of CPU for {a.jobs:,} jobs "
              f"({1e6 * res['cpu_s'] / a.jobs:.0f} µs a job, every command included)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
