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


class QuorumWatch:
    """Tells the operator when replicas stop answering and when they answer again (a probe:
    with two of four replicas stopped nothing committed for a minute, and ``agora.log`` said
    nothing while the commands did). ``poll()``, at most every ``every_s``, starts a read
    of every replica's status on the system's loop and, once it is back (a replica that
    does not answer within the operator client's timeout is silent), returns a line per
    change: which replicas fell silent or answer again, and whether 2f+1 answer -- without
    them nothing new commits."""

    def __init__(self, system, every_s: float = 10.0) -> None:
        self.system, self.every_s = system, every_s
        config = system.group.config
        self.n, self.need = config.n, 2 * config.f + 1
        self.logs = system.group.log         # replica i -> its log file
        self.silent: set[int] = set()
        self._pending = None
        self._next = time.monotonic() + every_s

    def poll(self) -> list[str]:
        if self._pending is not None:
            if not self._pending.done():
                return []
            done, self._pending = self._pending, None
            try:
                statuses = done.result()
            except Exception:  # noqa: BLE001 - the loop busy or closing: ask again later
                return []
            return self.changes({i for i, s in enumerate(statuses) if isinstance(s, str)})
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + self.every_s
            self._pending = self.system.loop.spawn(self.system.operator.status())
        return []

    def changes(self, silent: set[int]) -> list[str]:
        """The lines for the replicas ``silent`` now, against the last poll's."""
        lines = []
        gone, back = sorted(silent - self.silent), sorted(self.silent - silent)
        had, has = self.n - len(self.silent), self.n - len(silent)
        self.silent = set(silent)
        names = lambda xs: ", ".join(str(x) for x in xs)
        if gone:
            where = "; its log: " if len(gone) == 1 else "; their logs: "
            lines.append(f"replica{'s' if len(gone) > 1 else ''} {names(gone)} "
                         f"{'do' if len(gone) > 1 else 'does'} not answer{where}"
                         + ", ".join(str(self.logs(i)) for i in gone))
        if has < self.need <= had:
            lines.append(f"only {has} of {self.n} replicas answer: nothing new commits (no "
                         f"job is admitted, placed or ended) until {self.need} do; work "
                         f"already running goes on")
        if back:
            lines.append(f"replica{'s' if len(back) > 1 else ''} {names(back)} "
                         f"answer{'' if len(back) > 1 else 's'} again")
        if had < self.need <= has:
            lines.append(f"{has} of {self.n} replicas answer again: commits resume")
        return lines
