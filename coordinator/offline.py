"""Read the committed schedule from the replicas' SQLite logs while no replica runs.

The schedule (``ScheduleState``) is a pure function of the ordered log, so after ``agora
down`` it can be rebuilt from the databases on disk, with no network and no keys:

    view = read_offline(config)         # OfflineError when the logs cannot be trusted
    view.schedule(all=True)             # the QueryResult the live group would answer
    view.ledger(); view.job_status("j1")
    view.describe()                     # one line: version, who agreed, who did not

**Trust.** A running group answers once f+1 replicas agree; offline nothing votes, so the
logs vote instead. Each replica's state is rebuilt from its own log as a restarting replica
rebuilds it (``coordinator.pbft.recovery.rebuild_app``: its latest checkpoint, then the
committed batches after it). With at most f faulty replicas, a state f+1 replicas reach
identically (same ``snapshot()`` SHA-256 at the same sequence number) is the committed one:
one of them is correct. The sequence number looked at first is the highest that f+1
replicas executed (what the group had committed when it stopped, as far as f+1 logs can
vouch for it); each replica that executed at least that far is rebuilt at exactly that
sequence number, not beyond. When no f+1 of them agree there (a tampered or corrupt log
among too few good ones), the next lower sequence number some replica stopped at is tried:
any state f+1 logs agree on is a correct one, only older. A replica whose log was truncated
above that sequence number (its stable checkpoint is later: PBFT keeps no log below it)
cannot be rebuilt there and counts as failed for it. Nothing agreed: ``OfflineError``, one
line saying what each log held.

**Cost.** A rebuild restores the latest checkpoint at or below the sequence number and
re-executes fewer than ``checkpoint_interval`` batches after it, so it costs what
``ScheduleState.restore`` of the schedule costs, not the length of the log: logs whose
checkpoint and batches are the same (the usual case: correct replicas that stopped at the
same point) are rebuilt once. About 0.5 s for a schedule of 20,000 requests (2,200 jobs,
a 1 MB snapshot), 1.6-2.6 s for 60,000, on the development machine.

**Read-only.** Every database is opened read-only and nothing is written or created next to
it: a database closed cleanly (no ``-wal``/``-shm`` beside it) is opened ``immutable``; one
left by a killed replica (``-wal`` and ``-shm`` present) is opened ``mode=ro`` in place
(SQLite's readers then take their read locks in the ``-shm`` shared-memory index, as any
reader does, and write nothing else); a ``-wal`` without its ``-shm`` (copied files) is read
from a copy in a temporary folder, since SQLite would create the ``-shm`` beside it.

**Answers.** The helpers send the state's own read-only ``query()`` the same ``Command``
holding the same ``Query`` the live client (``CoordinatorClient.schedule``, ``job_status``,
``ledger``) sends, so for the same state the answer's bytes are those the live replicas
return.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from agora.agents.domain import Cluster
from agora.coordinator.queries import job_status_query, ledger_query, schedule_query
from agora.coordinator.config import CoordinatorConfig
from agora.coordinator.pbft.recovery import rebuild_app, replay_plan
from agora.coordinator.pbft.storage import SqliteStorage, StoredState
from agora.coordinator.schedule_state import OPERATOR, ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb

AGREED, MISSING, UNREADABLE = "agreed", "missing", "unreadable"
BEHIND, DISAGREEING, FAILED = "behind", "disagreeing", "failed"


class OfflineError(ValueError):
    """The logs on disk do not give a state f+1 replicas agree on; the message (one line)
    says what each replica's log held. A ValueError, so the CLI prints it as
    ``agora: <message>`` (exit 2) like its other input errors."""


@dataclass(frozen=True)
class ReplicaLog:
    """What one replica's log gave.

    ``status``: ``agreed`` (rebuilt at the view's sequence number, in the agreeing
    majority), ``missing`` (no database), ``unreadable`` (not an SQLite database of a replica
    or unreadable), ``behind`` (executed less than the view's sequence number),
    ``disagreeing`` (rebuilt there, to another state) or ``failed`` (could not be rebuilt
    there: log truncated above it, entries missing, a checkpoint refused).
    ``executed`` / ``stable``: its last executed sequence number and stable checkpoint
    (None when unreadable). ``detail``: why, for every status but ``agreed``."""

    index: int
    path: Path
    status: str
    executed: int | None = None
    stable: int | None = None
    detail: str = ""

    def describe(self) -> str:
        where = "" if self.executed is None else f" (executed {self.executed})"
        return f"replica {self.index}: {self.status}{where}" + \
            (f": {self.detail}" if self.detail else "")


@dataclass
class OfflineView:
    """The schedule f+1 replica logs agree on.

    ``state``: the rebuilt ``ScheduleState``, at PBFT sequence number ``executed`` (what
    ``agora status`` calls ``last_executed``); ``version`` is the schedule's own version (the
    last sequence number that changed it; every answer's ``version``). ``replicas``: one
    ``ReplicaLog`` per replica, by index."""

    state: ScheduleState
    executed: int
    digest: bytes
    """SHA-256 of ``state.snapshot()``: what the agreeing replicas share"""
    n: int
    f: int
    data_dir: Path
    replicas: tuple[ReplicaLog, ...]
    tried: tuple[int, ...] = ()
    """the sequence numbers looked at, highest first (more than one: the higher ones had
    no f+1 agreement)"""

    @property
    def version(self) -> int:
        return self.state.version

    def _with(self, *statuses: str) -> list[int]:
        return [r.index for r in self.replicas if r.status in statuses]

    @property
    def agreed(self) -> list[int]:
        return self._with(AGREED)

    @property
    def missing(self) -> list[int]:
        """Replicas whose log could not be read at all (missing or unreadable)."""
        return self._with(MISSING, UNREADABLE)

    @property
    def behind(self) -> list[int]:
        return self._with(BEHIND)

    @property
    def disagreeing(self) -> list[int]:
        """Replicas whose log gave another state at ``executed``, or none (failed)."""
        return self._with(DISAGREEING, FAILED)

    @property
    def ahead(self) -> list[int]:
        """Replicas whose log executed beyond ``executed`` (only f or fewer vouch for it)."""
        return [r.index for r in self.replicas
                if r.executed is not None and r.executed > self.executed]

    def describe(self) -> str:
        """One line: what was read, at which sequence number, who agreed and who did not."""
        agreed = ", ".join(map(str, self.agreed))
        text = (f"schedule version {self.version} (sequence {self.executed}) rebuilt from "
                f"the logs under {self.data_dir}: agreed by replicas {agreed} of {self.n} "
                f"(f+1 = {self.f + 1} needed)")
        others = [r.describe() for r in self.replicas if r.status != AGREED]
        ahead = [i for i in self.ahead if i in self.agreed]
        if ahead:
            others.append(f"replicas {', '.join(map(str, ahead))} executed further, which "
                          f"fewer than f+1 logs vouch for")
        return text + ("; " + "; ".join(others) if others else "")

    # ---- the live client's queries, answered from the state ----

    def query_bytes(self, q: pb.Query) -> bytes:
        """The serialised ``QueryResult`` the live replicas answer ``q`` with (the read-only
        request's op is this ``Command``; the answer does not depend on the client)."""
        return self.state.query(OPERATOR, pb.Command(query=q).SerializeToString())

    def query(self, q: pb.Query) -> pb.QueryResult:
        return pb.QueryResult.FromString(self.query_bytes(q))

    def schedule(self, **by) -> pb.QueryResult:
        """As ``CoordinatorClient.schedule``: ``by`` one of all=True, site=, job_id=,
        task=(job, task), since_version=; none: all."""
        return self.query(schedule_query(**by))

    def job_status(self, job_id: str) -> pb.QueryResult:
        return self.query(job_status_query(job_id))

    def ledger(self) -> pb.LedgerView:
        return self.query(ledger_query()).ledger


# ---- reading the logs ----

class _ReadOnlySqlite(SqliteStorage):
    """``SqliteStorage.load`` over a connection opened elsewhere (read-only): no schema,
    no pragmas, nothing written."""

    def __init__(self, db: sqlite3.Connection) -> None:  # noqa: super().__init__ writes
        self.db = db


def load_log(path: Path) -> StoredState:
    """Replica database ``path`` as ``SqliteStorage.load`` reads it, opened read-only and
    creating nothing beside it (see the module doc). Raises FileNotFoundError when it does
    not exist, sqlite3.Error (or a protobuf DecodeError) when it is not a readable replica
    log."""
    return _read(path, lambda db: _ReadOnlySqlite(db).load())


def executed_of(path: Path) -> int:
    """The last sequence number replica database ``path`` executed (0: none), read as
    ``load_log`` reads it, and raising as it does."""
    def executed(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'executed'").fetchone()
        return int(row[0]) if row else 0
    return _read(path, executed)


def _read(path: Path, fn):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if not wal.exists() and not shm.exists():
        # Closed cleanly: everything is in the file, and nothing has it open.
        return _load(path.resolve().as_uri() + "?mode=ro&immutable=1", fn)
    if shm.exists():
        try:
            return _load(path.resolve().as_uri() + "?mode=ro", fn)
        except sqlite3.OperationalError:
            pass      # e.g. a -shm this user may not lock: read a copy
    with tempfile.TemporaryDirectory(prefix="agora-offline-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        if wal.exists():
            shutil.copyfile(wal, Path(f"{copy}-wal"))
        return _load(copy.as_uri() + "?mode=ro", fn)


def _load(uri: str, fn):
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        return fn(db)
    finally:
        db.close()


def _inputs(st: StoredState, v: int) -> bytes:
    """A digest of everything ``rebuild_app(app, st, v)`` reads (``replay_plan``: the
    checkpoint it restores and each batch's requests): replicas whose logs give the same
    one are rebuilt once (the state machine is deterministic). KeyError as ``replay_plan``."""
    base, checkpoint, batches = replay_plan(st, v)
    h = hashlib.sha256(b"%d %d %d|" % (base, v, len(checkpoint or b"")))
    h.update(checkpoint or b"")
    for seq, slot in batches:
        h.update(b"%d %d|" % (seq, len(slot.requests)))
        for req in slot.requests:
            data = req.SerializeToString(deterministic=True)
            h.update(b"%d|" % len(data))
            h.update(data)
    return h.digest()


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def read_offline(config: CoordinatorConfig, *, cluster: Cluster | None = None) -> OfflineView:
    """The schedule f+1 of the replicas' logs under ``config``'s ``data_dir`` agree on (see
    the module doc); ``OfflineError`` when they agree on none. ``cluster``: the cluster the
    config names, when the caller loaded it already."""
    n, f = config.n, config.f
    need = f + 1
    data_dir = config.path(config.data_dir)
    cluster = cluster if cluster is not None else config.load_cluster()
    logs: dict[int, StoredState] = {}
    unread: dict[int, ReplicaLog] = {}
    for i in range(n):
        path = config.database(i)
        try:
            logs[i] = load_log(path)
        except FileNotFoundError:
            unread[i] = ReplicaLog(i, path, MISSING, detail="no database")
        except Exception as e:  # noqa: BLE001 - any way a file is not a replica's log
            unread[i] = ReplicaLog(i, path, UNREADABLE, detail=_short(e))
    if len(logs) < need:
        found = "; ".join(r.describe() for r in unread.values())
        raise OfflineError(f"only {len(logs)} of {n} replica logs readable under {data_dir}; "
                           f"need f+1 = {need} ({found})")
    executed = {i: st.executed for i, st in logs.items()}
    candidates = [v for v in sorted(set(executed.values()), reverse=True)
                  if sum(e >= v for e in executed.values()) >= need]
    tried: list[int] = []
    why: list[str] = []
    for v in candidates:
        tried.append(v)
        built: dict[int, tuple[bytes, ScheduleState]] = {}
        rebuilt: dict[bytes, tuple[bytes, ScheduleState]] = {}
        failed: dict[int, str] = {}
        for i in sorted(logs):
            if executed[i] < v:
                continue
            st = logs[i]
            if st.stable[0] > v:
                failed[i] = (f"its log starts after its stable checkpoint {st.stable[0]}, "
                             f"above sequence {v}")
                continue
            try:
                inputs = _inputs(st, v)
            except KeyError as e:
                key = e.args[0] if e.args else "?"
                seq = key[1] if isinstance(key, tuple) else key
                failed[i] = f"batch {seq} missing from its log"
                continue
            if inputs in rebuilt:       # the same checkpoint and batches: the same state
                built[i] = rebuilt[inputs]
                continue
            state = ScheduleState.for_config(config, cluster)
            try:
                rebuild_app(state, st, v)
            except Exception as e:  # noqa: BLE001 - a checkpoint its app refuses, ...
                failed[i] = f"cannot rebuild: {_short(e)}"
                continue
            built[i] = rebuilt[inputs] = (hashlib.sha256(state.snapshot()).digest(), state)
        tally = Counter(d for d, _ in built.values())
        winners = [d for d, k in tally.items() if k >= need]
        if len(winners) > 1:
            groups = " vs ".join(
                "replicas " + ", ".join(str(i) for i in sorted(built) if built[i][0] == d)
                for d in winners)
            raise OfflineError(f"replica logs under {data_dir} hold conflicting states at "
                               f"sequence {v} ({groups}): more than f = {f} are faulty")
        if winners:
            digest = winners[0]
            agreed = [i for i in sorted(built) if built[i][0] == digest]
            return OfflineView(
                state=built[agreed[0]][1], executed=v, digest=digest, n=n, f=f,
                data_dir=data_dir, tried=tuple(tried),
                replicas=tuple(_report(i, config, logs, unread, v, agreed, built, failed)
                               for i in range(n)))
        parts = []
        for d in tally:
            ids = [str(i) for i in sorted(built) if built[i][0] == d]
            parts.append(f"replicas {', '.join(ids)} agree" if len(ids) > 1
                         else f"replica {ids[0]} alone")
        parts += [f"replica {i} failed ({failed[i]})" for i in sorted(failed)]
        why.append(f"at sequence {v}: " + ", ".join(parts))
    held = ", ".join(f"replica {i} executed {executed[i]}" for i in sorted(logs))
    unreadable = "; ".join(r.describe() for r in unread.values())
    raise OfflineError(f"no f+1 = {need} of the {n} replica logs under {data_dir} agree on "
                       f"a state ({held}" + (f"; {unreadable}" if unreadable else "") +
                       ("; " + "; ".join(why) if why else "") + ")")


def _report(i: int, config: CoordinatorConfig, logs: dict[int, StoredState],
            unread: dict[int, ReplicaLog], v: int, agreed: list[int],
            built: dict[int, tuple[bytes, ScheduleState]],
            failed: dict[int, str]) -> ReplicaLog:
    if i in unread:
        return unread[i]
    st = logs[i]
    kw = dict(index=i, path=config.database(i), executed=st.executed, stable=st.stable[0])
    if i in agreed:
        return ReplicaLog(status=AGREED, **kw)
    if st.executed < v:
        return ReplicaLog(status=BEHIND, detail=f"{v - st.executed} short of {v}", **kw)
    if i in failed:
        return ReplicaLog(status=FAILED, detail=failed[i], **kw)
    return ReplicaLog(status=DISAGREEING,
                      detail=f"another state at sequence {v} (snapshot sha256 "
                             f"{built[i][0].hex()[:16]}...)", **kw)


def offline_ledger(config: CoordinatorConfig) -> tuple[pb.LedgerView, str]:
    """(the ledger f+1 replica logs agree on, one line saying how it was read)."""
    view = read_offline(config)
    return view.ledger(), view.describe()


def offline_schedule(config: CoordinatorConfig, **by) -> tuple[pb.QueryResult, str]:
    """(``schedule(**by)`` answered from the agreed logs, one line saying how)."""
    view = read_offline(config)
    return view.schedule(**by), view.describe()
