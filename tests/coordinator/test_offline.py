"""Offline reads (coordinator/offline.py): after the group stopped, the schedule rebuilt from
the replicas' SQLite logs answers as the live group did, byte for byte; a replica stopped
early is reported behind; logs of f+1 replicas missing, corrupt or tampered with never yield
a wrong answer (an OfflineError with one clear line instead, or the good majority's state).

Two groups of four real replica processes, each run once per module and then stopped:
``full`` keeps its whole log (no checkpoint is taken), ``lagging`` checkpoints every 4
sequence numbers (its logs are truncated) and has replica 3 killed halfway. Each test
reads (a copy of) what they left on disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agora.coordinator.config import load_config
from agora.deploy.local_group import LocalGroup
from agora.coordinator.offline import OfflineError, read_offline
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PrePrepare
from tests.coordinator.grpc_helpers import close_round, completed, decision, job

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "tests" / "fixtures" / "cluster_small.yaml"
CLIENTS = ["site:east", "site:west", "site:edge", "operator"]


# ---- helpers (and grpc_helpers.py's job, decision, completed, close_round) ----

def make_group(tmp: Path, **config) -> LocalGroup:
    # No round or site timers: nothing is ordered once the test's clients are done.
    return LocalGroup(tmp, n=4, clients=CLIENTS, key_seed=b"test-offline",
                      cluster=str(CLUSTER), batch_size=8, batch_timeout_s=0.001,
                      view_change_timeout_s=0.5, request_timeout_s=8.0,
                      round_timeout_s=3600.0, site_timeout_s=3600.0, **config)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


async def settled(g: LocalGroup, live: list[int]) -> int:
    """Wait until the replicas ``live`` executed the same sequence number; it."""
    async with g.client("operator") as op:
        deadline = time.monotonic() + 30
        while True:
            ss = await op.status()
            done = [s.last_executed for i, s in enumerate(ss)
                    if i in live and not isinstance(s, str)]
            if len(done) == len(live) and len(set(done)) == 1:
                return done[0]
            assert time.monotonic() < deadline, f"replicas never settled: {ss}"
            await asyncio.sleep(0.2)


QUERIES = {
    "all": pb.Query(schedule=pb.ScheduleQuery(all=True)),
    "site": pb.Query(schedule=pb.ScheduleQuery(site="west")),
    "job": pb.Query(schedule=pb.ScheduleQuery(job_id="j1")),
    "since": pb.Query(schedule=pb.ScheduleQuery(since_version=3)),
    "ledger": pb.Query(ledger=pb.LedgerQuery()),
    "status": pb.Query(job_status=pb.JobStatusQuery(job_id="j1")),
    "no_job": pb.Query(job_status=pb.JobStatusQuery(job_id="nope")),
}


async def live_answers(op) -> dict[str, bytes]:
    return {k: (await op.query(q)).SerializeToString(deterministic=True)
            for k, q in QUERIES.items()}


def offline_answers(view) -> dict[str, bytes]:
    return {k: view.query(q).SerializeToString(deterministic=True) for k, q in QUERIES.items()}


@dataclass
class Run:
    """What a group left: its folder (config, keys, data) and what the live group said."""
    dir: Path
    executed: int
    answers: dict[str, bytes]
    allocations: list[pb.Allocation]
    behind_at: int = 0

    def copy(self, dest: Path):
        shutil.copytree(self.dir, dest)
        return load_config(dest / "coordinator.yaml")


def db(config, i: int) -> Path:
    return config.database(i)


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its bytes (``-shm``: only present)."""
    return {str(p.relative_to(folder)): ("shm" if p.name.endswith("-shm") else
                                         hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def tamper(path: Path, job_id: str, new_id: str) -> int:
    """Rename job ``job_id`` in the committed request that submitted it, in replica database
    ``path`` (the pre-prepare keeps its old digest); the sequence number changed."""
    con = sqlite3.connect(path)
    try:
        for view, seq, msg in con.execute("SELECT view, seq, msg FROM pre_prepare "
                                          "ORDER BY seq").fetchall():
            pp = PrePrepare.FromString(msg)
            for req in pp.requests:
                cmd = pb.Command.FromString(req.op)
                if cmd.WhichOneof("kind") != "submit_jobs":
                    continue
                hit = [j for j in cmd.submit_jobs.jobs if j.id == job_id]
                if hit:
                    hit[0].id = new_id
                    req.op = cmd.SerializeToString()
                    con.execute("UPDATE pre_prepare SET msg = ? WHERE view = ? AND seq = ?",
                                (pp.SerializeToString(), view, seq))
                    con.commit()
                    return seq
    finally:
        con.close()
    raise AssertionError(f"no committed submit of {job_id} in {path}")


def meta(path: Path, key: str) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if key == "stable":
            row = con.execute("SELECT seq FROM stable").fetchone()
        else:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else 0
    finally:
        con.close()


# ---- the two runs ----

@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Run:
    """Four replicas, every one to the end; no checkpoint (interval 64), whole logs."""
    g = make_group(tmp_path_factory.mktemp("full"), checkpoint_interval=64,
                   watermark_window=256)

    async def go():
        async with g.client("site:east") as east, g.client("site:west") as west, \
                g.client("operator") as op:
            r = await op.submit_jobs([job("j1"), job("j2", "west", n=2)])
            assert r.accepted == 2
            t = await close_round(g, r.round, {
                "east": decision("east", r.round, ("j1", "map", 2, 5)),
                "west": decision("west", r.round, ("j1", "map", 4, 9), ("j2", "map", 2, 4))})
            assert {a.job_id for a in t.allocations} == {"j1", "j2"}
            done = await west.submit_round(pb.SiteRound(site="west",
                                                        ends=completed("j1", "map", 0, 1)))
            assert done.accepted == 2
            r = await east.submit_jobs([job("j3")])     # the last command
            assert r.accepted == 1
            await settled(g, [0, 1, 2, 3])
            answers = await live_answers(op)
            allocations = list((await op.schedule(all=True)).schedule.allocations)
            return await settled(g, [0, 1, 2, 3]), answers, allocations

    with g.serving():
        executed, answers, allocations = run(go())
    return Run(g.tmp, executed, answers, allocations)


@pytest.fixture(scope="module")
def lagging(tmp_path_factory) -> Run:
    """Checkpoints every 4 sequence numbers; replica 3 killed (SIGKILL) after the first
    round, the others go on for several checkpoints more."""
    g = make_group(tmp_path_factory.mktemp("lagging"), checkpoint_interval=4,
                   watermark_window=16)

    async def go():
        async with g.client("site:east") as east, g.client("site:west") as west, \
                g.client("operator") as op:
            r = await east.submit_jobs([job("j1")])
            await close_round(g, r.round, {
                "west": decision("west", r.round, ("j1", "map", 4, 9))})
            behind_at = await settled(g, [0, 1, 2, 3])
            g.kill(3)
            await west.submit_round(pb.SiteRound(site="west",
                                                 ends=completed("j1", "map", 0, 1, 2, 3)))
            for k in range(3):
                r = await east.submit_jobs([job(f"k{k}", n=2)])
                await close_round(g, r.round, {
                    "west": decision("west", r.round, (f"k{k}", "map", 2, 3))})
            await settled(g, [0, 1, 2])
            answers = await live_answers(op)
            allocations = list((await op.schedule(all=True)).schedule.allocations)
            return await settled(g, [0, 1, 2]), answers, allocations, behind_at

    with g.serving():
        executed, answers, allocations, behind_at = run(go())
    return Run(g.tmp, executed, answers, allocations, behind_at)


# ---- the tests ----

@pytest.mark.timeout(240)
def test_offline_answers_are_the_live_answers_and_nothing_on_disk_changes(full):
    cfg = load_config(full.dir / "coordinator.yaml")
    data = cfg.path(cfg.data_dir)
    before = files(data)
    t0 = time.perf_counter()
    view = read_offline(cfg)
    took = time.perf_counter() - t0
    assert files(data) == before, "reading must create or change no file"
    assert view.agreed == [0, 1, 2, 3] and not (view.missing or view.behind
                                                 or view.disagreeing or view.ahead)
    assert view.executed == full.executed
    assert offline_answers(view) == full.answers
    assert list(view.schedule(all=True).schedule.allocations) == full.allocations
    assert view.version == view.schedule().version == view.ledger().version
    assert view.job_status("j3").job_status.job_id == "j3"
    assert view.schedule(task=("j1", "map")).schedule.allocations
    assert "agreed by replicas 0, 1, 2, 3 of 4" in view.describe()
    print(f"rebuilt 4 logs of {full.executed} sequence numbers in {took * 1000:.0f} ms")


@pytest.mark.timeout(240)
def test_a_replica_stopped_early_is_reported_behind_and_the_answer_is_the_live_one(lagging):
    cfg = load_config(lagging.dir / "coordinator.yaml")
    data = cfg.path(cfg.data_dir)
    assert Path(f"{db(cfg, 3)}-wal").exists(), "replica 3 was killed: its WAL is left"
    before = files(data)
    view = read_offline(cfg)
    assert files(data) == before, "reading must create or change no file"
    assert view.agreed == [0, 1, 2]
    assert view.behind == [3] and not view.missing and not view.disagreeing
    assert view.replicas[3].executed == lagging.behind_at < view.executed
    assert view.executed == lagging.executed
    # the logs were truncated at checkpoints: rebuilt from a checkpoint, then the log
    assert all(view.replicas[i].stable > 0 for i in (0, 1, 2))
    assert offline_answers(view) == lagging.answers
    assert list(view.schedule(all=True).schedule.allocations) == lagging.allocations
    assert "replica 3: behind" in view.describe()


@pytest.mark.timeout(240)
def test_a_tampered_log_is_outvoted(full, tmp_path):
    cfg = full.copy(tmp_path / "g")
    tamper(db(cfg, 0), "j1", "jX")
    view = read_offline(cfg)
    assert view.agreed == [1, 2, 3] and view.disagreeing == [0]
    assert view.replicas[0].status in ("disagreeing", "failed")
    assert offline_answers(view) == full.answers
    assert "replica 0: disagreeing" in view.describe()


@pytest.mark.timeout(240)
def test_too_few_readable_logs_is_a_one_line_error(full, tmp_path):
    cfg = full.copy(tmp_path / "g")
    db(cfg, 0).unlink()
    db(cfg, 1).unlink()
    db(cfg, 2).write_bytes(b"not an sqlite database " * 200)
    with pytest.raises(OfflineError) as e:
        read_offline(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"only 1 of 4 replica logs readable under {cfg.path(cfg.data_dir)}; "
                          f"need f+1 = 2")
    assert "replica 0: missing" in msg and "replica 2: unreadable" in msg


@pytest.mark.timeout(240)
def test_f_plus_1_bad_logs_give_an_error_not_a_wrong_answer(full, lagging, tmp_path):
    # full: replica 0 tampered, 1 and 2 gone: the good one left (3) has no partner
    cfg = full.copy(tmp_path / "a")
    tamper(db(cfg, 0), "j1", "jX")
    db(cfg, 1).unlink()
    db(cfg, 2).write_bytes(b"\0" * 4096)
    with pytest.raises(OfflineError) as e:
        read_offline(cfg)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("no f+1 = 2 of the 4 replica logs")
    assert f"at sequence {full.executed}: replica 0 alone, replica 3 alone" in msg
    # lagging: f+1 = 2 logs gone; of the two left, replica 2 executed further but its log
    # starts after its stable checkpoint, above where replica 3 stopped: they cannot be
    # compared anywhere, and replica 2 alone does not count.
    cfg = lagging.copy(tmp_path / "b")
    assert meta(db(cfg, 2), "stable") > lagging.behind_at
    db(cfg, 0).unlink()
    db(cfg, 1).write_bytes(b"garbage" * 1000)
    with pytest.raises(OfflineError) as e:
        read_offline(cfg)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("no f+1 = 2 of the 4 replica logs")
    assert f"replica 2 executed {lagging.executed}, replica 3 executed " \
           f"{lagging.behind_at}" in msg
    assert "replica 2 failed (its log starts after its stable checkpoint" in msg


@pytest.mark.timeout(240)
def test_without_agreement_at_the_top_an_older_agreed_state_is_taken(full, tmp_path):
    """Replica 3 stopped just before j3 was submitted, 0 has j3 tampered with, 2 is gone:
    at the last sequence number only 0 and 1 executed, and they differ; one step back (where
    3 stopped) 0, 1 and 3 agree: the state before j3, rebuilt exactly there."""
    cfg = full.copy(tmp_path / "g")
    seq = tamper(db(cfg, 0), "j3", "jY")
    con = sqlite3.connect(db(cfg, 3))
    con.execute("UPDATE meta SET value = ? WHERE key = 'executed'", (seq - 1,))
    con.commit()
    con.close()
    db(cfg, 2).unlink()
    view = read_offline(cfg)
    assert view.tried == (full.executed, seq - 1)
    assert view.executed == seq - 1 and view.agreed == [0, 1, 3]
    assert view.missing == [2] and view.ahead == [0, 1]
    assert view.job_status("j3").HasField("error")
    assert list(view.schedule().schedule.allocations) == full.allocations
    assert view.job_status("j1").job_status == \
        pb.QueryResult.FromString(full.answers["status"]).job_status


@pytest.mark.timeout(240)
def test_a_wal_without_its_shm_is_read_from_a_copy(lagging, tmp_path):
    """SQLite would create the -shm beside the database to read its WAL: read a copy."""
    cfg = lagging.copy(tmp_path / "g")
    Path(f"{db(cfg, 3)}-shm").unlink()
    data = cfg.path(cfg.data_dir)
    before = files(data)
    view = read_offline(cfg)
    assert files(data) == before
    assert view.behind == [3] and view.replicas[3].executed == lagging.behind_at


# A review: one replica's log with a row of the wrong type (SQLite keeps whatever is written:
# ``meta.executed`` = 'abc', a stable checkpoint's seq as text) made every offline read fail
# with a TypeError (a traceback from `agora jobs`, exit 1) instead of counting that log
# unreadable and answering from the f+1 that agree; the same log, or one claiming it executed
# past the batches it holds, ended the replica's own start in a traceback.
EDITS = {
    "executed_text": "UPDATE meta SET value = 'abc' WHERE key = 'executed'",
    "stable_seq_text": "INSERT OR REPLACE INTO stable VALUES (0, 'x', x'', x'')",
}


def _edit(path, sql):
    con = sqlite3.connect(path)
    con.execute(sql)
    con.commit()
    con.close()


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_log_with_a_mistyped_row_is_unreadable_and_the_others_answer(full, tmp_path, edit):
    cfg = full.copy(tmp_path / "g")
    _edit(db(cfg, 0), EDITS[edit])
    view = read_offline(cfg)                        # TypeError before the fix
    assert view.agreed == [1, 2, 3]
    assert view.replicas[0].status in ("unreadable", "failed")
    assert offline_answers(view) == full.answers
    assert "replica 0: " in view.describe()


@pytest.mark.parametrize("edit", ["executed_text", "executed_high"])
def test_a_replica_started_on_a_damaged_log_says_so_in_one_line(full, tmp_path, edit):
    """executed_high: the log claims it executed past the batches it holds (KeyError)."""
    from agora.coordinator.server import serve

    cfg = full.copy(tmp_path / "g")
    _edit(db(cfg, 0), EDITS[edit] if edit in EDITS else
          "UPDATE meta SET value = 10000 WHERE key = 'executed'")
    with pytest.raises(ValueError) as e:   # TypeError / KeyError (a traceback) before the fix
        asyncio.run(serve(cfg, 0))
    msg = str(e.value)
    assert str(db(cfg, 0)) in msg and "\n" not in msg


@pytest.mark.timeout(240)
def test_agora_status_of_a_stopped_service_reads_the_logs(lagging, capsys):
    """A probe: ``agora status`` after ``agora down`` said only "nothing is running", where
    ``agora jobs`` and ``schedule get`` answer from the logs. A stand-in for the stopped
    service's target (its coordinator config is the real logs')."""
    from types import SimpleNamespace

    from agora.deploy.cli_coordinator import _offline_status

    t = SimpleNamespace(coordinator=load_config(lagging.dir / "coordinator.yaml"),
                        out=lagging.dir, restarting=lambda: None)
    assert _offline_status(t, as_json=False) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"offline: no agora up runs from {lagging.dir}; schedule version")
    rows = {line.split()[0]: line.split()[1:3] for line in out[2:]}
    assert rows["3"] == ["behind", str(lagging.behind_at)]
    assert all(rows[i] == ["agreed", str(lagging.executed)] for i in "012")
    assert _offline_status(t, as_json=True) == 1
    js = json.loads(capsys.readouterr().out)
    assert js["offline"] and js["agreed_by"] == [0, 1, 2] and js["replicas"][3]["status"] == \
        "behind"


@pytest.mark.timeout(240)
def test_reads_of_a_stopped_group_named_by_its_coordinator_yaml_come_from_its_logs(full,
                                                                                   capsys):
    """A probe: with a bare coordinator YAML a service was always taken to run, so once its
    replicas stopped, agora jobs and schedule get said "nothing answers ... start it with
    agora up --config" (which refuses a coordinator YAML), though the logs were on disk."""
    from agora.deploy.cli import main

    cfg = str(full.dir / "coordinator.yaml")
    assert main(["schedule", "get", "--config", cfg, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["source"].startswith("offline") and len(got["allocations"]) == \
        len(full.allocations)
    assert main(["jobs", "--config", cfg, "--json"]) == 0
    assert {j["job"] for j in json.loads(capsys.readouterr().out)["jobs"]} == {"j1", "j2", "j3"}
    assert main(["status", "--config", cfg]) == 1
    assert capsys.readouterr().out.startswith("offline: no replica listens at ")
    assert main(["cancel", "j1", "--config", cfg]) == 1      # a write: nothing runs
    err = capsys.readouterr().err
    assert "start its replicas with agora coordinator --config" in err, err
