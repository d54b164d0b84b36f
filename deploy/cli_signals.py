"""SIGTERM while an ``agora`` command runs (``deploy/cli.py``): stopped as Ctrl-C stops it,
saying so in one line (``timeout``, ``kill``, a batch scheduler) -- once."""

from __future__ import annotations

import signal


def sigterm_as_interrupt():
    """Make SIGTERM raise KeyboardInterrupt("SIGTERM") while a command runs (only where it
    would kill the process silently: the main thread, the default handler); returns what
    puts the handler back (``main`` runs in other programs' processes too: tests)."""
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return lambda: None
        signal.signal(signal.SIGTERM, _raise_sigterm)
    except ValueError:          # not the main thread
        return lambda: None

    def put_back() -> None:
        if signal.getsignal(signal.SIGTERM) in (_raise_sigterm, _stopping_already):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return put_back


def _raise_sigterm(signum, frame) -> None:
    # once: a second SIGTERM while the first one's stop runs (`timeout` signals the command
    # and then its process group) raised inside asyncio's clean-up of the tasks it was
    # cancelling, and a probe got 90 lines of traceback after the one line
    signal.signal(signal.SIGTERM, _stopping_already)
    raise KeyboardInterrupt("SIGTERM")


def _stopping_already(signum, frame) -> None:
    """SIGTERM after the first: the command is stopping already."""
