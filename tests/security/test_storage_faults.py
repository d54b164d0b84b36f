"""Finding 6 (issue 16), the replica's log: a corrupt database exited with a raw traceback,
and a write-ahead log cut short rolled a replica back without a word. Now the first is one
line that names the file and says what to do; the second is logged when the replica opens
its log (it then catches up from its peers, as the restart tests show)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

from agora.deploy.local_group import LocalGroup
from agora.coordinator.pbft.storage import SqliteStorage
from agora.coordinator.pbft.wal import wal_cut_short

ROOT = Path(__file__).resolve().parents[2]


def test_a_corrupt_database_is_one_line_naming_the_file_and_the_remedy(tmp_path):
    g = LocalGroup(tmp_path, n=4, clients=["operator"], cluster="default", key_seed=b"s")
    db = g.config.database(0)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"not a database " * 200)
    p = subprocess.run([sys.executable, "-m", "agora.deploy.cli_coordinator", "coordinator",
                        "--config", str(tmp_path / "coordinator.yaml"), "--replica", "0",
                        "--log-level", "ERROR"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert str(db) in line and "not a readable SQLite database" in line
    assert "move it aside" in line and "catches up from its peers" in line


def test_a_wal_cut_short_is_detected_and_logged(tmp_path, caplog):
    db = tmp_path / "r.sqlite"
    s = SqliteStorage(db, synchronous="NORMAL")
    s.db.execute("PRAGMA wal_autocheckpoint=0")     # keep the commits in the WAL
    for i in range(20):
        s.db.execute("BEGIN")
        s.db.execute("CREATE TABLE IF NOT EXISTS t (x)")
        s.db.execute("INSERT INTO t VALUES (?)", (b"x" * 3000,))
        s.db.execute("COMMIT")
    wal = Path(f"{db}-wal")
    copy = tmp_path / "copy.sqlite"
    shutil.copy(db, copy)
    data = wal.read_bytes()
    assert wal_cut_short(db) == 0 and len(data) > 10_000
    Path(f"{copy}-wal").write_bytes(data[:-1000])               # a copy cut short
    assert wal_cut_short(copy) > 0
    with caplog.at_level(logging.WARNING, logger="agora.storage"):
        SqliteStorage(copy, synchronous="NORMAL").close()
    assert any("partial frame" in r.getMessage() and "catches up from its peers"
               in r.getMessage() for r in caplog.records), caplog.records
    s.close()
