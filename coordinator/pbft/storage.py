"""Durable state of one replica, written before the message it justifies is sent.

A replica calls the ``save_*`` methods while handling one input and ``flush()`` before its
actions are returned, so everything an action depends on is durable when the transport sends
it. Restart = construct the Replica again on the same storage: it reloads its view, the
pre-prepares it accepted and the votes it sent (so it never votes differently for a
(view, seq) it voted on), its prepared certificates, checkpoints, and the committed log above
its latest checkpoint, which it re-executes to rebuild the application state.

``SqliteStorage`` uses WAL with ``synchronous=FULL`` by default: one fsync of the WAL per
flush. NORMAL survives a process crash but could lose the last flushes on power loss, and a
replica that forgets a vote it sent may then send a conflicting one: it then counts as one
of the f faulty replicas PBFT tolerates (the coordinator's default; coordinator/config.py,
``sqlite_synchronous``, has the reasoning). ``deferred`` mode records the saves instead of
executing them, for a host that commits them on a writer thread (``take`` / ``write``).
``MemoryStorage`` has the same interface, for the simulator and tests.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Protocol

from agora.coordinator.pbft.messages import ClientEntry
from agora.coordinator.pbft.wal import WalCheckpointer, wal_cut_short
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PrePrepare, PreparedCert

log = logging.getLogger("agora.storage")


@dataclass
class StoredState:
    view: int = 0
    view_active: bool = True
    executed: int = 0
    pre_prepares: dict[tuple[int, int], PrePrepare] = field(default_factory=dict)
    """(view, seq) -> the pre-prepare accepted (or sent, by the primary)."""
    votes: dict[tuple[str, int, int], bytes] = field(default_factory=dict)
    """("prepare" | "commit", view, seq) -> digest voted for."""
    certs: dict[int, PreparedCert] = field(default_factory=dict)
    """seq -> highest-view prepared certificate."""
    committed: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    """seq -> (view, digest) committed."""
    checkpoints: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    """seq -> (digest, serialized CheckpointState) of the replica's own checkpoints."""
    stable: tuple[int, bytes, list[PbftEnvelope]] = (0, b"", [])
    """(seq, digest, proof) of the last stable checkpoint."""
    clients: dict[str, ClientEntry] = field(default_factory=dict)
    """client id -> (last executed timestamp, its reply, its op's digest)."""
    new_view: tuple[int, bytes] | None = None
    """(view, serialized envelope) of the NEW-VIEW that installed the replica's latest view:
    what it relays to a peer behind in view (a peer that restarted with an empty log stayed
    in view 0, refusing the group's messages, until the group's next view change, once
    every replica had restarted and held no NEW-VIEW to relay -- a probe)."""

    @property
    def empty(self) -> bool:
        return (self.view == 0 and self.executed == 0 and not self.pre_prepares
                and not self.checkpoints)


class Storage(Protocol):
    def load(self) -> StoredState: ...
    def save_view(self, view: int, active: bool) -> None: ...
    def save_pre_prepare(self, pp: PrePrepare) -> None: ...
    def save_vote(self, kind: str, view: int, seq: int, digest: bytes) -> None: ...
    def save_cert(self, cert: PreparedCert) -> None: ...
    def save_committed(self, seq: int, view: int, digest: bytes) -> None: ...
    def save_executed(self, seq: int) -> None: ...
    def save_client(self, client_id: str, timestamp: int, result: bytes,
                    digest: bytes) -> None: ...
    def save_checkpoint(self, seq: int, digest: bytes, state: bytes) -> None: ...
    def save_stable(self, seq: int, digest: bytes, proof: list[PbftEnvelope]) -> None: ...
    def save_new_view(self, view: int, envelope: bytes) -> None: ...
    def truncate(self, seq: int) -> None:
        """Forget the log at and below ``seq`` and checkpoints below it."""
    def flush(self) -> None:
        """Make every save so far durable."""


class MemoryStorage:
    """Storage in a StoredState that outlives the Replica (a simulated crash keeps it)."""

    def __init__(self) -> None:
        self.state = StoredState()

    def load(self) -> StoredState:
        return self.state

    def save_view(self, view: int, active: bool) -> None:
        self.state.view, self.state.view_active = view, active

    def save_pre_prepare(self, pp: PrePrepare) -> None:
        self.state.pre_prepares[(pp.view, pp.seq)] = pp

    def save_vote(self, kind: str, view: int, seq: int, digest: bytes) -> None:
        self.state.votes[(kind, view, seq)] = digest

    def save_cert(self, cert: PreparedCert) -> None:
        self.state.certs[cert.seq] = cert

    def save_committed(self, seq: int, view: int, digest: bytes) -> None:
        self.state.committed[seq] = (view, digest)

    def save_executed(self, seq: int) -> None:
        self.state.executed = seq

    def save_client(self, client_id: str, timestamp: int, result: bytes,
                    digest: bytes) -> None:
        self.state.clients[client_id] = (timestamp, result, digest)

    def save_checkpoint(self, seq: int, digest: bytes, state: bytes) -> None:
        self.state.checkpoints[seq] = (digest, state)

    def save_stable(self, seq: int, digest: bytes, proof: list[PbftEnvelope]) -> None:
        self.state.stable = (seq, digest, list(proof))

    def save_new_view(self, view: int, envelope: bytes) -> None:
        self.state.new_view = (view, envelope)

    def truncate(self, seq: int) -> None:
        s = self.state
        s.pre_prepares = {k: v for k, v in s.pre_prepares.items() if k[1] > seq}
        s.votes = {k: v for k, v in s.votes.items() if k[2] > seq}
        s.certs = {k: v for k, v in s.certs.items() if k > seq}
        s.committed = {k: v for k, v in s.committed.items() if k > seq}
        s.checkpoints = {k: v for k, v in s.checkpoints.items() if k >= seq}

    def flush(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pre_prepare (view INTEGER, seq INTEGER, msg BLOB NOT NULL,
                                        PRIMARY KEY (view, seq));
CREATE TABLE IF NOT EXISTS vote (kind TEXT, view INTEGER, seq INTEGER, digest BLOB NOT NULL,
                                 PRIMARY KEY (kind, view, seq));
CREATE TABLE IF NOT EXISTS cert (seq INTEGER PRIMARY KEY, msg BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS committed (seq INTEGER PRIMARY KEY, view INTEGER NOT NULL,
                                      digest BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (seq INTEGER PRIMARY KEY, digest BLOB NOT NULL,
                                       state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS stable (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER NOT NULL,
                                   digest BLOB NOT NULL, proof BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS client (client_id TEXT PRIMARY KEY, timestamp INTEGER NOT NULL,
                                   result BLOB NOT NULL, op_digest BLOB NOT NULL DEFAULT x'');
CREATE TABLE IF NOT EXISTS new_view (id INTEGER PRIMARY KEY CHECK (id = 0),
                                     view INTEGER NOT NULL, envelope BLOB NOT NULL);
"""


LOG_FORMAT = 2
"""The format of what a replica's log holds, in its ``meta`` table (``format``). 2: PREPAREs
and CHECKPOINTs are signed (see ``auth.SIGNED_KINDS``); a log without the key was written
before, and its certificates and proofs would be refused by the other replicas."""


def old_format_problem(storage: "SqliteStorage") -> str | None:
    """Why a replica may not serve from ``storage``'s log (None: it may): a log written by an
    earlier format."""
    fmt = storage.format()
    if fmt == LOG_FORMAT:
        return None
    if fmt is not None and fmt > LOG_FORMAT:
        return (f"{storage.path}: a replica log of a newer Agora (log format {fmt}; this one "
                f"reads {LOG_FORMAT}): run the coordinator with the Agora that wrote it")
    return (f"{storage.path}: a replica log of an earlier Agora (log format {fmt or 1}, this "
            f"one writes {LOG_FORMAT}: PREPAREs and CHECKPOINTs are now signed, and the "
            f"replicas refuse the unsigned ones this log holds). Start the coordinator on a "
            f"new folder (agora up with another out:); this folder's schedule stays readable "
            f"offline (agora jobs, agora schedule get)")


class CorruptLog(ValueError):
    """A replica's log holds what no replica writes: a row of the wrong type, or (found by
    ``recovery.recover``) a checkpoint or batch that does not match its digest."""


def _int(value, what: str) -> int:
    if type(value) is not int:
        raise CorruptLog(f"{what}: {value!r}; expected an integer")
    return value


def _has_table(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (table,)).fetchone() is not None


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


class SqliteStorage:
    """Storage in one SQLite file (stdlib sqlite3, WAL, synchronous=FULL by default).

    Writes of one replica step go into one transaction, committed by ``flush()``. A new log
    is stamped with ``LOG_FORMAT``."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL"):
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"SqliteStorage.synchronous: got {synchronous!r}; expected FULL, "
                             f"NORMAL or EXTRA")
        self.path = Path(path)
        self.synchronous = synchronous
        cut = wal_cut_short(self.path)
        if cut:
            log.warning("%s-wal ends with %d bytes of a partial frame: the last commits in it "
                        "are ignored, so this replica may restart behind what it had "
                        "acknowledged; it catches up from its peers (state transfer)",
                        self.path, cut)
        # check_same_thread=False: a host may hand ``write`` to one writer thread after
        # ``load`` (coordinator/replica_host.py); the connection is only ever used by one thread
        # at a time.
        self.db = sqlite3.connect(str(self.path), isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        # No automatic WAL checkpoints inside a commit: one copies the whole WAL into the
        # database (tens of ms once checkpoint states of ~1 MB pass through it) and stalled
        # whichever commit crossed the threshold. ``WalCheckpointer`` runs them on its own
        # connection and thread after each checkpoint state or truncation is written.
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self.db.executescript(_SCHEMA)
        if not _has_column(self.db, "client", "op_digest"):   # a log of before: kept, widened
            self.db.execute("ALTER TABLE client ADD COLUMN op_digest BLOB NOT NULL DEFAULT x''")
        if self.format() is None and self._holds_nothing():
            self.db.execute("INSERT INTO meta VALUES ('format', ?)", (LOG_FORMAT,))
        self.wal = WalCheckpointer(self.path)
        self._open = False
        self.deferred = False
        """When True, saves are recorded (``take``) instead of executed; the host commits
        them with ``write``, possibly on another thread, before it sends what they justify."""
        self._buf: list[tuple[str, tuple]] = []
        self._big = False

    def close(self) -> None:
        self.flush()
        self.wal.close()
        self.db.close()

    def _holds_nothing(self) -> bool:
        """``StoredState.empty`` of this log, asked of SQLite instead of loading the whole log
        (checkpoint states included) once more than the replica's own ``load`` does."""
        q = self.db.execute
        meta = dict(q("SELECT key, value FROM meta WHERE key IN ('view', 'executed')")
                    .fetchall())
        return (not meta.get("view") and not meta.get("executed")
                and q("SELECT 1 FROM pre_prepare LIMIT 1").fetchone() is None
                and q("SELECT 1 FROM checkpoint LIMIT 1").fetchone() is None)

    def format(self) -> int | None:
        """The log's ``LOG_FORMAT`` stamp (None: a log written before there was one)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        return None if row is None else int(row[0])

    def _x(self, sql: str, args: tuple) -> None:
        if self.deferred:
            self._buf.append((sql, args))
            return
        if sql.startswith(_BIG_WRITES):
            self._big = True
        if not self._open:
            self.db.execute("BEGIN")
            self._open = True
        self.db.execute(sql, args)

    def load(self) -> StoredState:
        """The log as a ``StoredState``; ``CorruptLog`` for a row of the wrong type (SQLite
        keeps whatever was written: a text ``executed`` made the readers fail with a
        TypeError far from here)."""
        q = self.db.execute
        st = StoredState()
        meta = {k: _int(v, f"meta {k}") for k, v in q("SELECT key, value FROM meta")}
        st.view = meta.get("view", 0)
        st.view_active = bool(meta.get("view_active", 1))
        st.executed = meta.get("executed", 0)
        for view, seq, msg in q("SELECT view, seq, msg FROM pre_prepare"):
            key = (_int(view, "pre_prepare view"), _int(seq, "pre_prepare seq"))
            st.pre_prepares[key] = PrePrepare.FromString(msg)
        for kind, view, seq, digest in q("SELECT kind, view, seq, digest FROM vote"):
            st.votes[(kind, _int(view, "vote view"), _int(seq, "vote seq"))] = bytes(digest)
        for seq, msg in q("SELECT seq, msg FROM cert"):
            st.certs[seq] = PreparedCert.FromString(msg)
        for seq, view, digest in q("SELECT seq, view, digest FROM committed"):
            st.committed[seq] = (_int(view, f"committed {seq} view"), bytes(digest))
        for seq, digest, state in q("SELECT seq, digest, state FROM checkpoint"):
            st.checkpoints[seq] = (bytes(digest), bytes(state))
        row = q("SELECT seq, digest, proof FROM stable").fetchone()
        if row:
            st.stable = (_int(row[0], "stable seq"), bytes(row[1]),
                         [PbftEnvelope.FromString(b) for b in _unpack(bytes(row[2]))])
        if _has_table(self.db, "new_view"):       # a log of before had none (read offline)
            row = q("SELECT view, envelope FROM new_view").fetchone()
            if row:
                st.new_view = (_int(row[0], "new_view view"), bytes(row[1]))
        digests = "op_digest" if _has_column(self.db, "client", "op_digest") else "x''"
        for cid, ts, result, digest in q(f"SELECT client_id, timestamp, result, {digests} "
                                         f"FROM client"):
            st.clients[cid] = (_int(ts, f"client {cid!r} timestamp"), bytes(result),
                               bytes(digest))
        return st

    def save_view(self, view: int, active: bool) -> None:
        self._x("INSERT OR REPLACE INTO meta VALUES ('view', ?)", (view,))
        self._x("INSERT OR REPLACE INTO meta VALUES ('view_active', ?)", (int(active),))

    def save_pre_prepare(self, pp: PrePrepare) -> None:
        self._x("INSERT OR REPLACE INTO pre_prepare VALUES (?, ?, ?)",
                (pp.view, pp.seq, pp.SerializeToString()))

    def save_vote(self, kind: str, view: int, seq: int, digest: bytes) -> None:
        self._x("INSERT OR REPLACE INTO vote VALUES (?, ?, ?, ?)", (kind, view, seq, digest))

    def save_cert(self, cert: PreparedCert) -> None:
        self._x("INSERT OR REPLACE INTO cert VALUES (?, ?)", (cert.seq, cert.SerializeToString()))

    def save_committed(self, seq: int, view: int, digest: bytes) -> None:
        self._x("INSERT OR REPLACE INTO committed VALUES (?, ?, ?)", (seq, view, digest))

    def save_executed(self, seq: int) -> None:
        self._x("INSERT OR REPLACE INTO meta VALUES ('executed', ?)", (seq,))

    def save_client(self, client_id: str, timestamp: int, result: bytes,
                    digest: bytes) -> None:
        self._x("INSERT OR REPLACE INTO client VALUES (?, ?, ?, ?)",
                (client_id, timestamp, result, digest))

    def save_checkpoint(self, seq: int, digest: bytes, state: bytes) -> None:
        self._x("INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?)", (seq, digest, state))

    def save_stable(self, seq: int, digest: bytes, proof: list[PbftEnvelope]) -> None:
        packed = _pack([e.SerializeToString() for e in proof])
        self._x("INSERT OR REPLACE INTO stable VALUES (0, ?, ?, ?)", (seq, digest, packed))

    def save_new_view(self, view: int, envelope: bytes) -> None:
        self._x("INSERT OR REPLACE INTO new_view VALUES (0, ?, ?)", (view, envelope))

    def truncate(self, seq: int) -> None:
        for table in ("pre_prepare", "vote", "cert", "committed"):
            self._x(f"DELETE FROM {table} WHERE seq <= ?", (seq,))
        self._x("DELETE FROM checkpoint WHERE seq < ?", (seq,))

    def flush(self) -> None:
        if self._open:
            self.db.execute("COMMIT")
            self._open = False
            if self._big:
                self._big = False
                self.wal.soon()

    def take(self) -> list[tuple[str, tuple]]:
        """The saves recorded since the last ``take`` (``deferred`` mode), in order."""
        out, self._buf = self._buf, []
        return out

    def write(self, stmts: list[tuple[str, tuple]]) -> None:
        """Execute ``stmts`` (from ``take``) in one transaction and commit it (durable as
        ``synchronous`` says when this returns)."""
        if not stmts:
            return
        db = self.db
        db.execute("BEGIN")
        try:
            # runs of the same statement (a batch's client replies, votes) in one call each
            for sql, run in groupby(stmts, key=lambda x: x[0]):
                rows = [args for _, args in run]
                if len(rows) == 1:
                    db.execute(sql, rows[0])
                else:
                    db.executemany(sql, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if any(sql.startswith(_BIG_WRITES) for sql, _ in stmts):
            self.wal.soon()


_BIG_WRITES = ("INSERT OR REPLACE INTO checkpoint", "DELETE FROM")
"""Statements after which the WAL is worth folding into the database."""


def _pack(items: list[bytes]) -> bytes:
    return b"".join(len(b).to_bytes(4, "big") + b for b in items)


def _unpack(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 4 + size])
        i += 4 + size
    return out
