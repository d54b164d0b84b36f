"""The replicated schedule (coordinator/schedule_state.py): a deterministic state machine.

Same commands give the same bytes; snapshots round-trip; the clearing is agents.market's over
the one ledger; a round closes when every site that can take open work has decided, or on
f+1 replica votes, never on a site's say; ends open dependent work, failures reopen it (up to
max_attempts), lost runs requeue without counting; no site acts for another; no byte string
can raise or change the schedule."""

from __future__ import annotations

import random
import struct

import pytest
from nacl.signing import SigningKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents import market
from agora.agents.domain import Cluster, Demand, Faults, Job, Node, Site, Task
from agora.coordinator import round_commands
from agora.coordinator.schedule_state import ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def cluster() -> Cluster:
    a = Site(name="a", nodes=(Node("a/n0", "a", cpu=8000, mem=16384),
                              Node("a/g0", "a", cpu=8000, mem=16384, gpus=2, gpu_model="T4")))
    b = Site(name="b", nodes=(Node("b/n0", "b", cpu=4000, mem=8192),))
    c = Site(name="c", nodes=(Node("c/n0", "c", cpu=16000, mem=32768),
                              Node("c/n1", "c", cpu=16000, mem=32768)))
    return Cluster(sites=(a, b, c), faults=Faults(max_attempts=3))


def job(jid: str, origin: str = "a", weight: float = 1.0, *, n: int = 4, cpu: int = 1000,
        dag: bool = True, gpu: int = 0) -> Job:
    first = Task("map", 10.0, Demand(cpu, 1024, gpu), instances=n)
    if not dag:
        return Job(jid, 0.0, origin, (first,), weight=weight)
    return Job(jid, 0.0, origin, (first, Task("reduce", 5.0, Demand(500, 512), instances=2,
                                               after=("map",))), weight=weight)


def op(**kind) -> bytes:
    return pb.Command(**kind).SerializeToString()


def submit(*jobs: Job) -> bytes:
    return op(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(j) for j in jobs]))


def end(j: str, t: str, i: int, kind: str = "completed", reason: str = "") -> pb.End:
    k = {"completed": pb.END_COMPLETED, "failed": pb.END_FAILED, "lost": pb.END_LOST}[kind]
    return pb.End(job_id=j, task_id=t, instance=i, kind=k, start_s=1.0, end_s=11.0,
                  exit_code=0 if kind == "completed" else 1, reason=reason)


def decide(site: str, rnd: int, *items: tuple[str, str, int, int], ends=(),
           nodes=()) -> bytes:
    return op(site_round=pb.SiteRound(
        site=site, round=rnd, bidding=True, ends=list(ends), nodes=list(nodes),
        bids=[pb.Bid(job_id=j, task_id=t, instances=n, price=p) for j, t, n, p in items]))


def report(site: str, *ends: pb.End, nodes=()) -> bytes:
    return op(site_round=pb.SiteRound(site=site, ends=list(ends), nodes=list(nodes)))


def vote(rnd: int) -> bytes:
    return op(close_round=pb.CloseRound(round=rnd))


def lapse(site: str, last_heard: int) -> bytes:
    return op(site_lapsed=pb.SiteLapsed(site=site, last_heard=last_heard))


class Run:
    """A state and its sequence numbers: ``run("site:a", op)`` -> Result; the updates it
    published are in ``updates``."""

    def __init__(self) -> None:
        self.state = ScheduleState(cluster(), n_replicas=4)
        self.seq = 0
        self.updates: list[pb.ScheduleUpdate] = []
        self.state.listeners.append(self.updates.append)

    def __call__(self, client: str, data: bytes, *, same_seq: bool = False) -> pb.Result:
        self.seq += 0 if same_seq else 1
        out = pb.Result.FromString(self.state.execute(client, data, self.seq))
        self.state.check_invariants()
        return out

    def running(self, j: str, t: str) -> list[int]:
        return sorted(self.state.ledger.tasks[(j, t)].placements)


def script(rng: random.Random, steps: int) -> list[tuple[str, object]]:
    """A seeded mix of valid and invalid commands over three sites and four replicas: each a
    (client, make) where ``make(state)`` gives the bytes (decisions and votes mostly for the
    state's current round, ends mostly for instances running where they are reported)."""
    out = [("site:a", lambda st: submit(job("j0"), job("j1", weight=2.0))),
           ("site:c", lambda st: submit(job("j2", "c", n=6, dag=False)))]
    tasks = [("j0", "map"), ("j0", "reduce"), ("j1", "map"), ("j1", "reduce"), ("j2", "map")]
    for _ in range(steps):
        k = rng.random()
        site = rng.choice("abc")
        d = rng.choice([0, 0, 0, -1, 1])
        if k < 0.45:
            items = [(*rng.choice(tasks), rng.randint(1, 3), rng.randint(0, 9))
                     for _ in range(rng.randint(0, 3))]
            out.append((f"site:{site}",
                         lambda st, site=site, d=d, items=items: decide(site, st.round + d,
                                                                        *items)))
        elif k < 0.55:
            out.append((f"replica:{rng.randint(0, 3)}", lambda st, d=d: vote(st.round + d)))
        elif k < 0.6:
            out.append((f"replica:{rng.randint(0, 3)}",
                        lambda st, site=site, d=d: lapse(site, st.sites[site].last_heard + d)))
        elif k < 0.62:                 # membership: admissions, rotations, removals
            key = bytes(SigningKey(rng.randbytes(32)).verify_key)
            cmd = (op(admit_site=pb.AdmitSite(site=site, verify_key=key)) if k < 0.615
                   else op(remove_site=pb.RemoveSite(site=site)))
            out.append((rng.choice(["operator", "operator", f"site:{site}"]),
                        lambda st, cmd=cmd: cmd))
        else:
            kind = rng.choice(["completed", "completed", "failed", "lost"])
            pick = rng.random()
            out.append((f"site:{site}", lambda st, site=site, kind=kind, pick=pick:
                        report(site, *_some_end(st, site, kind, pick))))
    return out


def _some_end(st: ScheduleState, site: str, kind: str, pick: float) -> list[pb.End]:
    here = [(ts.key, i) for ts in st.ledger.tasks.values() for i, (n, _) in
            ts.placements.items() if st.cluster.nodes[n].site == site]
    if not here or pick > 0.9:
        return [end("j0", "map", int(pick * 6), kind)]            # most likely refused
    (j, t), i = here[int(pick * len(here)) % len(here)]
    return [end(j, t, i, kind)]


# ---- determinism ----

def test_same_commands_same_results_updates_and_snapshot_bytes():
    cmds = script(random.Random(7), 400)
    runs = [Run(), Run()]
    results = [[r(c, mk(r.state)).SerializeToString(deterministic=True) for c, mk in cmds]
               for r in runs]
    assert results[0] == results[1]
    assert [u.SerializeToString(deterministic=True) for u in runs[0].updates] == \
        [u.SerializeToString(deterministic=True) for u in runs[1].updates]
    assert runs[0].state.snapshot() == runs[1].state.snapshot()
    assert runs[0].state.allocations, "the script must allocate something"
    assert runs[0].state.round > 2, "the script must close rounds"


def test_snapshot_restore_round_trips_and_continues_identically():
    cmds = script(random.Random(3), 300)
    a, b = Run(), Run()
    for c, mk in cmds[:150]:
        a(c, mk(a.state))
    snap = a.state.snapshot()
    b.state.restore(snap)
    b.seq = a.seq
    assert b.state.snapshot() == snap
    b.state.check_invariants()
    for c, mk in cmds[150:]:
        assert a(c, mk(a.state)) == b(c, mk(b.state))
    assert a.state.snapshot() == b.state.snapshot()


def test_incremental_snapshot_bytes_are_protobufs_canonical_encoding_at_every_step():
    """The snapshot is assembled from cached pieces (job records, each run's placement,
    history rows), some encoded ahead while idle (``warm``); at every step it must be
    exactly the deterministic serialisation of the message it encodes, and of a snapshot
    re-encoded from scratch (no cache) of the same state."""
    cmds = script(random.Random(11), 250)
    r, twin = Run(), Run()            # the twin is never warmed
    warmed = 0
    for k, (c, mk) in enumerate(cmds):
        r(c, mk(r.state))
        twin(c, mk(twin.state))
        if k % 3 == 1:
            warmed += r.state.warm(2)     # idle pre-encoding must not change a snapshot
        if k % 5:
            continue
        snap = r.state.snapshot()
        assert pb.ScheduleSnapshot.FromString(snap).SerializeToString(
            deterministic=True) == snap, f"step {k}"
        assert twin.state.snapshot() == snap, f"step {k}"
        fresh = ScheduleState(cluster(), n_replicas=4)
        fresh.restore(snap)
        assert fresh.snapshot() == snap, f"step {k}"
    assert r.state.changes and r.state.allocations and r.state.rejected
    assert warmed > 0


def test_restore_refuses_another_cluster_and_garbage():
    r = Run()
    r("site:a", submit(job("j0")))
    other = ScheduleState(Cluster(sites=(Site("z", (Node("z/0", "z", 1000, 1000),)),)))
    with pytest.raises(ValueError, match="cluster_digest"):
        other.restore(r.state.snapshot())
    before = r.state.snapshot()
    with pytest.raises(ValueError, match="snapshot"):
        r.state.restore(b"\xff\xff")
    assert r.state.snapshot() == before


# ---- rounds ----

def test_a_round_closes_once_every_site_that_can_take_the_work_decided():
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False, cpu=6000)))     # fits a and c, not b (4 cores)
    assert r.state.armed and r.state.expected_sites() == ["a", "c"]
    out = r("site:a", decide("a", 0, ("j0", "map", 1, 5)))
    assert r.state.round == 0 and not out.allocations             # c has not decided
    assert r("site:b", decide("b", 0)).accepted == 0 and r.state.round == 0
    out = r("site:c", decide("c", 0, ("j0", "map", 2, 9)))
    assert r.state.round == 1
    assert [(a.site, a.instance_begin, a.instance_end, a.round) for a in out.allocations] == \
        [("c", 0, 2, 0)]                                          # the higher price wins both


def test_work_that_opens_during_a_round_waits_for_the_next():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    for s in "ab":
        r(f"site:{s}", decide(s, 0, ("j0", "map", 1, 1)))
    r("operator", submit(job("late", "c", n=1, dag=False)))      # c can take it, a new site
    assert r.state.round == 0 and "c" in r.state.expected_sites()
    out = r("site:c", decide("c", 0))                            # c passes: the round closes
    assert r.state.round == 1 and len(out.allocations) == 1
    assert r.state.ledger.tasks[("late", "map")].open == 1       # ... for round 1


def test_a_sites_new_decision_replaces_its_earlier_one_in_the_round():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False), job("j1", n=1, dag=False)))
    r("site:a", decide("a", 0, ("j0", "map", 1, 1)))
    r("site:a", decide("a", 0, ("j1", "map", 1, 1)))
    r("site:b", decide("b", 0))
    out = r("site:c", decide("c", 0))
    assert [a.job_id for a in out.allocations] == ["j1"]


def test_a_round_that_allocates_nothing_disarms_until_something_changes():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    for s in "abc":
        r(f"site:{s}", decide(s, 0))                              # everyone passes
    assert r.state.round == 1 and not r.state.armed
    assert not r.state.expected_sites() or not r.state.armed
    r("operator", submit(job("j1", n=1, dag=False)))
    assert r.state.armed


def test_only_f_plus_1_distinct_replicas_close_a_round_early():
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False)))
    r("site:a", decide("a", 0, ("j0", "map", 2, 1)))
    before = r.state.schedule_bytes()
    out = r("site:a", vote(0))                                    # a site may not vote
    assert out.rejections[0].field == "command.close_round"
    assert "may not vote" in out.rejections[0].reason
    assert r("operator", vote(0)).rejections and r.state.schedule_bytes() == before
    assert r("replica:7", vote(0)).rejections                     # no such replica
    r("replica:1", vote(0))
    r("replica:1", vote(0))                                       # the same replica twice
    assert r.state.round == 0
    assert r("replica:2", vote(5)).rejections                     # another round
    out = r("replica:3", vote(0))
    assert r.state.round == 1 and [a.site for a in out.allocations] == ["a"]


def test_no_site_can_move_the_clock_or_close_rounds_for_the_others():
    """What a Tick(at_s=1e300) once did: the command no longer exists, and its bytes are
    refused whole, changing nothing."""
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    r("site:a", decide("a", 0, ("j0", "map", 1, 1)))
    before = r.state.schedule_bytes()
    tick = bytes([0x08, 0x00, 0x11]) + struct.pack("<d", 1e300)   # Tick{round 0, at_s 1e300}
    old_tick = bytes([0x2A, len(tick)]) + tick                     # as Command field 5
    out = r("site:a", old_tick)
    assert out.rejections and "unknown field" in out.rejections[0].reason
    assert r.state.schedule_bytes() == before and r.state.round == 0
    for s in "bc":
        r(f"site:{s}", decide(s, 0))
    assert r.state.round == 1                                    # rounds go on as before


# ---- clearing ----

def test_clearing_is_agents_market_clear_over_the_ledger(monkeypatch):
    assert round_commands.clear is market.clear
    seen = []

    def spy(bids, book):
        seen.append((len(bids), type(book).__name__))
        return market.clear(bids, book)

    monkeypatch.setattr(round_commands, "clear", spy)
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False)))
    r("site:a", decide("a", 0, ("j0", "map", 2, 5)))
    r("site:b", decide("b", 0))
    r("site:c", decide("c", 0, ("j0", "map", 2, 9)))
    assert seen == [(2, "LedgerBook")]


def test_equal_prices_go_to_the_origin_site_a_higher_price_beats_it():
    r = Run()
    r("site:c", submit(job("j", "c", n=4, dag=False), job("k", "c", n=4, dag=False)))
    r("site:a", decide("a", 0, ("j", "map", 4, 1), ("k", "map", 4, 2)))
    r("site:b", decide("b", 0))
    out = r("site:c", decide("c", 0, ("j", "map", 4, 1), ("k", "map", 4, 1)))
    got = {(a.job_id, a.site): a.instance_end - a.instance_begin for a in out.allocations}
    assert got == {("j", "c"): 4, ("k", "a"): 4}


def test_gpu_work_goes_to_the_gpu_node():
    r = Run()
    r("site:a", submit(job("g", n=3, gpu=500, dag=False)))
    out = r("site:a", decide("a", 0, ("g", "map", 3, 1)))
    assert {a.node for a in out.allocations} == {"a/g0"}
    assert sum(a.instance_end - a.instance_begin for a in out.allocations) == 3


# ---- ends ----

def allocate(r: Run, jid: str, site: str, n: int, rnd: int = 0) -> None:
    r(f"site:{site}", decide(site, rnd, (jid, "map", n, 1)))
    for s in "abc":
        if r.state.round == rnd:
            r(f"replica:{'abc'.index(s)}", vote(rnd))


def test_dependencies_open_only_when_every_parent_instance_is_done():
    r = Run()
    r("site:a", submit(job("j", n=2)))
    allocate(r, "j", "a", 2)
    assert r.running("j", "map") == [0, 1]
    r("site:a", report("a", end("j", "map", 0)))
    assert r.state.ledger.tasks[("j", "reduce")].open == 0
    r("site:a", report("a", end("j", "map", 1)))
    assert r.state.ledger.tasks[("j", "reduce")].open == 2 and r.state.armed
    status = pb.QueryResult.FromString(r.state.query("x", op(query=pb.Query(
        job_status=pb.JobStatusQuery(job_id="j"))))).job_status
    assert [(t.task_id, t.done, t.open) for t in status.tasks] == [("map", 2, 0),
                                                                   ("reduce", 0, 2)]


def test_a_failed_attempt_reopens_until_max_attempts_and_a_lost_run_never_counts():
    r = Run()
    r("site:a", submit(job("j", n=1, dag=False)))
    free = int(r.state.capacity.free_cpu.sum())
    for attempt in range(5):                       # lost runs: as often as it takes
        allocate(r, "j", "b", 1, r.state.round)
        r("site:b", report("b", end("j", "map", 0, "lost", reason="node down")))
    ts = r.state.ledger.tasks[("j", "map")]
    assert ts.failures == {} and ts.open == 1
    assert int(r.state.capacity.free_cpu.sum()) == free
    for attempt in range(3):                       # failed attempts: max_attempts = 3
        allocate(r, "j", "b", 1, r.state.round)
        out = r("site:b", report("b", end("j", "map", 0, "failed", reason="exit 1")))
        assert out.accepted == 1
    assert ts.outcome == "failed" and r.state.ledger.jobs["j"].outcome == "failed"
    assert [c.kind for c in r.updates[-1].changes] == ["failed"]


def test_an_end_for_an_instance_not_running_at_the_site_is_refused_and_changes_nothing():
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False)))
    allocate(r, "j", "b", 2)
    ts = r.state.ledger.tasks[("j", "map")]
    before = (bytes(ts.states), dict(ts.placements), r.state.capacity.free_cpu.tolist())
    for client, msg in (("site:c", report("c", end("j", "map", 0))),       # not c's
                        ("site:b", report("b", end("j", "map", 7))),       # no such instance
                        ("site:b", report("b", end("j", "zz", 0))),
                        ("site:a", report("b", end("j", "map", 0)))):      # a speaks for b
        out = r(client, msg)
        assert out.accepted == 0 and out.rejections, msg
    assert (bytes(ts.states), dict(ts.placements), r.state.capacity.free_cpu.tolist()) == before


def test_a_node_that_goes_down_loses_its_runs_and_takes_no_more_work():
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False, cpu=9000)))
    allocate(r, "j", "c", 2)
    ts = r.state.ledger.tasks[("j", "map")]
    assert {r.state.node_names[n] for n, _ in ts.placements.values()} == {"c/n0", "c/n1"}
    r("site:c", report("c", nodes=[pb.NodeState(node="c/n0", up=False)]))
    assert ts.open == 1 and ts.failures == {} and len(ts.placements) == 1
    assert [(n.node, n.up) for n in r.updates[-1].nodes] == [("c/n0", False)]
    assert [c.kind for c in r.updates[-1].changes] == ["lost"]
    assert r("site:b", report("b", nodes=[pb.NodeState(node="c/n1", up=False)])).rejections
    out = r("site:c", decide("c", r.state.round, ("j", "map", 1, 1)))
    assert [x.field for x in out.rejections] == ["command.site_round.bids[0].instances"]
    r("site:c", report("c", nodes=[pb.NodeState(node="c/n0", up=True)]))
    allocate(r, "j", "c", 1, r.state.round)
    assert {r.state.node_names[n] for n, _ in ts.placements.values()} == {"c/n0", "c/n1"}


def test_f_plus_1_lapse_votes_lose_a_silent_sites_runs_and_it_comes_back_by_speaking():
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False)))
    allocate(r, "j", "b", 2)
    heard = r.state.sites["b"].last_heard
    assert heard > 0
    assert r("site:c", lapse("b", heard)).rejections                 # sites do not vote
    r("replica:0", lapse("b", heard))
    assert not r.state.sites["b"].lapsed
    assert r("replica:1", lapse("b", heard - 1)).rejections           # a stale vote
    r("replica:2", lapse("b", heard))
    assert r.state.sites["b"].lapsed
    ts = r.state.ledger.tasks[("j", "map")]
    assert ts.open == 2 and ts.failures == {}                         # lost, not failed
    assert "b" not in r.state.expected_sites()
    r("site:b", report("b"))
    assert not r.state.sites["b"].lapsed and "b" in r.state.expected_sites()


# ---- mediation ----

def test_over_allocating_and_wrong_site_decisions_are_refused_with_the_field():
    r = Run()
    r("site:b", submit(job("big", "b", n=8, cpu=1000, dag=False)))
    out = r("site:b", decide("b", 0, ("big", "map", 5, 1)))            # b has 4 cores
    assert out.accepted == 0
    assert out.rejections[0].field == "command.site_round.bids[0].instances"
    assert "over-allocate site 'b'" in out.rejections[0].reason
    out = r("site:a", decide("b", 0, ("big", "map", 1, 1)))
    assert out.rejections[0].field == "command.site_round.site"
    assert "may not act for site 'b'" in out.rejections[0].reason
    assert r("operator", decide("a", 0)).rejections
    assert r("site:b", decide("b", 3, ("big", "map", 1, 1))).rejections[0].field == \
        "command.site_round.round"


def test_jobs_rejected_one_by_one_with_the_field():
    r = Run()
    bad = job_to_proto(job("bad"))
    bad.tasks[0].instances = 0
    huge = job("huge", n=1, cpu=64000, dag=False)
    out = r("site:a", op(submit_jobs=pb.SubmitJobs(jobs=[
        job_to_proto(job("ok")), bad, job_to_proto(job("ok")), job_to_proto(huge),
        job_to_proto(job("elsewhere", "c"))])))
    assert out.accepted == 1
    assert [x.field for x in out.rejections] == [
        "command.submit_jobs.jobs[1].tasks[0].instances", "command.submit_jobs.jobs[2].id",
        "command.submit_jobs.jobs[3].tasks[0]", "command.submit_jobs.jobs[4].origin"]
    assert "fits no node" in out.rejections[2].reason


# ---- queries and updates ----

def test_queries_by_site_job_task_version_and_the_whole_ledger():
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False), job("j1", n=2, dag=False)))
    allocate(r, "j0", "a", 2)
    allocate(r, "j1", "b", 2, 1)

    def q(**kind):
        return pb.QueryResult.FromString(r.state.query("x", op(query=pb.Query(**kind))))

    def sched(**by):
        return q(schedule=pb.ScheduleQuery(**by))

    assert [a.site for a in sched(all=True).schedule.allocations] == ["a", "b"]
    assert [a.job_id for a in sched(site="b").schedule.allocations] == ["j1"]
    assert [a.site for a in sched(job_id="j0").schedule.allocations] == ["a"]
    assert len(sched(task=pb.TaskRef(job_id="j1", task_id="map")).schedule.allocations) == 1
    last = r.state.allocations[-1][6]
    assert [a.version for a in sched(since_version=last).schedule.allocations] == [last]
    assert sched(site="zz").error.field == "command.query.schedule.site"
    led = q(ledger=pb.LedgerQuery()).ledger
    assert [j.job.id for j in led.jobs] == ["j0", "j1"] and led.round.round == 2
    assert [t.states for t in led.jobs[1].tasks] == [bytes([2, 2])]
    ordered = r("x", op(query=pb.Query(schedule=pb.ScheduleQuery(site="b"))))
    assert ordered.query.schedule.allocations == sched(site="b").schedule.allocations


def test_updates_of_one_batch_share_a_version_and_are_told_apart_by_sub():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    r("site:a", submit(job("j1", n=1, dag=False)), same_seq=True)
    r("site:c", submit(job("j2", "c", n=1, dag=False)), same_seq=True)
    assert [(u.version, u.sub, u.jobs[0].id) for u in r.updates] == \
        [(1, 0, "j0"), (1, 1, "j1"), (1, 2, "j2")]
    assert all(u.round.armed and u.round.round == 0 for u in r.updates)


# ---- no bytes can raise or change the schedule ----

def _loaded() -> Run:
    r = Run()
    for c, mk in script(random.Random(11), 80):
        r(c, mk(r.state))
    return r


LOADED = _loaded()
CLIENTS = ["site:a", "site:b", "operator", "", "replica:0", "replica:3"]


def _check_never_raises(data: bytes, client: str) -> None:
    r = LOADED
    before, snap = r.state.schedule_bytes(), r.state.snapshot()
    try:
        out = pb.Result.FromString(r.state.execute(client, data, 10_000))
        q = pb.QueryResult.FromString(r.state.query(client, data))
        r.state.check_invariants()
        if out.kind == "" or (out.accepted == 0 and out.kind in ("submit_jobs", "cancel_job")):
            assert r.state.schedule_bytes() == before
            assert out.rejections and out.rejections[0].field.startswith("command")
        assert q.version >= 0
    finally:
        r.state.restore(snap)


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(CLIENTS))
def test_arbitrary_bytes_never_raise(data, client):
    _check_never_raises(data, client)


VALID = [submit(job("new")), decide("a", 3, ("j0", "map", 1, 1)), vote(3),
         report("c", end("j2", "map", 0)), report("c", end("j2", "map", 0, "failed", "x")),
         lapse("b", 2), op(cancel_job=pb.CancelJob(job_id="j1", reason="r")),
         op(query=pb.Query(schedule=pb.ScheduleQuery(all=True)))]


@SETTINGS
@given(st.sampled_from(VALID), st.data())
def test_mutated_commands_never_raise_and_report_the_field(data, draw):
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        if not buf:
            break
        i = draw.draw(st.integers(0, len(buf) - 1))
        buf[i] = draw.draw(st.integers(0, 255))
    _check_never_raises(bytes(buf), draw.draw(st.sampled_from(CLIENTS)))


@SETTINGS
@given(job_id=st.text(max_size=5), task_id=st.text(max_size=5),
       instances=st.integers(-2**31, 2**31 - 1), price=st.integers(-2**63, 2**63 - 1),
       site=st.sampled_from(["a", "b", "c", "", "zz"]), rnd=st.integers(-5, 5))
def test_arbitrary_bid_fields_are_checked(job_id, task_id, instances, price, site, rnd):
    _check_never_raises(decide(site, rnd, (job_id, task_id, instances, price)), f"site:{site}")


@SETTINGS
@given(inst=st.integers(-2**31, 2**31 - 1), kind=st.integers(0, 5),
       site=st.sampled_from(["a", "b", "c", "x"]), reason=st.text(max_size=3),
       t0=st.floats(allow_nan=True, allow_infinity=True),
       t1=st.floats(allow_nan=True, allow_infinity=True), node=st.text(max_size=6))
def test_arbitrary_ends_and_node_states_are_checked(inst, kind, site, reason, t0, t1, node):
    e = pb.End(job_id="j2", task_id="map", instance=inst, kind=kind, start_s=t0, end_s=t1,
               reason=reason)
    _check_never_raises(report(site, e, nodes=[pb.NodeState(node=node, up=inst % 2 == 0)]),
                        f"site:{site}")


@SETTINGS
@given(jid=st.text(max_size=4), origin=st.sampled_from(["a", "c", "zz", ""]),
       weight=st.floats(allow_nan=True), n=st.integers(-3, 5), cpu=st.integers(-5, 10**6),
       after=st.lists(st.sampled_from(["map", "reduce", "x"]), max_size=2))
def test_arbitrary_jobs_are_checked(jid, origin, weight, n, cpu, after):
    from agora.protos.agora.v1 import resources_pb2, workload_pb2
    t = workload_pb2.Task(id="map", duration_s=1.0, instances=n, after=after,
                          demand=resources_pb2.Demand(resources=resources_pb2.Resources(
                              cpu_milli=cpu, mem_mib=1)))
    msg = workload_pb2.Job(id=jid, origin=origin, weight=weight, tasks=[t])
    _check_never_raises(op(submit_jobs=pb.SubmitJobs(jobs=[msg])), f"site:{origin}")
