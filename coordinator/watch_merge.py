"""Merging the watch streams of n replicas into one ordered stream of confirmed updates.

Every correct replica streams the committed updates in (version, sub) order, and for a given
(version, sub) every correct replica whose ring buffer holds it sends the same bytes. A
replica that restarted lacks the older part of its ring and sends those versions rebuilt from
its state (allocations and instance changes only, and only versions that have some): other
bytes, or nothing, for the same key. So a key is *confirmed* by f+1 streams sending identical
bytes, and different keys can be confirmed in any order.

``WatchMerger`` releases confirmed updates strictly in key order: a confirmed key waits while
a smaller key can still be confirmed. A smaller key is given up when it cannot be confirmed
any more (each variant's senders plus the streams that may still send it are short of f+1:
a correct stream sends a key once, in order) or, as a last resort against streams that stay
silent, when it has waited ``patience_s`` with every stream open while a larger key is
confirmed -- measured from when that larger key was confirmed, not from when the smaller one
was first seen: a faulty stream that announced the next key early with made-up bytes had its
clock run out before the real update existed, and the real one was skipped the moment the
next was confirmed, before the other correct streams' copies arrived (a review). Given-up
keys are counted (``skipped``); with at most f faulty replicas and 2f+1
correct ones sending one of two forms, f+1 of them agree, so this happens only when streams
are silent or restarted replicas skip a version.

A restarted replica's rebuilt version is ONE update, (v, 0) without ``round``, holding what
every command of the batch that made v allocated and ended: once it is released, the rest of
version v is done (the ring's (v, 1), ... repeat it; a faulty stream copying a restarted
one's bytes got them applied twice: a review), and ``merged_watch`` gives it sub
``WHOLE_VERSION`` so that a follower's position covers the whole version.

Keys waiting are bounded (``MAX_PENDING``): past it, the stream that sent the most of the
keys that fewer than f+1 streams sent is muted until it reconnects, and what it sent is
dropped (counting only keys one stream alone sent, f >= 2 faulty streams sending the same
made-up keys were never counted, and the correct stream first to send each real key was
muted instead, for good: a review). A correct stream sends
keys the others send too, so only one far ahead of every other stream could be muted, and
f+1 of the others still agree; a faulty stream's made-up future keys filled the client's
memory (review).

Messages read but not yet merged are bounded too (``BACKLOG`` a stream, and
``BACKLOG_BYTES`` of one stream's): a consumer slower
than the streams (a site agent on a saturated machine) leaves the rest in gRPC's flow
control and then in the replicas' per-watcher queues, which cut off a watcher too far
behind (it watches again from where it stopped), instead of in this process's memory.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import AsyncIterator

import grpc
from google.protobuf.message import DecodeError

from agora.protos.agora.v1 import coordinator_pb2 as pb

Key = tuple[int, int]
MAX_PENDING = 8192
"""Keys a merger holds unconfirmed before it mutes the stream that alone sent most of them."""
MAX_PENDING_BYTES = 64 * 2 ** 20
"""Bytes of unconfirmed updates a merger holds before it does the same."""
MUTED_REOPEN_S = 5.0
"""Seconds after which a muted stream is opened again (it is heard from then on)."""
BACKLOG = 32
"""Messages read from the streams and not yet merged, per stream."""
BACKLOG_BYTES = 16 * 2 ** 20
"""Bytes read from one stream and not yet merged: past it (one message always passes) the
stream waits -- counted in messages alone, a faulty replica's 64 MiB messages made a slow
follower hold gigabytes (a review)."""


WHOLE_VERSION = 1 << 30
"""The sub a rebuilt update is yielded with: it covers its version (``start_position``'s)."""


def rebuilt(u: pb.ScheduleUpdate) -> bool:
    """Is ``u`` a replica's rebuilt form of a whole version (``watch_history.history``: sub 0, no
    round; every update a replica publishes has its round)?"""
    return u.sub == 0 and not u.HasField("round")


def whole_version(key: Key, data: bytes) -> bool:
    """``rebuilt``, of update ``data`` of ``key`` (parsed only for a version's first sub)."""
    return key[1] == 0 and rebuilt(pb.ScheduleUpdate.FromString(data))


def update_key(data: bytes) -> Key:
    """(version, sub) of a serialized ScheduleUpdate, without parsing its body."""
    k = pb.UpdateKey.FromString(data)
    return k.version, k.sub


class WatchMerger:
    def __init__(self, n: int, f: int, since_version: int = 0,
                 patience_s: float = 5.0) -> None:
        self.n, self.need, self.patience_s = n, f + 1, patience_s
        self.last: Key = (since_version - 1, 1 << 31)   # keys <= last are done
        self.pos: dict[int, Key] = {}                     # last key each stream sent
        self.open: set[int] = set()
        self.pending: dict[Key, dict[bytes, set[int]]] = {}
        self.first: dict[Key, float] = {}
        self.confirmed: dict[Key, float] = {}
        """when each waiting key first had f+1 identical copies"""
        self._heap: list[Key] = []
        self.skipped = 0
        self.junk = 0
        """bytes a stream sent that were no update"""
        self.muted: set[int] = set()
        """streams whose updates are ignored until they reconnect (``MAX_PENDING``, or a
        key sent out of order)"""
        self.pending_bytes = 0

    def opened(self, i: int) -> None:
        """Stream ``i`` (re)connected: it may send any key again, from ``last`` on."""
        self.open.add(i)
        self.pos.pop(i, None)
        self.muted.discard(i)

    def receive(self, i: int, data: bytes, now: float) -> list[bytes]:
        """Stream ``i`` sent ``data``; returns the updates now released, in order. Bytes
        that are no update (only a faulty replica sends them) are counted and dropped: they
        raised out of the merge and ended the watch of every client listening to that
        replica (review)."""
        try:
            key = update_key(data)
        except DecodeError:
            self.junk += 1
            return self.release(now)
        if i in self.muted:
            return self.release(now)
        if i in self.pos and key <= self.pos[i]:
            # a correct stream sends each key once, in order: one that sent a key again
            # (another body for it) or went back is faulty -- its variants of one key grew
            # without bound, each rescanned per message (a review: 50,000 of them, 171 s)
            self._mute(i)
            return self.release(now)
        self.pos[i] = key
        if key > self.last:
            if key not in self.pending:
                self.pending[key] = {}
                self.first[key] = now
                heapq.heappush(self._heap, key)
            who = self.pending[key].get(data)
            if who is None:
                who = self.pending[key][data] = set()
                self.pending_bytes += len(data)
            who.add(i)
            if len(who) >= self.need and key not in self.confirmed:
                self.confirmed[key] = now
            if len(self.pending) > MAX_PENDING or self.pending_bytes > MAX_PENDING_BYTES:
                self._mute_the_loudest()
        return self.release(now)

    def _mute_the_loudest(self) -> None:
        """Mute the stream that sent the most of the waiting keys fewer than f+1 streams
        sent; drop what it sent."""
        short: dict[int, int] = {}
        for variants in self.pending.values():
            senders = set().union(*variants.values())
            if len(senders) < self.need:
                for j in senders:
                    short[j] = short.get(j, 0) + 1
        if not short:
            return
        self._mute(max(sorted(short), key=short.get))

    def _mute(self, loud: int) -> None:
        """Ignore stream ``loud`` until it reconnects; drop what only it sent."""
        self.muted.add(loud)
        for key in list(self.pending):
            variants = self.pending[key]
            for data in list(variants):
                variants[data].discard(loud)
                if not variants[data]:
                    del variants[data]
                    self.pending_bytes -= len(data)
            if not variants:
                del self.pending[key], self.first[key]
            if key in self.confirmed and (key not in self.pending or max(
                    len(w) for w in variants.values()) < self.need):
                del self.confirmed[key]
        self._heap = list(self.pending)
        heapq.heapify(self._heap)

    def release(self, now: float) -> list[bytes]:
        out = []
        while self._heap:
            key = self._heap[0]
            variants = self.pending[key]
            done = key
            if key <= self.last:
                pass               # in a version released whole (rebuilt): done already
            else:
                data, who = max(variants.items(), key=lambda kv: len(kv[1]))
                if len(who) >= self.need:
                    out.append(data)
                    if whole_version(key, data):
                        done = (key[0], 1 << 31)
                elif self._alive(key, variants) and not self._timed_out(key, now):
                    break
                else:
                    self.skipped += 1
            heapq.heappop(self._heap)
            self.pending_bytes -= sum(len(d) for d in variants)
            del self.pending[key], self.first[key]
            self.confirmed.pop(key, None)
            self.last = max(self.last, done)
        return out

    def head_waiting_since(self) -> float | None:
        """When the oldest unreleased key was first seen (None: nothing waits)."""
        return self.first[self._heap[0]] if self._heap else None

    def patience_due(self) -> float | None:
        """When the oldest unreleased key is given up for patience (None: no later key is
        confirmed, so it is not)."""
        if not self._heap or not self.confirmed:
            return None
        return max(self.first[self._heap[0]], min(self.confirmed.values())) + self.patience_s

    def _alive(self, key: Key, variants: dict[bytes, set[int]]) -> bool:
        sent = set().union(*variants.values())
        may_still = sum(1 for j in range(self.n)
                        if j not in sent and self.pos.get(j, (-1, -1)) < key)
        return max(len(w) for w in variants.values()) + may_still >= self.need

    def _timed_out(self, key: Key, now: float) -> bool:
        if len(self.open) < self.n or now - self.first[key] < self.patience_s:
            return False
        return any(k > key and now - t >= self.patience_s
                   for k, t in self.confirmed.items())


class WatchRefused(Exception):
    """More than 2f replicas refused the watch, so no f+1 can stream it: OUT_OF_RANGE (the
    history it starts from was compacted away, ``coordinator/compaction.py``: read the ledger
    and watch from its version) or INVALID_ARGUMENT (a ``since_version`` far past the
    schedule: asking again cannot help -- a probe's ``agora schedule watch`` asked every
    0.5 s for ever, saying nothing)."""


FINAL = (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INVALID_ARGUMENT)
"""a replica's refusal of a watch that asking again cannot change"""


async def merged_watch(channels, f: int, preferred: list[int], read_auth,
                       since_version: int = 0, *, hedge_s: float = 0.25,
                       patience_s: float = 5.0) -> AsyncIterator[pb.ScheduleUpdate]:
    """``CoordinatorClient.watch`` over ``channels`` (one per replica): f+1 streams first
    (``preferred`` first), all n once an update waited ``hedge_s`` unconfirmed, merged by a
    ``WatchMerger``; ``read_auth(method, since, replica)`` signs each stream's request."""
    n = len(channels)
    queue: asyncio.Queue = asyncio.Queue(BACKLOG * n)
    merger = WatchMerger(n, f, since_version, patience_s)
    queued = [0] * n                       # bytes of each stream in ``queue`` (BACKLOG_BYTES)
    room = [asyncio.Event() for _ in range(n)]

    async def pump(i: int, after_s: float = 0.0) -> None:
        method = channels[i].unary_stream("/agora.v1.Coordinator/WatchSchedule",
                                          request_serializer=None,
                                          response_deserializer=None)
        await asyncio.sleep(after_s)
        while True:
            since = max(since_version, merger.last[0])
            await queue.put((i, None))
            try:
                async for data in method(pb.WatchRequest(
                        since_version=since, auth=read_auth("WatchSchedule", since, i))
                        .SerializeToString()):
                    while queued[i] and queued[i] + len(data) > BACKLOG_BYTES:
                        room[i].clear()
                        await room[i].wait()
                    queued[i] += len(data)
                    await queue.put((i, data))
            except grpc.aio.AioRpcError as e:
                if e.code() in FINAL:
                    await queue.put((i, e))
            await asyncio.sleep(0.5)

    order = preferred + [i for i in range(n) if i not in preferred]
    tasks = {i: asyncio.ensure_future(pump(i)) for i in order[:f + 1]}
    refused: dict[int, str] = {}
    reopening: set[int] = set()

    def reopen_muted() -> None:
        """A muted stream is heard again only once it reconnects: its stream is cut and
        opened again a while later (a stream ahead of the others, correct, was muted for
        good while it stayed connected: a review)."""
        for j in merger.muted - reopening:
            if j in tasks:
                tasks[j].cancel()
                tasks[j] = asyncio.ensure_future(pump(j, MUTED_REOPEN_S))
                reopening.add(j)

    def listen_to_all() -> None:
        for j in order:
            if j not in tasks:
                tasks[j] = asyncio.ensure_future(pump(j))
    loop = asyncio.get_running_loop()
    try:
        while True:
            timeout, waiting = None, merger.head_waiting_since()
            if waiting is not None:
                due = waiting + hedge_s if len(tasks) < n else merger.patience_due()
                timeout = None if due is None else due - loop.time() + 0.001
                if timeout is not None and timeout <= 0 and len(tasks) == n:
                    timeout = None         # past patience: wait for news
                timeout = None if timeout is None else max(0.0, timeout)
            try:
                i, data = await asyncio.wait_for(queue.get(), timeout)
            except asyncio.TimeoutError:
                listen_to_all()            # f+1 streams did not agree in time: all n
                released = merger.release(loop.time())
            else:
                if isinstance(data, bytes):
                    queued[i] -= len(data)
                    room[i].set()
                if data is None:
                    merger.opened(i)
                    reopening.discard(i)
                    continue
                if isinstance(data, grpc.aio.AioRpcError):
                    # a replica whose recent updates do not reach back (one restarted from a
                    # checkpoint) refuses what others may serve: ask them all; give up once
                    # no f+1 replicas are left that could agree on the stream
                    refused[i] = data.details()
                    if len(refused) > 2 * f:
                        raise WatchRefused(data.details())
                    listen_to_all()
                    continue
                refused.pop(i, None)
                released = merger.receive(i, data, loop.time())
                if merger.muted:
                    reopen_muted()
            for data in released:
                u = pb.ScheduleUpdate.FromString(data)
                if rebuilt(u):
                    u.sub = WHOLE_VERSION      # the whole version (module doc)
                yield u
    finally:
        for t in tasks.values():
            t.cancel()
