"""Keeps Python's cyclic garbage collector from pausing a replica in the middle of its work.

A replica holds a large, long-lived state (the ledger: a few objects per task instance). A
full collection walks all of it -- about 50 ms at 12,000 tasks on this machine -- and
CPython starts one whenever the survivors since the last one exceed a quarter of the
long-lived objects, i.e. at unpredictable moments under load: every request then in flight
waits (it showed as the coordinator benchmark's p99). The pacer moves what is alive at each
stable checkpoint into the permanent generation (``gc.freeze``), which collections skip, and
every ``full_every`` stable checkpoints unfreezes and collects once, so that cyclic garbage
among frozen objects (rare: the state has no cycles that die) is still reclaimed. Reference
counting frees everything else as always.

    pacer = GcPacer()
    pacer.stable(replica.h)     # after every pump round; acts when the checkpoint moved
"""

from __future__ import annotations

import gc


class GcPacer:
    def __init__(self, full_every: int = 32) -> None:
        self.full_every = full_every
        self.last = -1
        self.checkpoints = 0
        self.full = 0
        """full collections made (unfreeze + collect)"""

    def stable(self, h: int) -> None:
        if h == self.last:
            return
        self.last = h
        self.checkpoints += 1
        if self.checkpoints % self.full_every == 0:
            gc.unfreeze()
            gc.collect()
            self.full += 1
        gc.freeze()
