"""Review: a replica restarted from its own log re-adopts a checkpoint state and re-executes
batches that no longer match the digests stored beside them (a damaged or altered log).

``recover`` restores the latest own checkpoint at or below ``executed`` and re-executes the
committed pre-prepares above it without checking either against its digest: the replica
comes back in a state the group never had, and then re-sends its CHECKPOINT vote with the
*stored* digest (not one of the state it holds), so the checkpoint goes stable and nothing
notices until the next one. Expected: the restart is refused with an error naming what does
not match (the operator moves the log aside: the replica starts empty and catches up)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from agora.coordinator.pbft.app import KVApp
from agora.coordinator.pbft.storage import SqliteStorage
from agora.protos.agora.v1.pbft_pb2 import CheckpointState, PrePrepare
from tests.pbft_fixtures import finish, net, ops, replica

pytestmark = pytest.mark.timeout(60)


def _run(tmp_path):
    storages = {i: SqliteStorage(tmp_path / f"r{i}.db") for i in range(4)}
    n = net(storage_factory=lambda i: storages[i])
    n.submit("c0", ops("c0", 7))
    finish(n)
    before = n.replica(2)
    assert before.h >= 4 and before.last_executed > before.h, "a checkpoint and batches after"
    good = (dict(before.app.data), before.last_executed)
    for s in storages.values():
        s.close()
    return tmp_path / "r2.db", good


def test_a_restart_does_not_adopt_a_checkpoint_whose_state_is_not_its_digest(tmp_path):
    path, (data, executed) = _run(tmp_path)
    con = sqlite3.connect(path)
    seq, state = con.execute("SELECT seq, state FROM checkpoint ORDER BY seq DESC").fetchone()
    cs = CheckpointState.FromString(state)
    snap = json.loads(cs.app_snapshot)
    snap["c0"] = "1000000"                         # the digest column is left as it was
    cs.app_snapshot = json.dumps(snap, sort_keys=True, separators=(",", ":")).encode()
    con.execute("UPDATE checkpoint SET state = ? WHERE seq = ?", (cs.SerializeToString(), seq))
    con.commit()
    con.close()
    try:
        r = replica(2, storage=SqliteStorage(path), app=KVApp())
    except ValueError as e:
        assert "checkpoint" in str(e) and "\n" not in str(e)
        return
    pytest.fail(f"restarted from a checkpoint whose state is not its digest: "
                f"app {r.app.data} (the group's: {data}), executed {r.last_executed}")


def test_a_restart_does_not_replay_a_batch_whose_requests_are_not_its_digest(tmp_path):
    path, (data, executed) = _run(tmp_path)
    con = sqlite3.connect(path)
    stable = con.execute("SELECT seq FROM stable").fetchone()[0]
    view, seq, msg = con.execute("SELECT view, seq, msg FROM pre_prepare WHERE seq > ? "
                                 "ORDER BY seq LIMIT 1", (stable,)).fetchone()
    pp = PrePrepare.FromString(msg)
    pp.requests[0].op = b"add c0 1000000"          # pp.digest and the commit row left as they were
    con.execute("UPDATE pre_prepare SET msg = ? WHERE view = ? AND seq = ?",
                (pp.SerializeToString(), view, seq))
    con.commit()
    con.close()
    try:
        r = replica(2, storage=SqliteStorage(path), app=KVApp())
    except ValueError as e:
        assert f"batch {seq}" in str(e) and "\n" not in str(e)
        return
    pytest.fail(f"replayed a batch whose requests are not its digest: app {r.app.data} "
                f"(the group's: {data})")
