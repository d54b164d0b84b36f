"""Group commit for a replica's durable log: one storage commit (one fsync under FULL) per
group of inputs, with the group's actions delivered only after it (durable before sent).
Used by the replica host in ``coordinator/replica_host.py``."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

HEAVY_BYTES = 64 * 1024
"""A group writing more than this many bytes of data commits on the writer thread even under
NORMAL."""


def _heavy(stmts: list) -> bool:
    size = 0
    for _sql, args in stmts:
        for a in args:
            if isinstance(a, bytes):
                size += len(a)
    return size > HEAVY_BYTES


class GroupCommit:
    """The replica's storage with ``flush`` deferred to the host: the replica flushes after
    every input; the host commits once per group of inputs and only then delivers the
    group's actions, which keeps the replica's rule (durable before sent).

    With a storage that can record its writes (``SqliteStorage``: ``deferred``, ``take``,
    ``write``), the commit runs on one writer thread off the event loop: ``submit(actions,
    deliver)`` queues the group's writes, and ``deliver(actions)`` is called on the event loop
    once they are committed. While the writer waits for its fsync the pump goes on with the
    next inputs, and the writer commits every group queued meanwhile in one transaction
    (adaptive group commit). Groups are delivered in the order they were submitted; a group
    that wrote nothing still waits for the groups before it.

    Under NORMAL (no fsync) a commit is a write into the OS page cache, cheaper inline than
    handed to a thread, so groups commit inline -- except a *heavy* group (over
    ``HEAVY_BYTES`` of data: a checkpoint's state, a state transfer), which goes to the
    writer thread so that the event loop does not stall on it (SQLite releases the GIL while
    it writes); groups after it queue behind it until it is committed, keeping the order."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.deferrable = all(hasattr(inner, a) for a in ("deferred", "take", "write"))
        self.threaded = (self.deferrable
                         and getattr(inner, "synchronous", "FULL") != "NORMAL")
        """every group commits on the writer thread: a commit waits for the disk (an fsync:
        FULL, EXTRA); under NORMAL only heavy groups do (see the class doc)"""
        self._lock = threading.Condition()
        self._queue: list[tuple[list, list, Callable]] = []
        self._undelivered = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.commits = 0
        self.groups = 0
        self.on_failure: Callable[[], None] | None = None
        """called on the event loop once a commit failed (nothing is delivered after it)"""

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def flush(self) -> None:
        pass

    def commit(self) -> None:
        """Commit synchronously (start-up, shutdown, hosts without a writer thread)."""
        if self.deferrable and self.inner.deferred:
            self.inner.write(self.inner.take())
        else:
            self.inner.flush()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.deferrable:
            return
        self.commit()
        self.inner.deferred = True
        self._loop = loop
        self._thread = threading.Thread(target=self._writer, name="storage-writer",
                                        daemon=True)
        self._thread.start()

    def submit(self, actions: list, deliver: Callable[[list], None]) -> None:
        """Deliver ``actions`` once everything saved so far is durable."""
        if self._thread is None:
            self.commit()
            deliver(actions)
            return
        stmts = self.inner.take()
        if not stmts and not self._undelivered:
            deliver(actions)     # nothing written, nothing earlier waiting: send now
            return
        if not self.threaded and not self._undelivered and not _heavy(stmts):
            self.inner.write(stmts)   # the writer is idle: the connection is free
            deliver(actions)
            return
        self._undelivered += 1   # only touched on the event loop's thread
        with self._lock:
            self._queue.append((stmts, actions, deliver))
            self._lock.notify()

    def _writer(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if not self._queue and self._closed:
                    return
                groups, self._queue = self._queue, []
            stmts = [x for g in groups for x in g[0]]
            try:
                self.inner.write(stmts)
            except Exception:   # the disk failed: deliver nothing, stop the replica's output
                log.exception("storage commit failed; the replica sends nothing more")
                with self._lock:
                    self._closed = True
                if self.on_failure is not None:
                    try:
                        self._loop.call_soon_threadsafe(self.on_failure)
                    except RuntimeError:    # the loop is closed
                        pass
                return
            self.commits += 1
            self.groups += len(groups)
            try:
                self._loop.call_soon_threadsafe(self._delivered, groups)
            except RuntimeError:    # the loop is closed
                return

    def _delivered(self, groups) -> None:
        self._undelivered -= len(groups)
        for _stmts, actions, deliver in groups:
            deliver(actions)

    def stop(self) -> None:
        """Finish the queued commits (their actions are dropped) and stop the writer."""
        if self._thread is None:
            self.commit()
            return
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=30)
        self._thread = None
        self.commit()
