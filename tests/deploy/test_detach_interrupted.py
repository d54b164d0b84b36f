"""``agora up --detach`` interrupted while the service starts (Ctrl-C, SIGTERM) stops what it
started, as ``agora up`` without ``--detach`` does (running-jobs.md: "also while it is still
starting ... nothing is left running"). A probe: it printed "stopped by SIGTERM" and the
service, in its own session, went on and served. The service here is a stand-in (this test's
script: it starts, never serves, and records the SIGTERM it gets); no Ray is involved."""

from __future__ import annotations

import sys
import textwrap
from types import SimpleNamespace

import pytest

from tests.processes import alive, wait_for

pytestmark = pytest.mark.timeout(60)

SERVICE = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    def stop(*_):
        (out / "stopped").write_text("SIGTERM")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    (out / "started").write_text("yes")
    time.sleep(60)
""")


def test_an_interrupt_while_it_starts_stops_the_service_it_started(tmp_path, monkeypatch):
    from agora.deploy import live

    out = tmp_path / "out"
    monkeypatch.setattr("agora.agents.process.python_module",
                        lambda *a: [sys.executable, "-c", SERVICE, str(out)])
    started = {}

    def interrupted(p, *_a):
        started["pid"] = p.pid
        wait_for(lambda: (out / "started").exists(), what="the service to start")
        raise KeyboardInterrupt("SIGTERM")      # what the CLI makes of a SIGTERM

    monkeypatch.setattr(live, "_until_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        live.detach(SimpleNamespace(out=str(out)), "up.yaml")
    assert (out / "stopped").read_text() == "SIGTERM"
    assert not alive(started["pid"])
