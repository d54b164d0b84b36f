"""The client's merge of f+1 watch streams (``WatchMerger``, ``merged_watch``) against
faulty replicas, from a review; each case failed before its fix:

- ONE faulty replica made a follower skip a real update for good: it announced the next key
  with made-up bytes early, the key's patience ran from then, and the real update was
  skipped the moment the next one was confirmed -- patience now runs from the confirmation
  of a later key;
- a restarted correct replica's rebuilt version (one update, (v, 0) without a round, for
  the whole batch) copied by ONE faulty replica was released, and the ring's (v, 1) after it:
  the batch's later updates were applied twice -- a rebuilt version now covers its version;
- with f >= 2, faulty streams sending the SAME made-up future keys were never muted (only
  keys one stream alone sent counted), and the correct streams were, for good.
"""

import asyncio

from agora.coordinator.watch_history import history
from agora.coordinator.watch_merge import MAX_PENDING, WatchMerger
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, decide, end, job, report, submit, vote


def full(v: int, sub: int = 0) -> bytes:
    u = pb.ScheduleUpdate(version=v, sub=sub)
    u.round.round = v
    u.allocations.add(job_id=f"j{v}.{sub}", task_id="t", instance_end=1, node="a/n0")
    return u.SerializeToString()


def keys(out):
    return [(u.version, u.sub) for u in map(pb.ScheduleUpdate.FromString, out)]


def test_a_faulty_replica_cannot_make_a_real_update_skipped_by_announcing_its_key_early():
    m = WatchMerger(n=4, f=1, patience_s=5.0)
    for i in range(4):
        m.opened(i)                          # the hedge opened every stream
    out = []
    for i in range(4):
        out += m.receive(i, full(1), 0.0)
    assert keys(out) == [(1, 0)]
    # replica 3 (faulty) announces the next key with made-up bytes, right away
    fake = pb.ScheduleUpdate(version=2, sub=0)
    fake.allocations.add(job_id="evil", task_id="t", instance_end=1, node="a/n0")
    out = m.receive(3, fake.SerializeToString(), 0.1)
    assert out == []
    # 30 s later the batch of version 2 commits: (2, 0) and (2, 1). Replica 0 is fastest;
    # the faulty one copies (2, 1) as fast; replicas 1 and 2 are 5 ms behind.
    out = m.receive(0, full(2, 0), 30.000) + m.receive(0, full(2, 1), 30.000)
    out += m.receive(3, full(2, 1), 30.001)
    out += m.receive(1, full(2, 0), 30.005) + m.receive(1, full(2, 1), 30.005)
    out += m.receive(2, full(2, 0), 30.006) + m.receive(2, full(2, 1), 30.006)
    # every correct replica sent (2, 0), identically: it must be released, before (2, 1)
    assert keys(out) == [(2, 0), (2, 1)], (keys(out), m.skipped)
    assert m.skipped == 0


def test_through_merged_watch_a_key_silent_streams_may_still_send_is_given_up_after_patience():
    """(Passes before and after the fix: the fix's timer, ``patience_due``, still wakes the
    watch once a later key was confirmed for the patience.)"""

    from agora.coordinator.watch_merge import merged_watch

    class Chan:
        def __init__(self, i: int) -> None:
            self.i = i

        def unary_stream(self, *a, **k):
            async def stream(_request):
                if self.i == 0:
                    yield full(1)
                if self.i in (0, 1):
                    yield full(2)
                    yield full(3)
                await asyncio.Event().wait()           # 2 and 3: open and silent
            return stream

    async def main():
        got = []
        async for u in merged_watch([Chan(i) for i in range(4)], 1, [0, 1],
                                    lambda *a: pb.ReadAuth(), 0, hedge_s=0.05,
                                    patience_s=0.3):
            got.append(u.version)
            if len(got) == 2:
                return got
    assert asyncio.run(asyncio.wait_for(main(), 10)) == [2, 3]


def test_a_rebuilt_version_and_the_rings_later_subs_of_it_are_not_both_applied():
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False)))                         # version 1
    r("site:a", decide("a", 0, ("j0", "map", 2, 1)))
    for s in "abc":
        if r.state.round == 0:
            r(f"replica:{'abc'.index(s)}", vote(0))
    v = r.state.version                                                   # the round closed:
    running = sorted(r.state.ledger.tasks[("j0", "map")].placements)      # (v, 0) allocates
    assert running == [0, 1]
    r("site:a", report("a", end("j0", "map", 0)), same_seq=True)          # (v, 1): one ends
    ring = [u for u in r.updates if u.version > 1]
    assert [(u.version, u.sub) for u in ring] == [(v, 0), (v, 1)]
    ring_bytes = [u.SerializeToString() for u in ring]
    rebuilt = [u.SerializeToString() for u in history(r.state, 2, v + 1)]  # a restarted replica
    assert pb.ScheduleUpdate.FromString(rebuilt[-1]).sub == 0

    m = WatchMerger(n=4, f=1, since_version=2)
    for i in range(4):
        m.opened(i)
    out = []
    for data in rebuilt:                                   # replica 0: restarted, correct
        out += m.receive(0, data, 0.0)
    for data in rebuilt:                                   # replica 3: faulty, copies it
        out += m.receive(3, data, 0.0)
    for i in (1, 2):                                       # replicas 1, 2: from their rings
        for data in ring_bytes:
            out += m.receive(i, data, 0.0)

    # each allocation and each end of the batch is released once (on HEAD: the rebuilt
    # (v, 0) -- allocation of [0] and [1], end of [0] -- and then the ring's (v, 1) -- the end
    # of [0] again; an agent's ledger raises "j0/map[0] is not running" and the agent
    # restarts itself; a follower of other shapes of (v, 1) applies them twice, silently)
    released = [pb.ScheduleUpdate.FromString(d) for d in out]
    allocs = [(a.job_id, a.task_id, k) for u in released for a in u.allocations
              for k in range(a.instance_begin, a.instance_end)]
    ends = [(c.job_id, c.task_id, k) for u in released for c in u.changes
            for k in range(c.instance_begin, c.instance_end)]
    assert sorted(allocs) == [("j0", "map", 0), ("j0", "map", 1)], allocs
    assert ends == [("j0", "map", 0)], [(u.version, u.sub) for u in released]


def test_two_faulty_streams_flooding_the_same_future_keys_are_muted_and_correct_ones_go_on():
    m = WatchMerger(n=7, f=2)
    for i in range(7):
        m.opened(i)
    out = []
    for v in range(1, MAX_PENDING + 1):              # replicas 5 and 6: the same made-up keys,
        fake = full(10**6 + v)                        # up to the bound (it is in the source)
        out += m.receive(5, fake, 0.0) + m.receive(6, fake, 0.0)
    assert not out and not m.muted
    for v in range(1, 4):                             # the five correct replicas go on
        for i in range(5):
            out += m.receive(i, full(v), 1.0)
    for attempt in range(3):          # a muted stream is reopened (MUTED_REOPEN_S) and resends
        for i in sorted(m.muted & set(range(5))):
            m.opened(i)
            for v in range(1, 4):
                out += m.receive(i, full(v), 2.0 + attempt)
    assert not (m.muted & set(range(5))), m.muted     # no correct stream muted
    assert keys(out) == [(1, 0), (2, 0), (3, 0)]


def test_a_faulty_streams_huge_messages_wait_while_the_follower_is_slow():
    """The read-ahead was bounded in messages only (32 a stream): while a follower (an agent
    on a busy machine) took its time, a faulty replica's 64 MiB messages could pile up to
    gigabytes in it. A stream now waits past ``BACKLOG_BYTES`` of its own unmerged bytes."""
    from agora.coordinator.watch_merge import BACKLOG_BYTES, merged_watch

    big = b"\x00" * (4 << 20)
    yielded = [0]
    go = asyncio.Event()

    class Chan:
        def __init__(self, i: int) -> None:
            self.i = i

        def unary_stream(self, *a, **k):
            async def stream(_request):
                if self.i in (0, 1):
                    yield full(1)
                if self.i == 0:
                    await go.wait()
                    for _ in range(200):             # faulty: 800 MiB, one message at a time
                        yielded[0] += 1
                        yield big
                await asyncio.Event().wait()
            return stream

    async def main():
        gen = merged_watch([Chan(i) for i in range(4)], 1, [0, 1], lambda *a: pb.ReadAuth(), 0)
        u = await gen.__anext__()
        go.set()
        await asyncio.sleep(0.5)                     # the follower takes nothing meanwhile
        n = yielded[0]
        await gen.aclose()
        return u.version, n
    version, n = asyncio.run(asyncio.wait_for(main(), 10))
    assert version == 1
    assert n <= BACKLOG_BYTES // len(big) + 2, f"{n} messages of 4 MiB read ahead"
