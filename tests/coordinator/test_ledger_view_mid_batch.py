"""A site agent's view read in the middle of a PBFT batch (a review): the commands of a batch
share a version, told apart by ``sub``; an ordered ledger query (the client's path when fewer
than 2f+1 replicas agree on a read) can run between two of them. The view said version V and
its follower took every (V, sub) as held, losing the batch's later updates -- and an update
that later named what was lost raised, and the reopened watch skipped that one too. The view
now says how many updates of V it holds (``LedgerView.subs``), and an update that does not
apply makes the agent read the ledger afresh. Over a fake of the coordinator client (this
unit test's); the state is the real replicated schedule."""

from __future__ import annotations

import asyncio

from agora.coordinator.clearinghouse import PbftClearinghouse
from agora.coordinator.queries import ledger_query
from agora.coordinator.read_scope import scope_for
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, cluster, job, op, submit


class FakeClient:
    client_id = "site:a"

    def __init__(self, view, updates) -> None:
        self.view, self.updates = view, updates

    async def ledger(self):
        return self.view

    def watch(self, since_version=0):
        async def gen():
            for u in self.updates:
                if u.version >= since_version:
                    yield u
            await asyncio.sleep(3600)
        return gen()

    async def heartbeat(self, wait_s=None):
        return 4


def follow(view, r: Run) -> PbftClearinghouse:
    """Site a's clearinghouse restored from ``view``, having followed ``r``'s updates."""
    scope = scope_for(r.state, "site:a")
    seen = [scope.update(u) for u in r.updates]

    async def main():
        ch = PbftClearinghouse(cluster=cluster(), client=FakeClient(view, seen),
                               heartbeat_s=3600)
        ch.lost = []
        ch.lost_track = ch.lost.append
        await ch.start(lambda started: None)
        await asyncio.sleep(0.2)
        for t in ch._tasks:
            t.cancel()
        return ch
    return asyncio.run(main())


def mid_batch() -> tuple[Run, pb.LedgerView]:
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))                          # (1, 0)
    r("site:a", submit(job("j1", n=1, dag=False)))                          # (2, 0)
    res = r("site:a", op(query=ledger_query()), same_seq=True)              # ordered, at 2
    r("site:c", submit(job("j2", "c", n=1, dag=False)), same_seq=True)      # (2, 1)
    return r, res.query.ledger


def test_a_view_read_mid_batch_misses_no_later_update_of_its_version():
    r, view = mid_batch()
    assert (view.version, view.subs) == (2, 1)
    ch = follow(view, r)
    assert sorted(ch.ledger.jobs) == sorted(r.state.ledger.jobs) == ["j0", "j1", "j2"]
    assert ch.lost == []


def test_a_view_read_between_batches_holds_every_update_of_its_version():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    r("site:c", submit(job("j1", "c", n=1, dag=False)), same_seq=True)     # (1, 0), (1, 1)
    view = pb.QueryResult.FromString(r.state.query("site:a", op(query=ledger_query()))).ledger
    assert view.version == 1 and not view.HasField("subs")
    ch = follow(view, r)
    assert sorted(ch.ledger.jobs) == ["j0", "j1"] and ch.lost == []


def test_an_update_that_does_not_apply_makes_the_agent_read_the_ledger_again():
    r, view = mid_batch()
    r("site:c", op(cancel_job=pb.CancelJob(job_id="j2")))                   # (3, 0)
    view.ClearField("subs")           # as a view read before the fix: j2 is missed
    ch = follow(view, r)
    assert "j2" not in ch.ledger.jobs
    assert len(ch.lost) == 1 and "the update of version 3 does not apply" in ch.lost[0]


def test_a_replica_restored_from_a_checkpoint_answers_an_ordered_read_alike():
    """A second review: the count came from the state's last publishing batch, which a
    snapshot does not keep -- a restored replica's answer differed (f+1 answers must match,
    and the reply is in the checkpointed reply table). Only this batch's count is said."""
    from agora.coordinator.schedule_state import ScheduleState

    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))                          # 1 publishes
    r("site:a", op(cancel_job=pb.CancelJob(job_id="nope")))                 # 2 does not
    other = ScheduleState(cluster(), n_replicas=4)
    other.restore(r.state.snapshot())
    q = op(query=ledger_query())
    a, b = r.state.execute("operator", q, 3), other.execute("operator", q, 3)
    assert a == b and not pb.Result.FromString(a).query.ledger.HasField("subs")
