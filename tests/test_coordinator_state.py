"""The replicated schedule (coordinator/schedule_state.py): a deterministic state machine.

Same commands give the same bytes; snapshots round-trip; the clearing is agents.market's;
dependencies open on completion; failures reopen work; over-allocation and wrong-site bids
are rejected with the field; no byte string can raise or change the schedule."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agents.market
from agents.domain import Cluster, Demand, Job, Node, Site, Task
from coordinator import schedule_state
from coordinator.schedule_state import ScheduleState
from protos.agora.v1 import coordinator_pb2 as pb
from protos.convert import job_to_proto

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def cluster() -> Cluster:
    a = Site(name="a", nodes=(Node("a/n0", "a", cpu=8000, mem=16384),
                              Node("a/g0", "a", cpu=8000, mem=16384, gpus=2, gpu_model="T4")))
    b = Site(name="b", nodes=(Node("b/n0", "b", cpu=4000, mem=8192),))
    c = Site(name="c", nodes=(Node("c/n0", "c", cpu=16000, mem=32768),
                              Node("c/n1", "c", cpu=16000, mem=32768)))
    return Cluster(sites=(a, b, c))


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


def bids(site: str, rnd: int, *items: tuple[str, str, int, int]) -> bytes:
    return op(bid_batch=pb.BidBatch(site=site, round=rnd, bids=[
        pb.Bid(job_id=j, task_id=t, instances=n, price=p) for j, t, n, p in items]))


def tick(rnd: int, at: float = 0.0) -> bytes:
    return op(tick=pb.Tick(round=rnd, at_s=at))


def done(j, t, b, e, site, failed: str | None = None) -> bytes:
    if failed is not None:
        return op(failure=pb.Failure(job_id=j, task_id=t, instance_begin=b, instance_end=e,
                                     site=site, reason=failed))
    return op(completion=pb.Completion(job_id=j, task_id=t, instance_begin=b, instance_end=e,
                                       site=site))


class Run:
    """A state and its sequence numbers: ``run("site:a", op)`` -> Result."""

    def __init__(self, verify=None) -> None:
        self.state = ScheduleState(cluster(), verify=verify)
        self.seq = 0

    def __call__(self, client: str, data: bytes) -> pb.Result:
        self.seq += 1
        out = pb.Result.FromString(self.state.execute(client, data, self.seq))
        self.state.check_invariants()
        return out


def script(rng: random.Random, steps: int) -> list[tuple[str, bytes]]:
    """A seeded mix of valid and invalid commands over three sites."""
    out = [("site:a", submit(job("j0"), job("j1", weight=2.0))),
           ("site:c", submit(job("j2", "c", n=6, dag=False)))]
    tasks = [("j0", "map"), ("j0", "reduce"), ("j1", "map"), ("j1", "reduce"), ("j2", "map")]
    rnd = 0
    for _ in range(steps):
        k = rng.random()
        site = rng.choice("abc")
        if k < 0.45:
            items = [(*rng.choice(tasks), rng.randint(1, 3), rng.randint(0, 9))
                     for _ in range(rng.randint(1, 3))]
            out.append((f"site:{site}", bids(site, rnd, *items)))
        elif k < 0.6:
            out.append(("operator", tick(rnd, float(rnd))))
            rnd += 1
        else:
            j, t = rng.choice(tasks)
            b = rng.randint(0, 5)
            out.append((f"site:{site}", done(j, t, b, b + rng.randint(1, 2), site,
                                             failed="oom" if k > 0.85 else None)))
    return out


# ---- determinism ----

def test_same_commands_same_results_and_snapshot_bytes():
    cmds = script(random.Random(7), 300)
    runs = [Run(), Run()]
    results = [[r(c, d).SerializeToString(deterministic=True) for c, d in cmds] for r in runs]
    assert results[0] == results[1]
    assert runs[0].state.snapshot() == runs[1].state.snapshot()
    assert runs[0].state.allocations, "the script must allocate something"


def test_snapshot_restore_round_trips_and_continues_identically():
    cmds = script(random.Random(3), 200)
    a, b = Run(), Run()
    for c, d in cmds[:120]:
        a(c, d)
    snap = a.state.snapshot()
    b.state.restore(snap)
    b.seq = a.seq
    assert b.state.snapshot() == snap
    b.state.check_invariants()
    for c, d in cmds[120:]:
        assert a(c, d) == b(c, d)
    assert a.state.snapshot() == b.state.snapshot()


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


# ---- clearing ----

def test_clearing_is_agents_market_clear_with_the_state_as_book(monkeypatch):
    assert schedule_state.clear is agents.market.clear
    seen = []

    def spy(bids, book):
        seen.append((sorted(bids, key=repr), type(book).__name__))
        return agents.market.clear(bids, book)

    monkeypatch.setattr(schedule_state, "clear", spy)
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False)))
    r("site:a", bids("a", 0, ("j0", "map", 2, 5)))
    r("site:c", bids("c", 0, ("j0", "map", 2, 9)))
    out = r("operator", tick(0, 12.5))
    assert len(seen) == 1 and len(seen[0][0]) == 2 and seen[0][1] == "ScheduleBook"
    # The higher price wins both instances; a's bid is outbid and reported.
    assert [(a.site, a.instance_begin, a.instance_end, a.version, a.start_s)
            for a in out.allocations] == [("c", 0, 2, 4, 12.5)]
    assert any("outbid" in x.reason for x in out.rejections)
    assert out.round == 1


def test_equal_prices_go_to_the_origin_site_a_higher_price_beats_it():
    r = Run()
    r("site:c", submit(job("j", "c", n=4, dag=False), job("k", "c", n=4, dag=False)))
    r("site:a", bids("a", 0, ("j", "map", 4, 1), ("k", "map", 4, 2)))
    r("site:c", bids("c", 0, ("j", "map", 4, 1), ("k", "map", 4, 1)))
    out = r("operator", tick(0))
    got = {(a.job_id, a.site): a.instance_end - a.instance_begin for a in out.allocations}
    assert got == {("j", "c"): 4, ("k", "a"): 4}


def test_gpu_and_node_best_fit_are_recorded_per_node():
    r = Run()
    r("site:a", submit(job("g", n=3, gpu=500, dag=False)))
    r("site:a", bids("a", 0, ("g", "map", 3, 1)))
    out = r("operator", tick(0))
    assert {a.node for a in out.allocations} == {"a/g0"}
    assert sum(a.instance_end - a.instance_begin for a in out.allocations) == 3


# ---- dependencies, completions, failures ----

def test_dependencies_open_only_when_every_parent_instance_is_done():
    r = Run()
    r("site:a", submit(job("j", n=2)))
    assert "no open instance" in r("site:a", bids("a", 0, ("j", "reduce", 1, 1))).rejections[0].reason
    r("site:a", bids("a", 0, ("j", "map", 2, 1)))
    r("operator", tick(0))
    r("site:a", done("j", "map", 0, 1, "a"))
    assert r("site:a", bids("a", 1, ("j", "reduce", 1, 1))).accepted == 0
    r("site:a", done("j", "map", 1, 2, "a"))
    assert r("site:a", bids("a", 1, ("j", "reduce", 2, 1))).accepted == 1
    status = pb.QueryResult.FromString(r.state.query("x", op(query=pb.Query(
        job_status=pb.JobStatusQuery(job_id="j"))))).job_status
    assert [(t.task_id, t.done, t.open) for t in status.tasks] == [("map", 2, 0),
                                                                   ("reduce", 0, 2)]


def test_failure_reopens_instances_for_rebidding_never_lost():
    r = Run()
    r("site:a", submit(job("j", n=3, dag=False)))
    r("site:b", bids("b", 0, ("j", "map", 3, 1)))
    r("operator", tick(0))
    free_before = int(r.state.capacity.free_cpu.sum())
    out = r("site:b", done("j", "map", 1, 3, "b", failed="node lost"))
    assert out.accepted == 2 and not out.rejections
    assert int(r.state.capacity.free_cpu.sum()) == free_before + 2000
    ts = r.state.tasks[("j", "map")]
    assert (ts.n_open, len(ts.running), ts.failures) == (2, 1, 1)
    r("site:c", bids("c", 1, ("j", "map", 2, 1)))
    again = r("operator", tick(1))
    assert [(a.site, a.instance_begin, a.instance_end) for a in again.allocations] == [("c", 1, 3)]
    # A failure reported for instances not running there is refused and changes nothing.
    before = r.state.schedule_bytes()
    bad = r("site:b", done("j", "map", 1, 2, "b", failed="x"))
    assert bad.rejections[0].field == "command.failure.instance_begin"
    assert r.state.schedule_bytes() == before


# ---- mediation ----

def test_over_allocating_bid_is_rejected_with_a_reason_and_changes_nothing():
    r = Run()
    r("site:b", submit(job("big", "b", n=8, cpu=1000, dag=False)))
    before = r.state.schedule_bytes()
    out = r("site:b", bids("b", 0, ("big", "map", 5, 1)))   # b has 4 cores
    assert out.accepted == 0
    assert out.rejections[0].field == "command.bid_batch.bids[0].instances"
    assert "over-allocate site 'b'" in out.rejections[0].reason
    assert r.state.schedule_bytes() == before
    assert r.state.rejected["bid.over_allocation"] == 1
    # Bids of one round add up: 3 + 2 instances of a 1-core task exceed 4 cores.
    r("site:b", submit(job("other", "b", n=2, dag=False)))
    assert r("site:b", bids("b", 0, ("big", "map", 3, 1))).accepted == 1
    assert r("site:b", bids("b", 0, ("other", "map", 2, 1))).accepted == 0


def test_bids_for_another_site_are_rejected_whole():
    r = Run()
    r("site:a", submit(job("j")))
    before = r.state.schedule_bytes()
    out = r("site:a", bids("b", 0, ("j", "map", 1, 1)))
    assert out.rejections[0].field == "command.bid_batch.site"
    assert "may not act for site 'b'" in out.rejections[0].reason
    assert r("operator", bids("a", 0, ("j", "map", 1, 1))).accepted == 0
    assert r.state.schedule_bytes() == before
    assert r.state.rejected["bid_batch.wrong_site"] == 2


def test_unknown_duplicate_and_stale_bids_and_ticks_are_rejected():
    r = Run()
    r("site:a", submit(job("j")))
    out = r("site:a", bids("a", 0, ("nope", "map", 1, 1), ("j", "map", 1, 1),
                         ("j", "map", 1, 2), ("j", "map", 0, 1), ("j", "map", 1, -1)))
    assert out.accepted == 1
    assert [x.field for x in out.rejections] == [
        "command.bid_batch.bids[0].task_id", "command.bid_batch.bids[2]",
        "command.bid_batch.bids[3].instances", "command.bid_batch.bids[4].price"]
    assert r("site:a", bids("a", 3, ("j", "map", 1, 1))).rejections[0].field == \
        "command.bid_batch.round"
    assert r("x", tick(5)).rejections[0].field == "command.tick.round"
    r("x", tick(0, 10.0))
    assert r("x", tick(1, 9.0)).rejections[0].field == "command.tick.at_s"


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


def test_queries_by_site_job_task_and_version():
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False), job("j1", n=2, dag=False)))
    r("site:a", bids("a", 0, ("j0", "map", 2, 1)))
    r("operator", tick(0))
    r("site:b", bids("b", 1, ("j1", "map", 2, 1)))
    r("operator", tick(1))

    def q(**by):
        return pb.QueryResult.FromString(r.state.query("x", op(query=pb.Query(
            schedule=pb.ScheduleQuery(**by)))))

    assert [a.site for a in q(all=True).schedule.allocations] == ["a", "b"]
    assert [a.job_id for a in q(site="b").schedule.allocations] == ["j1"]
    assert [a.site for a in q(job_id="j0").schedule.allocations] == ["a"]
    assert len(q(task=pb.TaskRef(job_id="j1", task_id="map")).schedule.allocations) == 1
    assert [a.version for a in q(since_version=4).schedule.allocations] == [5]
    assert q(site="zz").error.field == "command.query.schedule.site"
    assert q().error.field == "command.query.schedule"
    # The ordered path answers the same.
    ordered = r("x", op(query=pb.Query(schedule=pb.ScheduleQuery(site="b"))))
    assert ordered.query.schedule.allocations == q(site="b").schedule.allocations


# ---- no bytes can raise or change the schedule ----

def _loaded() -> Run:
    r = Run()
    for c, d in script(random.Random(11), 60):
        r(c, d)
    return r


LOADED = _loaded()


def _check_never_raises(data: bytes, client: str) -> None:
    r = LOADED
    before, snap = r.state.schedule_bytes(), r.state.snapshot()
    try:
        out = pb.Result.FromString(r.state.execute(client, data, 10_000))
        q = pb.QueryResult.FromString(r.state.query(client, data))
        r.state.check_invariants()
        if r.state.schedule_bytes() != before:
            assert out.accepted > 0, "the schedule changed without anything accepted"
        else:
            assert out.accepted == 0 or out.kind in ("query",)
        if out.accepted == 0 and out.kind != "query":
            assert out.rejections and all(x.field.startswith("command") for x in out.rejections)
        assert q.version >= 0
    finally:
        r.state.restore(snap)


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(["site:a", "site:b", "operator", ""]))
def test_arbitrary_bytes_never_raise_and_change_nothing(data, client):
    before = LOADED.state.schedule_bytes()
    out = pb.Result.FromString(LOADED.state.execute(client, data, 10_000))
    if out.accepted == 0:
        assert LOADED.state.schedule_bytes() == before
        if out.kind not in ("query",):
            assert out.rejections and out.rejections[0].field.startswith("command")
    _check_never_raises(data, client)


VALID = [submit(job("new")), bids("a", 3, ("j0", "map", 1, 1)), tick(3, 3.0),
         done("j2", "map", 0, 1, "c"), done("j2", "map", 0, 1, "c", failed="x"),
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
    _check_never_raises(bytes(buf), draw.draw(st.sampled_from(["site:a", "site:c", "op"])))


@SETTINGS
@given(job_id=st.text(max_size=5), task_id=st.text(max_size=5),
       instances=st.integers(-2**31, 2**31 - 1), price=st.integers(-2**63, 2**63 - 1),
       site=st.sampled_from(["a", "b", "c", "", "zz"]), rnd=st.integers(-5, 5))
def test_arbitrary_bid_fields_are_checked(job_id, task_id, instances, price, site, rnd):
    _check_never_raises(bids(site, rnd, (job_id, task_id, instances, price)), f"site:{site}")


@SETTINGS
@given(b=st.integers(-2**31, 2**31 - 1), e=st.integers(-2**31, 2**31 - 1),
       site=st.sampled_from(["a", "b", "c", "x"]), failed=st.none() | st.text(max_size=3),
       rnd=st.integers(-2**63, 2**63 - 1),
       at=st.floats(allow_nan=True, allow_infinity=True))
def test_arbitrary_completions_failures_and_ticks_are_checked(b, e, site, failed, rnd, at):
    _check_never_raises(done("j2", "map", b, e, site, failed), f"site:{site}")
    _check_never_raises(tick(rnd, at), "op")


@SETTINGS
@given(jid=st.text(max_size=4), origin=st.sampled_from(["a", "c", "zz", ""]),
       weight=st.floats(allow_nan=True), n=st.integers(-3, 5), cpu=st.integers(-5, 10**6),
       after=st.lists(st.sampled_from(["map", "reduce", "x"]), max_size=2))
def test_arbitrary_jobs_are_checked(jid, origin, weight, n, cpu, after):
    from protos.agora.v1 import resources_pb2, workload_pb2
    t = workload_pb2.Task(id="map", duration_s=1.0, instances=n, after=after,
                          demand=resources_pb2.Demand(resources=resources_pb2.Resources(
                              cpu_milli=cpu, mem_mib=1)))
    msg = workload_pb2.Job(id=jid, origin=origin, weight=weight, tasks=[t])
    _check_never_raises(op(submit_jobs=pb.SubmitJobs(jobs=[msg])), f"site:{origin}")
