"""``agora schedule watch`` ends when the service stops, with one line and exit 1, and Ctrl-C
or SIGTERM end it as they end every command (130 / 143, one line). A probe: after agora down
its watches went on silently for good -- and missed what committed once it ran again -- and a
signal ended one with exit 0 and no word, as if its --count was done. Real replica processes
and the real command in a subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.coordinator.grpc_helpers import ROOT, job, make_group, run

pytestmark = pytest.mark.timeout(120)


def watch(cfg) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agora.deploy.cli", "schedule", "watch",
                             "--config", str(cfg), "--json"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def started(p: subprocess.Popen) -> None:
    # the watch is open once the command has run a while without ending
    time.sleep(4.0)
    assert p.poll() is None, p.communicate()


def test_a_watch_ends_with_one_line_when_the_service_stops(tmp_path):
    g = make_group(tmp_path)
    with g.serving():
        async def submit():
            async with g.client("site:east") as east:
                assert (await east.submit_jobs([job("j1")])).accepted == 1
        run(submit())
        p = watch(g.tmp / "coordinator.yaml")
        started(p)
    t0 = time.monotonic()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1, (out, err)
    assert time.monotonic() - t0 < 20
    assert err.strip().splitlines() == ["agora schedule: the service stopped; the watch "
                                        "ended"], err


@pytest.mark.parametrize("sig, code, words", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_ends_a_watch_as_it_ends_every_command(tmp_path, sig, code, words):
    g = make_group(tmp_path)
    with g.serving():
        p = watch(g.tmp / "coordinator.yaml")
        started(p)
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
    assert p.returncode == code, (out, err)
    assert len(err.strip().splitlines()) == 1 and words in err, err
