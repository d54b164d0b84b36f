"""What a serving ``agora up`` follows and prints (``deploy/live.py``): the committed ledger
followed by the operator's client, with the notices an operator must hear of (nodes down or
up, sites lapsed or back), and the progress line."""

from __future__ import annotations

import collections
import sys
import time


class Follower:
    """The committed ledger, followed by the operator's client: a ledger query, then the
    update stream (what the progress line counts)."""

    def __init__(self, system) -> None:
        from agora.coordinator.ledger_follow import follow_ledger

        self.system = system
        self.state = {"ledger": None, "version": 0, "round": 0}
        self.notices: collections.deque[str] = collections.deque(maxlen=1000)
        """what an operator must hear of: nodes down or up, sites lapsed or back (a probe:
        a node whose Ray node died was placed around in silence)"""
        self.lapsed: set[str] = set()
        self.future = system.loop.spawn(follow_ledger(system.operator, system.group.config,
                                                      self.state, on_update=self._noticed,
                                                      on_view=self._viewed))

    def _viewed(self, view) -> None:
        """The lapsed sites as the ledger query found them: a site lapsed in a resumed state
        that came back got no "is back" line (a probe)."""
        self.lapsed = {s.site for s in view.sites if s.lapsed and not s.removed}

    def _noticed(self, u) -> None:
        for n in u.nodes:
            self.notices.append(f"node {n.node} is up again (its site says so)" if n.up else
                                f"node {n.node} is down (its site says so); what ran there "
                                f"is placed again")
        lapsed = self.lapsed
        for st in u.sites:
            if st.lapsed and not st.removed and st.site not in lapsed:
                lapsed.add(st.site)
                self.notices.append(f"site {st.site} lapsed (its agent went silent, or it "
                                    f"held an instance past its timeout_s); its running "
                                    f"work is placed again")
            elif not st.lapsed and st.site in lapsed:
                lapsed.discard(st.site)
                self.notices.append(f"site {st.site} is back")

    def drain(self) -> list[str]:
        out = []
        while self.notices:
            out.append(self.notices.popleft())
        return out

    def summary(self, timeout_s: float = 10.0) -> dict:
        """The progress line's counts, read on the loop that applies the updates: read from
        another thread, a ledger that grows (thousands of jobs submitted at once) changes
        size under the count and the read raised -- which stopped the whole service. {}
        when the loop is too busy to answer within ``timeout_s`` (the line waits)."""
        import concurrent.futures

        from agora.coordinator.ledger_follow import ledger_summary

        async def on_loop() -> dict:
            return ledger_summary(self.state)

        try:
            return self.system.loop.run(on_loop(), timeout_s)
        except concurrent.futures.TimeoutError:
            return {}

    def close(self) -> None:
        self.future.cancel()


def stamp() -> str:
    """The local time a line of ``agora.log`` carries (a probe could not place the lapses of
    a fault in time: the lines had none)."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


class ProgressLine:
    """A line rewritten in place on a terminal; a line every ``every_s`` in a log."""

    def __init__(self, echo, every_s: float = 15.0) -> None:
        self.tty = sys.stderr.isatty()
        self.every_s, self.t = every_s, 0.0

    def show(self, s: dict) -> None:
        if not s:
            return
        line = (f"jobs: {s['pending']} pending, {s['running']} running, {s['done']} done, "
                f"{s['failed']} failed, {s['cancelled']} cancelled | instances running "
                f"{s['instances_running']} | round {s['round']} | version {s['version']}")
        if self.tty:
            print("\r\033[K" + line, end="", file=sys.stderr, flush=True)
        elif time.monotonic() - self.t >= self.every_s:
            self.t = time.monotonic()
            print(f"{stamp()} {line}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
