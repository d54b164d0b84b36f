"""``agora up``'s stop signal (``deploy/live._Stop``): the handler runs on the main thread,
which may hold the stop event's lock inside ``event.wait()`` at that moment; setting the event
from the handler then waited for that lock for ever (a probe's Ctrl-C left ``agora up``
running, once in five tries)."""

from __future__ import annotations

import signal
import threading

import pytest


@pytest.mark.timeout(60)
def test_the_stop_handler_returns_while_its_thread_holds_the_events_lock():
    from agora.deploy.live import _Stop

    stop = _Stop()
    returned = threading.Event()

    def main_thread_in_wait():
        with stop.event._cond:           # where Event.wait holds it around its checks
            stop._on(signal.SIGINT, None)
            returned.set()

    t = threading.Thread(target=main_thread_in_wait, daemon=True)
    t.start()
    assert returned.wait(5), "the handler blocked on the lock its own thread held"
    assert stop.event.wait(5) and stop.signal == "SIGINT"
