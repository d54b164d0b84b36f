"""Compaction as readers see it (``coordinator/compaction.py``): queries and schedule reads
that would miss dropped rows are refused naming the rule; the dropped versions are kept as
spans; a site's stream reads an update about its own compacted job (or one whose id another
site took since) as it did; the operator's progress counts compacted jobs by outcome; and
``agora submit --follow`` sees the end of a job compacted before it looked, and a stopped
service. The compaction itself: test_compaction.py, whose helpers these use."""

from __future__ import annotations

from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import cluster, decide, end, job, op, report, submit
from tests.coordinator.test_compaction import (Run, all_but_one_done, batches, close,
                                              with_retain)


def test_reads_that_would_miss_dropped_rows_are_refused_naming_the_rule():
    r = with_retain(3)
    ids = batches(r, 6, size=2)
    gone = ids[0]
    assert gone not in r.state.ledger.jobs

    def ask(q: pb.Query) -> pb.QueryResult:
        return pb.QueryResult.FromString(r.state.query("operator", op(query=q)))

    err = ask(pb.Query(job_status=pb.JobStatusQuery(job_id=gone))).error
    assert err.field.endswith("job_status.job_id") and "retain_finished_jobs" in err.reason
    floor = r.state.compacted.history_floor
    assert floor > 0
    err = ask(pb.Query(schedule=pb.ScheduleQuery(since_version=0))).error
    assert err.field.endswith("since_version") and "compacted" in err.reason
    ok = ask(pb.Query(schedule=pb.ScheduleQuery(since_version=floor + 1)))
    assert not ok.HasField("error")
    # a compacted id may be submitted again, as a new job
    res = r("operator", submit(job(gone, "a", n=1, dag=False)))
    assert res.accepted == 1 and r.state.ledger.jobs[gone].outcome == "pending"


def test_a_site_still_reads_its_own_compacted_job_in_full_in_recent_updates():
    """A watch stream redacts each update as it sends it; one about a job since compacted,
    or whose id another site has submitted since, must read the same at every replica and as
    it did: by the origins the update carries (``job_origins``), not the state now."""
    from agora.coordinator.read_scope import scope_for

    r = with_retain(1)
    r("operator", submit(job("x", "a", n=1, dag=False)))
    rnd = r.state.round
    r("site:c", decide("c", rnd, ("x", "map", 1, 1)))
    close(r, rnd)
    r("site:c", report("c", end("x", "map", 0, reason="ran at c")))
    batches(r, 3, size=2)
    r("operator", submit(job("tail", "a", n=1, dag=False)))
    assert "x" not in r.state.ledger.jobs
    u = next(u for u in r.updates if any(c.job_id == "x" for c in u.changes))

    def read(site: str) -> tuple[str, str]:
        c = scope_for(r.state, f"site:{site}").update(u).changes[0]
        return c.site, c.reason
    before = (read("a"), read("b"))
    assert before == (("c", "ran at c"), ("", ""))
    # another site submits a job of the same id: the old update still reads as a's, not b's
    # (the review's finding: a lagging and a leading replica sent a different bytes)
    assert r("site:b", submit(job("x", "b", n=1, dag=False))).accepted == 1
    assert (read("a"), read("b")) == before


def test_the_operators_progress_counts_compacted_jobs_by_outcome():
    from collections import Counter

    from agora.agents.ledger import Ledger
    from agora.coordinator.ledger_follow import ledger_summary

    state = {"ledger": Ledger(), "version": 9, "round": 2,
             "compacted": Counter({"completed": 5, "failed": 2, "unschedulable": 1,
                                   "cancelled": 3})}
    by = ledger_summary(state)
    assert (by["done"], by["failed"], by["cancelled"], by["pending"]) == (5, 3, 3, 0)


def test_the_dropped_versions_are_kept_as_spans_and_only_reads_that_need_them_are_refused():
    """The review's finding: one [oldest, newest] span refused a watch of versions between
    two dropped jobs' rows, which held none."""
    from agora.coordinator.compaction import MAX_SPANS, Compacted

    c = Compacted()
    c.add([4, 5, 30, 29])
    c.add([6, 50])
    assert c.dropped == [(4, 6), (29, 30), (50, 50)] and c.history_floor == 50
    assert not c.missing(10, 26) and not c.missing(31, 50) and not c.missing(51, 99)
    assert c.missing(0, 5) and c.missing(26, 30) and c.missing(50, 51) and c.missing(6, 7)
    many = Compacted()
    many.add(list(range(0, 10 * (MAX_SPANS + 5), 10)))        # more spans than kept
    assert len(many.dropped) == MAX_SPANS
    assert all(many.missing(v, v + 1) for v in range(0, 10 * (MAX_SPANS + 5), 10))
    back = Compacted()
    msg = pb.Compaction()
    c.to_pb(msg)
    back.restore(msg)
    assert (back.dropped, back.history_floor) == (c.dropped, c.history_floor)


class _FakeFollowed:
    """This test's fake of a coordinator client and config: a ledger query answered from
    ``view``, then ``updates`` streamed, then nothing more."""

    def __init__(self, view, updates) -> None:
        self.view, self.updates = view, updates

    async def ledger(self):
        return self.view

    async def watch(self, since_version):
        import asyncio

        for u in self.updates:
            yield u
        await asyncio.Event().wait()

    def load_cluster(self):
        return cluster()


def _finish_oldest_with_the_scan(monkeypatch) -> tuple[Run, pb.LedgerView, int]:
    """L, K1, K2 run; K1 and K2 complete; then, at the first change past SCAN_EVERY, L
    completes and is compacted in that very update (with K1)."""
    r = all_but_one_done(monkeypatch, ("L", "K1", "K2"), "L")
    view = pb.QueryResult.FromString(r.state.query(
        "operator", op(query=pb.Query(ledger=pb.LedgerQuery())))).ledger
    seen = len(r.updates)
    up = False
    while r.seq + 1 < 16:                    # changes that scan nothing
        r("site:c", report("c", nodes=[pb.NodeState(node="c/n1", up=up)]))
        up = not up
    r("site:a", report("a", end("L", "map", 0)))
    assert "L" in r.updates[-1].compacted
    return r, view, seen


def test_a_follower_counts_a_job_compacted_as_it_finished_by_its_outcome(monkeypatch):
    """The review's finding: counted by its outcome before the update ("pending"), the
    progress line said failed for a job that completed."""
    import asyncio

    from agora.coordinator.ledger_follow import follow_ledger, ledger_summary

    r, view, seen = _finish_oldest_with_the_scan(monkeypatch)
    fake = _FakeFollowed(view, r.updates[seen:])

    async def main():
        state: dict = {}
        t = asyncio.ensure_future(follow_ledger(fake, fake, state))
        await asyncio.sleep(0.3)
        t.cancel()
        return state
    state = asyncio.run(main())
    assert dict(state["compacted"]) == dict(r.state.compacted.jobs) == {"completed": 2}
    by = ledger_summary(state)
    assert (by["done"], by["failed"], by["pending"]) == (3, 0, 0)
    assert state["gone"]["L"] == ("completed", "")


def test_submit_follow_sees_the_end_of_a_job_compacted_before_it_looked_and_a_stopped_service(
        monkeypatch, capsys):
    import asyncio
    from types import SimpleNamespace

    from agora.deploy.cli_jobs import _follow

    r, view, seen = _finish_oldest_with_the_scan(monkeypatch)
    fake = _FakeFollowed(view, r.updates[seen:])
    a = SimpleNamespace(json=False, timeout=20.0)
    ends = asyncio.run(_follow(fake, fake, ["L", "K2"], a))
    assert {j: e["outcome"] for j, e in ends.items()} == {"L": "completed", "K2": "completed"}
    # a job that never ends while the service is gone: said at once, not after --timeout
    import time
    t0 = time.time()
    ends = asyncio.run(_follow(fake, fake, ["tail-never"], a, serving=lambda: False))
    assert ends == {} and time.time() - t0 < 10
    assert "the service stopped while 1 job(s) had not ended (tail-never)" in \
        capsys.readouterr().err


def test_submit_follow_says_a_failed_jobs_instances_still_run(capsys):
    """A probe: ``agora submit --follow`` said "failed" and returned while 9 instances of
    the job still ran (they finish, as documented), and the operator took the cluster for
    free. The end line now says how many still run and how to stop them."""
    import asyncio
    from types import SimpleNamespace

    from agora.deploy.cli_jobs import _follow
    from tests.coordinator.state_helpers import Run as StateRun
    from tests.coordinator.state_helpers import allocate

    r = StateRun()
    r("site:a", submit(job("j", n=2, dag=False)))
    allocate(r, "j", "a", 2)                              # both instances run
    for k, site in enumerate("acb"):                      # instance 0 fails 3 times
        r(f"site:{site}", report(site, end("j", "map", 0, "failed")))
        if k < 2:                                         # (not again where it failed)
            allocate(r, "j", "cb"[k], 1, rnd=r.state.round)
    assert r.state.ledger.jobs["j"].outcome == "failed"
    view = pb.QueryResult.FromString(r.state.query(
        "operator", op(query=pb.Query(ledger=pb.LedgerQuery())))).ledger
    fake = _FakeFollowed(view, [])
    ends = asyncio.run(_follow(fake, fake, ["j"], SimpleNamespace(json=False, timeout=20.0)))
    assert ends["j"]["outcome"] == "failed" and ends["j"]["still_running"] == 1
    out = capsys.readouterr().out
    assert "1 instance(s) of it still running, to finish (agora cancel j stops them)" in out
