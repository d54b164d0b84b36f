"""Group commit (coordinator/group_commit.py) over the real SQLite storage: a group's
actions are delivered only once its writes are durable (another connection reads them), in
submission order, and under NORMAL a heavy group (a checkpoint's state) commits on the
writer thread -- the event loop is not blocked by it -- while the groups after it wait for
it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from agora.coordinator import group_commit
from agora.coordinator.group_commit import GroupCommit
from agora.coordinator.pbft.storage import SqliteStorage

pytestmark = pytest.mark.timeout(60)


def committed_seqs(path) -> set[int]:
    with sqlite3.connect(str(path)) as db:
        return {row[0] for row in db.execute("SELECT seq FROM committed")}


@pytest.mark.parametrize("sync", ["NORMAL", "FULL"])
def test_actions_follow_their_durable_writes_in_order_and_heavy_groups_leave_the_loop(
        tmp_path, sync):
    path = tmp_path / "r.db"
    gc = GroupCommit(SqliteStorage(path, synchronous=sync))
    delivered: list[tuple[int, set[int], bool]] = []

    def deliver_for(k: int):
        def deliver(actions) -> None:
            on_loop = threading.current_thread() is threading.main_thread()
            delivered.append((k, committed_seqs(path), on_loop))
        return deliver

    writer_threads: set[str] = set()
    real_write = gc.inner.write

    def spy_write(stmts):
        writer_threads.add(threading.current_thread().name)
        real_write(stmts)
    gc.inner.write = spy_write

    async def go():
        gc.start(asyncio.get_running_loop())
        for k in range(1, 7):
            gc.save_committed(k, 0, b"d" * 32)
            if k == 3:      # a checkpoint-sized write
                gc.save_checkpoint(k, b"c" * 32, b"x" * (group_commit.HEAVY_BYTES + 1))
            gc.submit([k], deliver_for(k))
        for _ in range(200):
            if len(delivered) == 6:
                break
            await asyncio.sleep(0.01)
        gc.stop()
    asyncio.run(go())
    assert [k for k, _, _ in delivered] == [1, 2, 3, 4, 5, 6]
    for k, seen, on_loop in delivered:
        assert set(range(1, k + 1)) <= seen, f"group {k} delivered before it was durable"
        assert on_loop, "actions are delivered on the event loop's thread"
    assert "storage-writer" in writer_threads, "the heavy group (or every group under " \
        "FULL) commits on the writer thread"
    if sync == "NORMAL":
        assert threading.main_thread().name in writer_threads, "light groups commit inline"


def test_wal_is_folded_by_its_own_thread_after_a_checkpoint_state_not_inside_commits(tmp_path):
    st = SqliteStorage(tmp_path / "w.db", synchronous="NORMAL")
    try:
        assert st.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        st.save_committed(1, 0, b"d" * 32)
        st.flush()
        assert st.wal.runs == 0 and st.wal._thread is None     # small commits: nothing
        st.save_checkpoint(4, b"c" * 32, b"x" * 500_000)
        st.flush()
        for _ in range(200):
            if st.wal.runs:
                break
            threading.Event().wait(0.01)
        assert st.wal.runs >= 1
        assert st.wal._thread.name == "wal-checkpoint"
        wal = tmp_path / "w.db-wal"
        with sqlite3.connect(str(tmp_path / "w.db")) as db:     # folded: readable as is
            assert db.execute("SELECT COUNT(*) FROM checkpoint").fetchone()[0] == 1
        assert wal.exists()
    finally:
        st.close()
    assert st.wal._thread is None


def test_a_commit_that_fails_delivers_nothing_and_tells_the_host(tmp_path):
    """A disk that fails a commit (here: a write that raises on the writer thread, as FULL
    commits run there) stops the replica's output, and the host hears of it (it then stops
    the replica, which recovers from its log when started again)."""
    gc = GroupCommit(SqliteStorage(tmp_path / "r.db", synchronous="FULL"))
    failed, delivered = asyncio.Event(), []

    def broken(stmts):
        raise sqlite3.OperationalError("disk I/O error")

    async def go():
        gc.start(asyncio.get_running_loop())
        gc.on_failure = failed.set
        gc.inner.write = broken
        gc.save_committed(1, 0, b"d" * 32)
        gc.submit(["a"], delivered.append)
        await asyncio.wait_for(failed.wait(), 10)
    asyncio.run(go())
    assert delivered == []
