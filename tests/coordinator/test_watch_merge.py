"""WatchMerger: the client's merge of n replicas' watch streams (no network: streams are
lists of serialized updates fed in a chosen interleaving)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from agora.coordinator.watch_merge import WatchMerger
from agora.protos.agora.v1 import coordinator_pb2 as pb


def full(v: int, sub: int = 0) -> bytes:
    """The form a replica with the update in its ring sends (jobs, round info, ...)."""
    u = pb.ScheduleUpdate(version=v, sub=sub)
    u.round.round = v
    u.allocations.add(job_id=f"j{v}", task_id="t", instance_end=1)
    return u.SerializeToString()


def rebuilt(v: int, sub: int = 0) -> bytes:
    """The form a restarted replica rebuilds from its state (allocations only)."""
    u = pb.ScheduleUpdate(version=v, sub=sub)
    u.allocations.add(job_id=f"j{v}", task_id="t", instance_end=1)
    return u.SerializeToString()


def keys(out: list[bytes]) -> list[tuple[int, int]]:
    return [(u.version, u.sub) for u in map(pb.ScheduleUpdate.FromString, out)]


def test_two_identical_streams_release_each_update_once_in_order():
    m = WatchMerger(n=4, f=1)
    out = []
    for i in (0, 1):
        m.opened(i)
    for v in (1, 2, 3):
        out += m.receive(0, full(v), 0.0)
    assert out == []                                  # one stream is not f+1
    for v in (1, 2, 3):
        out += m.receive(1, full(v), 0.0)
    assert keys(out) == [(1, 0), (2, 0), (3, 0)]


def test_bytes_that_are_no_update_from_one_stream_are_dropped_and_the_watch_goes_on():
    """A faulty replica's stream sends garbage: it raised out of the merge and ended the
    watch of every client listening to that replica (review); now it is counted and the
    correct streams' updates are released."""
    m = WatchMerger(n=4, f=1)
    for i in (0, 1, 2):
        m.opened(i)
    out = m.receive(2, b"\xff\xff\xff", 0.0) + m.receive(2, b"\x08", 0.0)
    for v in (1, 2):
        out += m.receive(0, full(v), 0.0) + m.receive(1, full(v), 0.0)
    assert keys(out) == [(1, 0), (2, 0)] and m.junk == 2


def test_a_restarted_replicas_other_form_holds_later_updates_until_the_earlier_confirms():
    """Stream 0 restarted: version 1 in the rebuilt form, version 2 from its ring. Version 2
    is confirmed first (streams 0 and 1) but waits for version 1, which stream 2 confirms."""
    m = WatchMerger(n=4, f=1)
    for i in range(4):
        m.opened(i)
    out = m.receive(0, rebuilt(1), 0.0) + m.receive(0, full(2), 0.0)
    out += m.receive(1, full(1), 0.0) + m.receive(1, full(2), 0.0)
    assert out == [] and m.head_waiting_since() == 0.0
    out += m.receive(2, full(1), 0.1)
    assert keys(out) == [(1, 0), (2, 0)]
    assert pb.ScheduleUpdate.FromString(out[0]).round.round == 1   # the full form won
    assert m.skipped == 0


def test_an_update_no_f_plus_1_can_still_confirm_is_skipped_not_waited_for():
    """Only stream 0 sent version 1 (the others rebuilt their history and had nothing at
    version 1): once every stream passed it, it is given up and version 2 goes out."""
    m = WatchMerger(n=4, f=1)
    for i in range(4):
        m.opened(i)
    out = m.receive(0, full(1), 0.0) + m.receive(0, full(2), 0.0)
    for i in (1, 2, 3):
        out += m.receive(i, full(2), 0.0)
    assert keys(out) == [(2, 0)] and m.skipped == 1


def test_a_silent_stream_keeps_a_doubtful_update_only_for_the_patience():
    m = WatchMerger(n=4, f=1, patience_s=5.0)
    for i in range(4):
        m.opened(i)
    out = m.receive(0, full(1), 0.0) + m.receive(1, rebuilt(1), 0.0)
    out += m.receive(2, rebuilt(1), 0.0)               # 1 and 2 agree on the rebuilt form
    assert keys(out) == [(1, 0)]                       # f+1 identical: released
    out = m.receive(0, full(2), 1.0) + m.receive(1, rebuilt(2), 1.0)
    out += m.receive(0, full(3), 1.0) + m.receive(1, full(3), 1.0)
    # stream 3 is silent and stream 2 has not reached 2: version 2 may still confirm
    assert out == [] and m.release(3.0) == []
    assert keys(m.release(6.5)) == [(3, 0)] and m.skipped == 1


def test_a_lying_stream_cannot_inject_and_delays_only_until_every_correct_stream_passed():
    m = WatchMerger(n=4, f=1)
    for i in range(4):
        m.opened(i)
    out = m.receive(3, full(0, 7), 0.0) + m.receive(3, full(1) + b"\x20\x01", 0.0)
    for v in (1, 2):
        out += m.receive(0, full(v), 0.0) + m.receive(1, full(v), 0.0)
    assert out == []            # stream 2 could still confirm the liar's (0, 7)
    out += m.receive(2, full(1), 0.0)
    assert keys(out) == [(1, 0), (2, 0)] and m.skipped == 1
    assert pb.ScheduleUpdate.FromString(out[0]).replica == 0       # not the liar's bytes


def test_updates_before_since_version_and_repeats_after_a_reconnect_are_dropped():
    m = WatchMerger(n=4, f=1, since_version=5)
    for i in (0, 1):
        m.opened(i)
    out = m.receive(0, full(4), 0.0) + m.receive(1, full(4), 0.0)
    out += m.receive(0, full(5), 0.0) + m.receive(1, full(5), 0.0)
    m.opened(0)                                        # stream 0 reconnects from 5
    out += m.receive(0, full(5), 0.0) + m.receive(0, full(6), 0.0)
    out += m.receive(1, full(6), 0.0)
    assert keys(out) == [(5, 0), (6, 0)]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_interleaving_releases_the_committed_sequence_in_order(data):
    """n = 3f+1 streams; f of them send garbage keys and bytes; the correct ones send the
    same updates, some restarted ones the rebuilt form of a prefix. Whatever the interleaving,
    every update is released once, in order, none lost."""
    f = data.draw(st.integers(1, 2), label="f")
    n = 3 * f + 1
    versions = sorted(set(data.draw(st.lists(st.integers(1, 40), min_size=1, max_size=15))))
    updates = [(v, s) for v in versions for s in range(data.draw(st.integers(1, 2)))]
    faulty = set(data.draw(st.permutations(range(n)))[:f])
    streams = {}
    for i in range(n):
        if i in faulty:
            junk = data.draw(st.lists(st.tuples(st.integers(0, 45), st.integers(0, 2)),
                                      max_size=10))
            streams[i] = [full(v, s) + b"\x20\x01" for v, s in sorted(junk)]
        else:
            cut = data.draw(st.integers(0, 1)) and data.draw(st.integers(0, len(updates)))
            cut = cut if i < f else 0                  # at most f restarted replicas
            streams[i] = [rebuilt(*k) for k in updates[:cut]] + \
                [full(*k) for k in updates[cut:]]
    m = WatchMerger(n=n, f=f)
    out, heads = [], {i: 0 for i in range(n)}
    for i in range(n):
        m.opened(i)
    while any(heads[i] < len(streams[i]) for i in range(n)):
        i = data.draw(st.sampled_from([j for j in range(n) if heads[j] < len(streams[j])]))
        out += m.receive(i, streams[i][heads[i]], 0.0)
        heads[i] += 1
    assert keys(out) == updates
    assert all(u in (full(*k), rebuilt(*k)) for u, k in zip(out, updates))


def test_a_stream_that_floods_made_up_future_keys_is_muted_and_memory_stays_bounded():
    from agora.coordinator.watch_merge import MAX_PENDING

    m = WatchMerger(n=4, f=1)
    for i in range(4):
        m.opened(i)
    out = []
    for v in range(1, 2 * MAX_PENDING):             # replica 3: a million versions ahead
        out += m.receive(3, full(10**6 + v), 0.0)
        assert len(m.pending) <= MAX_PENDING + 1
    assert 3 in m.muted and not out
    for v in range(5):                               # the correct streams go on as ever
        out += m.receive(0, full(v), 1.0)
        out += m.receive(1, full(v), 1.0)
    assert keys(out) == [(v, 0) for v in range(5)]
    assert m.receive(3, full(5), 1.0) == []          # muted: not counted towards f+1
    m.opened(3)                                      # until it reconnects
    assert keys(m.receive(3, full(5), 1.0) + m.receive(0, full(5), 1.0)) == [(5, 0)]


def test_a_stream_that_sends_a_key_twice_is_muted_and_holds_no_variants():
    """A review: one faulty stream sent 50,000 bodies for one future key; the key count
    stayed 1, nothing was muted, every message rescanned every variant (171 s of CPU, 11 MB).
    A correct stream sends each key once, in order: a second body, or a key going back, mutes
    it; and unconfirmed bytes are bounded as keys are."""
    from agora.coordinator import watch_merge

    m = WatchMerger(n=4, f=1)
    for i in range(4):
        m.opened(i)
    assert m.receive(3, full(9), 0.0) == []
    for k in range(1000):                              # other bodies for the same key
        u = pb.ScheduleUpdate(version=9)
        u.round.round = k
        m.receive(3, u.SerializeToString(), 0.0)
    assert 3 in m.muted and m.pending == {} and m.pending_bytes == 0
    out = []
    for v in range(3):                                 # the correct streams go on
        out += m.receive(0, full(v), 1.0) + m.receive(1, full(v), 1.0)
    assert keys(out) == [(0, 0), (1, 0), (2, 0)] and m.pending_bytes == 0
    assert m.receive(2, full(1), 1.0) == [] and 2 not in m.muted     # behind: ignored
    m.receive(2, full(0), 1.0)
    assert 2 in m.muted                                # going back: faulty
    m2 = WatchMerger(n=4, f=1)                         # bytes, not only keys, are bounded
    for i in range(4):
        m2.opened(i)
    big = 2 ** 20
    for v in range(1, 100):
        u = pb.ScheduleUpdate(version=10**6 + v)
        u.allocations.add(job_id="x" * big, task_id="t", instance_end=1)
        m2.receive(3, u.SerializeToString(), 0.0)
        assert m2.pending_bytes <= watch_merge.MAX_PENDING_BYTES + 2 * big
    assert 3 in m2.muted


# ---- refusals of compacted history (merged_watch over this test's fake channels) ----------

class _Channel:
    """This test's fake of a replica's channel: its WatchSchedule refuses (OUT_OF_RANGE, as
    a replica restarted from a checkpoint whose recent updates do not reach back) or streams
    ``updates`` then waits."""

    def __init__(self, refuse: bool, updates: list[bytes], asked: list[int], i: int) -> None:
        self.refuse, self.updates, self.asked, self.i = refuse, updates, asked, i

    def unary_stream(self, *a, **k):
        import asyncio

        import grpc

        async def stream(_request):
            self.asked.append(self.i)
            if self.refuse:
                raise grpc.aio.AioRpcError(grpc.StatusCode.OUT_OF_RANGE, grpc.aio.Metadata(),
                                           grpc.aio.Metadata(), details="compacted away")
            for u in self.updates:
                yield u
            await asyncio.Event().wait()
        return stream


def _watch(refusing: set[int]) -> tuple[list[int], list[int]]:
    import asyncio

    from agora.coordinator.watch_merge import merged_watch

    updates = [full(v) for v in range(5, 9)]
    asked: list[int] = []
    chans = [_Channel(i in refusing, updates, asked, i) for i in range(4)]

    async def main():
        got = []
        async for u in merged_watch(chans, 1, [0, 1], lambda *a: pb.ReadAuth(), 5):
            got.append(u.version)
            if len(got) == len(updates):
                return got
    return asyncio.run(asyncio.wait_for(main(), 20)), sorted(set(asked))


def test_a_watch_two_replicas_refuse_is_served_by_the_other_two():
    """The preferred f+1 both refuse (restarted replicas); the other two hold the updates:
    the client asks them instead of giving up (the review's finding)."""
    got, asked = _watch({0, 1})
    assert got == [5, 6, 7, 8] and asked == [0, 1, 2, 3]


def test_a_watch_more_than_2f_replicas_refuse_is_refused():
    import pytest

    from agora.coordinator.watch_merge import WatchRefused

    with pytest.raises(WatchRefused, match="compacted away"):
        _watch({0, 1, 2})


def test_a_muted_stream_is_opened_again_and_heard_from_then_on(monkeypatch):
    """A second review: a muted stream was heard again only once it reconnected, which a
    stream that stays connected never does -- correct streams muted by a bound (a long
    history replayed) left fewer than f+1 to confirm. Its stream is cut and opened again."""
    import asyncio

    from agora.coordinator import watch_merge

    monkeypatch.setattr(watch_merge, "MUTED_REOPEN_S", 0.05)
    asked: list[int] = []

    class Chan:
        def __init__(self, i: int) -> None:
            self.i = i

        def unary_stream(self, *a, **k):
            async def stream(_request):
                asked.append(self.i)
                first = asked.count(self.i) == 1
                if self.i == 1 and first:              # goes back on its first stream
                    yield full(6)
                    yield full(5)
                for v in range(5, 9):
                    yield full(v)
                await asyncio.Event().wait()
            return stream

    async def main():
        got = []
        async for u in watch_merge.merged_watch([Chan(i) for i in range(4)], 1, [0, 1],
                                                lambda *a: pb.ReadAuth(), 5, hedge_s=5.0):
            got.append(u.version)
            if len(got) == 4:
                return got
    got = asyncio.run(asyncio.wait_for(main(), 20))
    assert got == [5, 6, 7, 8] and asked.count(1) == 2 and 2 not in asked
