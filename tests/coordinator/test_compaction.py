"""A long-running schedule stays bounded: finished jobs compacted away
(``coordinator/compaction.py``, ``retain_finished_jobs``).

The schedule keeps every unfinished job and the newest finished ones; older finished jobs go
with their allocations and instance changes, at the same versions on every replica and on one
restored from a snapshot mid-way (random logs, and the review's divergence); each origin site
keeps its newest share; a standing bid keeps its job; a follower applying the updates keeps
the same jobs; 0 keeps everything. What readers see: test_compaction_readers.py."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from agora.agents.ledger_codec import apply_update, restore_ledger
from agora.coordinator.compaction import slack
from agora.coordinator.schedule_state import ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import (SETTINGS, Run, cluster, decide, end, job, op,
                                             report, submit, vote)


def with_retain(retain: int) -> Run:
    r = Run()
    r.state = ScheduleState(cluster(), n_replicas=4, retain_finished_jobs=retain)
    r.state.listeners.append(r.updates.append)
    return r


def close(r: Run, rnd: int) -> None:
    for i in range(2):                   # f + 1 = 2 replicas' votes close a round
        if r.state.round == rnd:
            r(f"replica:{i}", vote(rnd))


def run_batch(r: Run, ids: list[str], *, finish: bool = True, fail: bool = False,
              origin: str = "a") -> None:
    """Submit one-instance jobs ``ids`` of ``origin``, allocate them in one round (site a
    bids), and (``finish``) report each instance ended."""
    r("operator", submit(*(job(j, origin, n=1, dag=False) for j in ids)))
    rnd = r.state.round
    r("site:a", decide("a", rnd, *((j, "map", 1, 1) for j in ids)))
    close(r, rnd)
    if not finish:
        return
    for j in ids:
        ts = r.state.ledger.tasks[(j, "map")]
        assert ts.running == 1, f"{j} did not start"
        site = r.state.cluster.nodes[ts.placements[0][0]].site
        for attempt in range(3 if fail else 1):
            r(f"site:{site}", report(site, end(j, "map", 0, "failed" if fail else "completed")))
            if fail and attempt < 2:
                site = "bc"[attempt]          # not where it failed (LedgerBook.deferred)
                rnd = r.state.round
                r(f"site:{site}", decide(site, rnd, (j, "map", 1, 1)))
                close(r, rnd)


def batches(r: Run, n: int, size: int = 8, prefix: str = "j") -> list[str]:
    ids = []
    for b in range(n):
        batch = [f"{prefix}{b}-{i}" for i in range(size)]
        run_batch(r, batch)
        ids += batch
    return ids


def test_it_keeps_every_unfinished_job_and_the_newest_finished_ones():
    r = with_retain(10)
    run_batch(r, ["long"], finish=False)              # admitted first, never ends
    ids = batches(r, 12)
    r("operator", submit(job("tail", "a", n=1, dag=False)))   # an admission scans
    jobs = r.state.ledger.jobs
    assert "long" in jobs and jobs["long"].outcome == "pending" and "tail" in jobs
    finished = [j for j in jobs if j not in ("long", "tail")]
    assert 10 <= len(finished) <= 10 + slack(10)
    assert finished == ids[-len(finished):], "the newest admitted are kept, in order"
    gone = set(ids) - set(finished)
    compacted = [j for u in r.updates for j in u.compacted]
    assert sorted(compacted) == sorted(gone) and len(compacted) == len(set(compacted))
    assert r.state.compacted.jobs == {"completed": len(gone)}
    # their history went with them; the unfinished job's allocation stays
    assert not {a[0] for a in r.state.allocations} & gone
    assert not {c[1] for c in r.state.changes} & gone
    assert any(a[0] == "long" for a in r.state.allocations)
    # the capacity they held was released long before: nothing is over- or under-counted
    r.state.check_invariants()


def test_work_that_finishes_while_nothing_is_submitted_is_compacted(monkeypatch):
    """Without admissions, a scan runs at the first change past every SCAN_EVERY versions."""
    monkeypatch.setattr("agora.coordinator.compaction.SCAN_EVERY", 8)
    r = with_retain(2)
    r("operator", submit(*(job(f"q{i}", "a", n=1, dag=False) for i in range(12))))
    rnd = r.state.round
    r("site:a", decide("a", rnd, *((f"q{i}", "map", 1, 1) for i in range(12))))
    close(r, rnd)
    for i in range(12):                   # one end a command: versions pass 8, 16, ...
        ts = r.state.ledger.tasks[(f"q{i}", "map")]
        site = r.state.cluster.nodes[ts.placements[0][0]].site
        r(f"site:{site}", report(site, end(f"q{i}", "map", 0)))
    assert len(r.state.ledger.jobs) < 12
    assert sum(r.state.compacted.jobs.values()) == 12 - len(r.state.ledger.jobs)


def test_zero_keeps_every_job():
    r = with_retain(0)
    ids = batches(r, 6)
    assert list(r.state.ledger.jobs) == ids and not r.state.compacted
    assert not any(u.compacted for u in r.updates)


def test_failed_jobs_are_compacted_too_and_counted_by_outcome():
    r = with_retain(2)
    for b in range(4):
        run_batch(r, [f"f{b}"], fail=True)
    batches(r, 3, size=2)
    c = r.state.compacted.jobs
    assert c["failed"] == 4 and c["completed"] >= 1
    view = pb.QueryResult.FromString(r.state.query(
        "operator", op(query=pb.Query(ledger=pb.LedgerQuery())))).ledger
    assert {x.name: x.count for x in view.compaction.jobs} == dict(c)


def test_a_standing_bid_keeps_its_job():
    """A job that a standing bid of the open round names is not dropped: a snapshot restores
    standing bids by task, and must find it (the job failed while another site's bid for
    its open instance stood, and other open work kept the round open)."""
    r = with_retain(1)
    r("operator", submit(job("J", "a", n=2, dag=False), job("K1", "a", n=1, dag=False),
                         job("K2", "a", n=1, dag=False), job("K3", "a", n=1, dag=False)))
    r("operator", submit(job("open", "c", n=1, dag=False)))   # keeps rounds from closing
    rnd = r.state.round
    r("site:a", decide("a", rnd, ("J", "map", 1, 1), *((k, "map", 1, 1) for k in ("K1", "K2",
                                                                                 "K3"))))
    close(r, rnd)
    for k in ("K1", "K2", "K3"):
        r("site:a", report("a", end(k, "map", 0)))
    for attempt, site in enumerate("acb"):  # max_attempts = 3: the third failure fails J
        if attempt:                            # (each at a site where J has not failed)
            rnd = r.state.round
            r(f"site:{site}", decide(site, rnd, ("J", "map", 1, 1)))
            close(r, rnd)
        if attempt == 2:                   # b bids for J's other, open instance; it stands
            r("site:b", decide("b", r.state.round, ("J", "map", 1, 1)))
        inst = next(iter(r.state.ledger.tasks[("J", "map")].placements))
        r(f"site:{site}", report(site, end("J", "map", inst, "failed")))
    assert r.state.ledger.jobs["J"].outcome == "failed" and "b" in r.state.parts
    r("operator", submit(job("tail", "a", n=1, dag=False)))     # an admission scans
    assert "J" in r.state.ledger.jobs and "K1" not in r.state.ledger.jobs
    snap = r.state.snapshot()
    fresh = ScheduleState(cluster(), n_replicas=4, retain_finished_jobs=1)
    fresh.restore(snap)
    assert fresh.snapshot() == snap


def test_compaction_is_a_function_of_the_log_across_a_restore():
    """A replica restored from a snapshot mid-way compacts the very same jobs at the same
    versions as one that executed everything; a follower of the updates keeps the same jobs."""
    a, b = with_retain(5), with_retain(5)
    for r in (a, b):
        batches(r, 5, size=3)
    b2 = ScheduleState(cluster(), n_replicas=4, retain_finished_jobs=5)
    b2.restore(b.state.snapshot())
    b.state = b2
    b.state.listeners.append(b.updates.append)
    follower = restore_ledger(pb.QueryResult.FromString(a.state.query(
        "operator", op(query=pb.Query(ledger=pb.LedgerQuery())))).ledger,
        a.state.site_index, len(a.state.node_names), 3)
    seen = len(a.updates)
    for r in (a, b):
        batches(r, 9, size=3, prefix="m")
    for u in a.updates[seen:]:
        apply_update(follower, u, a.state.site_index, a.state.node_index)
    assert a.state.snapshot() == b.state.snapshot()
    assert list(follower.jobs) == list(a.state.ledger.jobs)
    assert [u.compacted for u in a.updates[seen:]] == [u.compacted for u in b.updates[seen:]]


@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
@SETTINGS
def test_random_runs_keep_the_bound_and_restore_to_the_same_bytes(seed, retain):
    rng = random.Random(seed)
    r = with_retain(retain)
    n = 0
    for _ in range(rng.randint(1, 8)):
        ids = [f"r{n + i}" for i in range(rng.randint(1, 3))]
        n += len(ids)
        run_batch(r, ids, finish=rng.random() < 0.8, fail=rng.random() < 0.2)
    r("operator", submit(job("tail", "a", n=1, dag=False)))   # an admission scans
    unfinished = sum(1 for js in r.state.ledger.jobs.values() if not js.finished)
    assert len(r.state.ledger.jobs) - unfinished <= retain + slack(retain)
    snap = r.state.snapshot()
    fresh = ScheduleState(cluster(), n_replicas=4, retain_finished_jobs=retain)
    fresh.restore(snap)
    assert fresh.snapshot() == snap
    r.state.check_invariants()


def all_but_one_done(monkeypatch, ids: tuple[str, ...], running: str) -> Run:
    """Scans every 16 versions, the bound 1: the one-instance jobs ``ids`` of site a run,
    and all but ``running`` completed."""
    monkeypatch.setattr("agora.coordinator.compaction.SCAN_EVERY", 16)
    r = with_retain(1)
    r("operator", submit(*(job(k, "a", n=1, dag=False) for k in ids)))
    rnd = r.state.round
    r("site:a", decide("a", rnd, *((k, "map", 1, 1) for k in ids)))
    close(r, rnd)
    for k in ids:
        if k != running:
            r("site:a", report("a", end(k, "map", 0)))
    return r


def restored(r: Run, retain: int) -> Run:
    """A replica that restores ``r``'s snapshot (a state transfer, or a restart from its
    checkpoint) and executes the rest of the log after it."""
    b = with_retain(retain)
    b.state.restore(r.state.snapshot())
    b.seq = r.seq
    return b


def test_a_scan_that_found_nothing_does_not_hide_the_next_command_from_compaction(
        monkeypatch):
    """The review's divergence: a due scan that found nothing left a mark outside the
    snapshot, so the next command, which finished a job, was not scanned at that replica but
    was at one restored from a checkpoint in between."""
    a = all_but_one_done(monkeypatch, ("K1", "K2", "K3"), "K3")
    while a.seq < 16:
        a("site:a", report("a"))                 # heartbeats: nothing published
    b = restored(a, 1)
    for r in (a, b):
        r("site:a", report("a", end("K3", "map", 0)))      # K3 completes past the boundary
    assert a.state.snapshot() == b.state.snapshot()
    assert list(a.updates[-1].compacted) == list(b.updates[-1].compacted) == ["K1", "K2"]


@given(st.integers(0, 2**31 - 1))
@SETTINGS
def test_random_logs_compact_alike_with_restores_anywhere_and_followers_keep_up(seed):
    """Random commands of every kind (submissions, some reusing ids; decisions; votes; ends
    of every kind; cancels; heartbeats) with a small bound and scans every 8 versions: a
    replica restored from a snapshot at random points publishes the same updates and ends in
    the same bytes after every command, and a follower keeps the same jobs."""
    import unittest.mock

    rng = random.Random(seed)
    retain = rng.randint(1, 4)
    with unittest.mock.patch("agora.coordinator.compaction.SCAN_EVERY", 8):
        a = with_retain(retain)
        b = restored(a, retain)
        follower = restore_ledger(pb.QueryResult.FromString(a.state.query(
            "operator", op(query=pb.Query(ledger=pb.LedgerQuery())))).ledger,
            a.state.site_index, len(a.state.node_names), 3)
        made = 0
        for _ in range(rng.randint(20, 90)):
            client, data = _random_command(a, rng, made)
            made += 1
            seen = len(a.updates)
            ra, rb = a(client, data), b(client, data)
            assert ra == rb
            assert a.updates[seen:] == b.updates[len(b.updates) - (len(a.updates) - seen):]
            for u in a.updates[seen:]:
                apply_update(follower, u, a.state.site_index, a.state.node_index)
            assert a.state.snapshot() == b.state.snapshot()
            if rng.random() < 0.15:
                b = restored(a, retain)
        assert list(follower.jobs) == list(a.state.ledger.jobs)


def _random_command(r: Run, rng: random.Random, k: int) -> tuple[str, bytes]:
    st_ = r.state
    x = rng.random()
    if x < 0.2:
        ids = [f"r{k}-{i}" if rng.random() < 0.8 else f"r{rng.randint(0, k)}-0"
               for i in range(rng.randint(1, 3))]
        return "operator", submit(*(job(j, rng.choice("abc"), n=rng.randint(1, 2),
                                        dag=rng.random() < 0.4) for j in dict.fromkeys(ids)))
    if x < 0.45:
        site = rng.choice("abc")
        open_tasks = [ts for ts in st_.ledger.tasks.values() if ts.open]
        bids = [(ts.job.job.id, ts.task.id, 1, rng.randint(0, 5))
                for ts in rng.sample(open_tasks, min(len(open_tasks), rng.randint(0, 3)))]
        return f"site:{site}", decide(site, st_.round, *bids)
    if x < 0.55:
        return f"replica:{rng.randint(0, 3)}", vote(st_.round)
    if x < 0.85:
        running = [(ts, i) for ts in st_.ledger.tasks.values() for i in ts.placements]
        if running:
            ts, i = rng.choice(running)
            site = st_.cluster.nodes[ts.placements[i][0]].site
            kind = rng.choice(["completed", "completed", "failed", "lost"])
            return f"site:{site}", report(site, end(ts.job.job.id, ts.task.id, i, kind))
        return "site:a", report("a")
    if x < 0.9 and st_.ledger.jobs:
        return "operator", op(cancel_job=pb.CancelJob(job_id=rng.choice(list(st_.ledger.jobs))))
    return f"site:{rng.choice('abc')}", report(rng.choice("abc"))


def test_a_site_that_floods_the_schedule_cannot_push_out_another_sites_newest_jobs():
    """Nothing a site sends changes what another site may do: every origin site keeps its
    newest retain // sites finished jobs whatever the others submit; beyond that share the
    bound goes to the newest jobs of any site."""
    r = with_retain(6)                       # three sites: each keeps at least its newest 2
    run_batch(r, ["b-old", "b-mid", "b-new"], origin="b")
    for k in range(6):                       # a floods: 30 jobs after b's
        run_batch(r, [f"a{k}-{i}" for i in range(5)])
    r("operator", submit(job("tail", "a", n=1, dag=False)))    # an admission scans
    jobs = r.state.ledger.jobs
    assert "b-new" in jobs and "b-mid" in jobs, "b's newest two stay"
    assert "b-old" not in jobs, "beyond its share, b's older jobs go by age like any other"
    finished = [j for j, js in jobs.items() if js.finished]
    assert len(finished) <= 6 + slack(6)
