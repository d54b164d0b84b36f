"""The upkeep of a replica's SQLite write-ahead log: a check that it is whole before the
log is opened (``wal_cut_short``), and the thread that folds it into the database once per
checkpoint interval (``WalCheckpointer``). Used by ``storage.SqliteStorage``."""

from __future__ import annotations

import logging
import sqlite3
import struct
import threading
from pathlib import Path

log = logging.getLogger("agora.storage")


def wal_cut_short(db: Path) -> int:
    """Bytes at the end of ``db``'s write-ahead log that are not a whole frame (0 when the
    WAL is absent or whole). SQLite ignores a partial last frame on open -- and every frame
    after it -- so a WAL cut short (a full disk, a copy interrupted) silently rolls the
    database back to its last whole commit."""
    wal = Path(f"{db}-wal")
    try:
        size = wal.stat().st_size
        if size < 32:
            return size
        with open(wal, "rb") as f:
            header = f.read(32)
    except OSError:
        return 0
    page_size = struct.unpack(">I", header[8:12])[0]
    if page_size < 512:
        return size - 32
    return (size - 32) % (page_size + 24)


class WalCheckpointer:
    """Folds the WAL into the database (``PRAGMA wal_checkpoint(PASSIVE)``: never blocks
    the writer) on its own connection and daemon thread, when ``soon()`` asks -- after a
    checkpoint state or a log truncation was committed, i.e. once per checkpoint
    interval. SQLite releases the GIL while it copies, so the replica's event loop runs on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.runs = 0

    def soon(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wal-checkpoint",
                                            daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error as e:     # busy or gone: the next one catches up
                    log.debug("%s: WAL checkpoint skipped (%s)", self.path, e)
        finally:
            db.close()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
