"""The updates a replica keeps for watchers that (re)connect from a recent version
(``service.WatchSchedule``): the last ``most`` published updates, at most ``budget`` bytes,
kept serialized.

Kept as messages, 20,000 small updates held ~31 MiB of a replica's memory against 2.6 MB
serialized (measured 2026-12-03; a round's update of thousands of allocations is as many
times larger), and a soak of ``agora up`` saw each replica grow with every update until the
count bound. A watcher that starts from one of them pays a parse per update sent, once.
"""

from __future__ import annotations

from collections import deque
from typing import Iterator

from agora.protos.agora.v1 import coordinator_pb2 as pb

RECENT_UPDATES = 20_000
"""Updates kept, at most."""
RECENT_BYTES = 64 * 1024 * 1024
"""Bytes of updates kept, at most (the oldest go first; the newest is always kept)."""


class RecentUpdates:
    def __init__(self, most: int = RECENT_UPDATES, budget: int = RECENT_BYTES) -> None:
        self.most, self.budget = most, budget
        self._kept: deque[tuple[int, int, bytes]] = deque()
        self.bytes = 0

    def append(self, u: pb.ScheduleUpdate) -> None:
        """Keep ``u`` (a listener of the state: called with every update it publishes)."""
        data = u.SerializeToString()
        self._kept.append((u.version, u.sub, data))
        self.bytes += len(data)
        while len(self._kept) > self.most or (self.bytes > self.budget
                                              and len(self._kept) > 1):
            self.bytes -= len(self._kept.popleft()[2])

    def __len__(self) -> int:
        return len(self._kept)

    def snapshot(self) -> list[tuple[int, int, bytes]]:
        """(version, sub, bytes) of every update kept now, oldest first (taken before a watch
        streams older history, so that nothing is evicted under it)."""
        return list(self._kept)


def updates_since(kept: list[tuple[int, int, bytes]], version: int,
                  after: tuple[int, int]) -> Iterator[pb.ScheduleUpdate]:
    """The updates of ``kept`` (a ``snapshot``) of versions >= ``version`` and past ``after``
    ((version, sub)), in order."""
    for v, sub, data in kept:
        if v >= version and (v, sub) > after:
            yield pb.ScheduleUpdate.FromString(data)
