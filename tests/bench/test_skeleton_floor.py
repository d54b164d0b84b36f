"""The floor under the coordinator's promises (bench/skeleton_floor.py): its parts do the
work they are named for, a changed skeleton is refused rather than measured without them,
and, where ../shared/anchors is here, a short run commits requests whose bids the real
schedule admits, writing the log."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from bench.coordinator_vs_skeleton import DEFAULT_SKELETON, _port_base
from bench.floor_work import FloorWork, NoLog, ReplicaWork
from bench.skeleton_floor import PATCHES, floor_source, main
from agora.coordinator.validate import Refusal

pytestmark = pytest.mark.timeout(120)


def test_a_changed_skeleton_is_refused_naming_what_is_missing(tmp_path):
    fake = tmp_path / "pbft_skel.py"
    fake.write_text("\n".join(old for old, _ in PATCHES[1:]))     # the first one missing
    with pytest.raises(RuntimeError, match="pubkeys = None"):
        floor_source(fake)


@pytest.mark.skipif(not DEFAULT_SKELETON.is_file(), reason="../shared/anchors is not here")
def test_every_patch_lands_in_the_shared_skeleton():
    src = floor_source(DEFAULT_SKELETON)
    for _, new in PATCHES:
        assert new in src
    compile(src, "pbft_skel.py", "exec")


def test_the_parts_do_their_work(tmp_path):
    work = FloorWork(str(tmp_path), batch=1, per=3, features={"app", "log", "signed"})
    r0, r1 = work.replica(0, 4, 1), work.replica(1, 4, 1)
    payload = work.payload(1, 3)
    req = [1, payload, b"sig"]
    r0.admit(req)                                   # a valid part passes the checks
    with pytest.raises(Refusal):                    # garbage is refused, as Agora refuses it
        r0.admit([2, bytes([1]) + b"\xff\xff", b"sig"])
    sig = r1.prepare(7, b"d" * 32)
    assert r0.prepare_ok(["P", 1, 0, 7, b"d" * 32, sig], 1)
    assert not r0.prepare_ok(["P", 1, 0, 7, b"e" * 32, sig], 1)    # another digest
    assert not r0.prepare_ok(["P", 2, 0, 7, b"d" * 32, sig], 1)    # another signer
    r0.pre_prepare(1, b"d" * 32, [req])
    r0.execute({"d": b"d" * 32, "batch": [req]}, 1)
    r0.storage.flush()
    assert (r0.bids, r0.admitted) == (3, 3)        # the real schedule admitted the 3 bids
    db = sqlite3.connect(tmp_path / "r0.db")
    assert db.execute("SELECT count(*) FROM pre_prepare").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM client").fetchone()[0] == 1


def test_without_its_parts_the_floor_skips_them(tmp_path):
    work = FloorWork(str(tmp_path), batch=1, per=1, features=set())
    r = ReplicaWork(work, 0, 4, 1)
    assert isinstance(r.storage, NoLog)
    assert r.prepare(1, b"d" * 32) == b""
    assert r.prepare_ok(["P", 1, 0, 1, b"d" * 32, b""], 0)
    r.admit([1, bytes([0]) + b"\xff", b""])         # not parsed: nothing raised
    r.execute({"d": b"d" * 32, "batch": [[1, work.payload(1, 1), b""]]}, 1)
    assert r.bids == 0


def test_bad_flags_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--floors", "app,disk"])
    assert "--floors" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--only", "4-99"])
    assert "--only" in capsys.readouterr().err


@pytest.mark.skipif(not DEFAULT_SKELETON.is_file(), reason="../shared/anchors is not here")
def test_a_short_floor_run_commits_and_admits(tmp_path):
    base = _port_base(4)
    p = subprocess.run([sys.executable, "-m", "bench.floor_work", str(DEFAULT_SKELETON),
                        str(tmp_path), "1", "--n", "4", "--batch", "1", "--window", "2",
                        "--conc", "2", "--sig", "1", "--assign", "5", "--secs", "3",
                        "--base", str(base)], capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "req/s committed" in p.stdout
    assert "admitted share 1.0000" in p.stdout
    db = sqlite3.connect(tmp_path / "r2.db")
    assert db.execute("SELECT count(*) FROM vote").fetchone()[0] > 10
