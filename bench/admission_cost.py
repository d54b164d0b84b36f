"""What one site part of 50 bids costs a replica's CPU before and when it executes, in
process (no gRPC, no PBFT): the part's command decoded and checked for unknown fields,
its stateless checks before ordering, its admission against the ledger, its share of the
round's clearing, and of the whole round as the replicated schedule executes it.

    python -m bench.admission_cost [--repeat 7] [--parts 40]

The command's decode is timed two ways in the same process: ``decode_known`` (what the
replicas run) against ``decode`` + ``check_known`` (what they ran before: check_known
copies the message). Times are CPU time (``time.process_time``: this machine is shared),
the best of ``--repeat`` rounds, per part and per bid. The state: 4 busy sites and a quiet
one of one huge node each, 60 jobs of 50 tasks of 40 instances per site, as in
``bench/coordinator_throughput.py``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import timeit

from agora.agents.domain import Cluster, Demand, Job, Node, Site, Task
from agora.agents.ledger_book import LedgerBook
from agora.agents.market import admit_offers, clear
from agora.agents.sim import capacity as capacity_mod
from agora.agents.sim.capacity import SMALL_SITE
from agora.coordinator.schedule_codec import check_known, decode_known
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.validate import check_command
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import decode, job_to_proto

SITES, TASKS_PER_JOB, INSTANCES, JOBS_PER_SITE, BIDS = 4, 50, 40, 60, 50


def state() -> ScheduleState:
    sites = tuple(Site(name=f"s{k}", nodes=(Node(f"s{k}/big", f"s{k}", cpu=100_000,
                                                 mem=16_000_000),))
                  for k in range(SITES + 1))
    st = ScheduleState(Cluster(sites=sites))
    seq = 0
    for k in range(SITES):
        jobs = [Job(f"s{k}-j{j}", 0.0, f"s{k}", tuple(
            Task(f"t{t}", 1.0, Demand(1, 1), instances=INSTANCES)
            for t in range(TASKS_PER_JOB))) for j in range(JOBS_PER_SITE)]
        for i in range(0, len(jobs), 20):
            seq += 1
            cmd = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(j)
                                                              for j in jobs[i:i + 20]]))
            res = pb.Result.FromString(st.execute("operator", cmd.SerializeToString(), seq))
            assert res.accepted == 20, res
    return st


def part(site: int, k: int, rnd: int) -> pb.Command:
    tasks = range(k * BIDS, k * BIDS + BIDS)
    return pb.Command(site_round=pb.SiteRound(site=f"s{site}", round=rnd, bidding=True, bids=[
        pb.Bid(job_id=f"s{site}-j{t // TASKS_PER_JOB}", task_id=f"t{t % TASKS_PER_JOB}",
               instances=1, price=1) for t in tasks]))


def clearing(st: ScheduleState, repeat: int, small: int) -> float:
    """CPU seconds (best of ``repeat``) of clearing one round of a part from every busy site
    (every bid placed) on a fresh copy of ``st``, with the book's list view for sites of at
    most ``small`` nodes (-1: numpy's search, ``Capacity.best_fit``, always)."""
    times = []
    before = capacity_mod.SMALL_SITE
    try:
        capacity_mod.SMALL_SITE = small
        for _ in range(repeat):
            s = copy.deepcopy(st)
            bids = []
            for site in range(SITES):
                m = part(site, 0, s.round).site_round
                got, refused = admit_offers(s.ledger, s.capacity, s.site_index[m.site],
                                            m.site, m.bids)
                assert not refused
                bids.extend(got)
            book = LedgerBook(s.ledger, s.capacity, s.pref)
            t0 = time.process_time()
            c = clear(bids, book)
            times.append(time.process_time() - t0)
            assert len(c.awards) == SITES * BIDS
    finally:
        capacity_mod.SMALL_SITE = before
    return min(times)


def closing(st: ScheduleState, repeat: int) -> float:
    """CPU seconds (best of ``repeat``) of one round through the replicated schedule
    (``ScheduleState.execute``) on a fresh copy of ``st``: every busy site's part admitted,
    then the quiet site's empty decision, which closes the round (the clearing, the
    allocation rows and messages, the result)."""
    times = []
    for _ in range(repeat):
        s = copy.deepcopy(st)
        ops = [(f"site:s{k}", part(k, 0, s.round).SerializeToString()) for k in range(SITES)]
        ops.append((f"site:s{SITES}", pb.Command(site_round=pb.SiteRound(
            site=f"s{SITES}", round=s.round, bidding=True)).SerializeToString()))
        t0 = time.process_time()
        for i, (client, op) in enumerate(ops):
            out = s.execute(client, op, 10**6 + i)
        times.append(time.process_time() - t0)
        assert len(pb.Result.FromString(out).allocations) == SITES * BIDS
    return min(times)


def best(f, repeat: int) -> float:
    return min(timeit.Timer(f, timer=time.process_time).repeat(number=1, repeat=repeat))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=7, help="rounds; the best is shown (>= 1)")
    p.add_argument("--parts", type=int, default=40, help="parts per round (1..60)")
    a = p.parse_args(argv)
    if a.repeat < 1 or not 1 <= a.parts <= JOBS_PER_SITE:
        p.error("--repeat: expected >= 1; --parts: expected 1..60")
    st = state()
    cmds = [part(k % SITES, k % JOBS_PER_SITE, st.round) for k in range(a.parts)]
    ops = [c.SerializeToString() for c in cmds]

    def old_decode():
        for op in ops:
            check_known(decode(pb.Command, op, "command"), "command")

    def new_decode():
        for op in ops:
            decode_known(pb.Command, op, "command")

    def checks():
        for c in cmds:
            check_command(c, f"site:{c.site_round.site}/0", "op.site_round")

    def admission():
        for c in cmds:
            m = c.site_round
            bids, refused = admit_offers(st.ledger, st.capacity, st.site_index[m.site],
                                         m.site, m.bids)
            assert len(bids) == BIDS and not refused

    rows = [("decode + check_known (before)", best(old_decode, a.repeat)),
            ("decode_known (now)", best(new_decode, a.repeat)),
            ("check_command (checks before ordering)", best(checks, a.repeat)),
            ("admit_offers (admission at execution)", best(admission, a.repeat))]
    for small, name in ((-1, "numpy's best fit for every search"),
                        (SMALL_SITE, "the book's list view (what runs)")):
        rows.append((f"clearing a round of {SITES} parts, {name}",
                     clearing(st, a.repeat, small) * a.parts / SITES))
    rows.append((f"a round of {SITES} parts through the replicated schedule (admission, "
                 f"clearing, allocations, result)", closing(st, a.repeat) * a.parts / SITES))
    print(f"| step, a part of {BIDS} bids | µs a part | µs a bid |\n| --- | ---: | ---: |")
    for name, s in rows:
        print(f"| {name} | {1e6 * s / a.parts:.1f} | {1e6 * s / a.parts / BIDS:.2f} |")
    print(f"\ndecode_known ÷ decode + check_known: {rows[1][1] / rows[0][1]:.2f} "
          f"(best of {a.repeat}, CPU time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
