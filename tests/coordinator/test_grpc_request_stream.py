"""The Requests stream over real gRPC: each request on one stream answered by its id, with
the status its unary call would get, the stream staying open after refusals; the unary and
the stream path (one client's streams, or streams shared by a process's clients) giving the
same answers; arbitrary stream requests (fuzzed) each refused, changing nothing."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.coordinator.client import CoordinatorError
from agora.coordinator.pbft.client import ReplyTally
from agora.coordinator.request_stream import RequestStreams
from agora.coordinator.validate import RPC_KINDS
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from tests.coordinator.grpc_helpers import run

pytestmark = pytest.mark.timeout(180)


def _stream(group, i: int, requests: list[pb.StreamRequest]) -> dict[int, pb.StreamReply]:
    """Send ``requests`` on one Requests stream to replica ``i`` (two to a write); its
    answers by id."""
    writes = [pb.StreamRequests(requests=requests[k:k + 2]) for k in range(0, len(requests), 2)]
    with group.channel(i) as ch:
        batches = rpc.CoordinatorStub(ch).Requests(iter(writes), timeout=20)
        return {a.id: a for b in batches for a in b.replies}


def test_the_request_stream_answers_each_request_by_id_and_stays_open_after_refusals(group):
    """One stream carries a garbage envelope, an unknown method, a duplicate id and a valid
    signed query: the first three are refused with the status their unary call would get,
    naming the field, and the query on the same stream still gets this replica's reply."""
    c = group.client("operator")
    ts, data = c.envelope(pb.Command(query=pb.Query(schedule=pb.ScheduleQuery(all=True)))
                          .SerializeToString(), read_only=True)
    env = pb.ClientRequest.FromString(data).envelope
    got = _stream(group, 1, [
        pb.StreamRequest(id=7, rpc="SubmitRound", envelope=b"\xff\xfe"),
        pb.StreamRequest(id=8, rpc="DropTables", envelope=env),
        pb.StreamRequest(id=9, rpc="GetSchedule", envelope=env),
    ])
    assert got[7].code == "INVALID_ARGUMENT" and got[7].details.startswith("envelope")
    assert got[8].code == "INVALID_ARGUMENT" and got[8].details.startswith("rpc: 'DropTables'")
    assert got[9].code == "" and got[9].reply.replica == 1
    tally = ReplyTally(c.auth, ts, True, f=1, n=4)
    assert tally.add(got[9].reply.envelope, 1) is None         # authentic, for this request
    assert tally.add(got[9].reply.envelope, 2) == "unexpected_reply"   # not from replica 2


def test_a_message_of_too_many_requests_ends_the_stream_and_the_replica_answers_on(group):
    """One StreamRequests of MAX_STREAM_BATCH + 1 bad requests (anyone with a certificate can
    send one): refused as a whole, RESOURCE_EXHAUSTED naming the limit, before it is
    admitted request by request (2,000,000 of them held a replica's loop 20 s and 2 GB)."""
    import grpc

    from agora.coordinator.request_stream import MAX_STREAM_BATCH

    flood = pb.StreamRequests(requests=[pb.StreamRequest(id=k, rpc="x", envelope=b"")
                                        for k in range(MAX_STREAM_BATCH + 1)])
    with group.channel(2) as ch:
        with pytest.raises(grpc.RpcError) as e:
            list(rpc.CoordinatorStub(ch).Requests(iter([flood]), timeout=20))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f"the limit is {MAX_STREAM_BATCH}" in e.value.details()
        answered = rpc.CoordinatorStub(ch).GetStatus(group.status_request(replica=2),
                                                      timeout=10)
    assert answered.replica == 2


def test_the_unary_and_the_stream_path_give_the_same_answers(group):
    async def go():
        async with group.client("operator", streams=False) as unary, \
                group.client("operator") as streamed:
            assert streamed.streams and not unary.streams
            a = await unary.schedule(site="east")
            b = await streamed.schedule(site="east")
            assert a == b
            # clients of one process sharing the streams: each request still its own
            shared = RequestStreams(group.config.replicas)
            clients = [group.client(c, streams=shared) for c in ("site:east", "site:west",
                                                                  "operator")]
            try:
                got = await asyncio.gather(*(c.schedule(site="east") for c in clients))
                assert got[0] == a and got[2] == a       # east's own site; the operator
                # west reads, of east's rows, only those of its own jobs (read_scope.py)
                assert all(r in a.schedule.allocations for r in got[1].schedule.allocations)
                writes = sum(st.writes for st in shared.streams)
                assert 0 < writes < 4 * len(clients), writes   # shared, several to a write
            finally:
                for c in clients:
                    await c.close()
                await shared.close()
            with pytest.raises(CoordinatorError) as e:
                await unary.cancel_job("no-such-job-" + "x" * 300)
            with pytest.raises(CoordinatorError) as f:
                await streamed.cancel_job("no-such-job-" + "x" * 300)
            assert (e.value.code, e.value.message) == (f.value.code, f.value.message)
    run(go())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(items=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.one_of(
    st.sampled_from(sorted(RPC_KINDS)), st.text(max_size=20)), st.binary(max_size=120)),
    min_size=1, max_size=6, unique_by=lambda x: x[0]))
def test_arbitrary_stream_requests_are_each_refused_with_a_status_and_change_nothing(
        group, items):
    with group.channel(3) as ch:
        before = rpc.CoordinatorStub(ch).GetStatus(group.status_request(replica=3), timeout=5)
    got = _stream(group, 3, [pb.StreamRequest(id=i, rpc=m, envelope=e) for i, m, e in items])
    assert sorted(got) == sorted(i for i, _, _ in items)
    for a in got.values():
        assert a.code in ("INVALID_ARGUMENT", "UNAUTHENTICATED"), a
        assert a.details.startswith(("envelope", "rpc: ")), a.details
    with group.channel(3) as ch:
        after = rpc.CoordinatorStub(ch).GetStatus(group.status_request(replica=3), timeout=5)
    assert after.last_executed == before.last_executed


def test_a_stream_request_that_cannot_execute_is_answered_unavailable_after_its_timeout(
        tmp_path):
    """Two of four replicas stopped (no quorum): a signed request on the primary's stream is
    answered UNAVAILABLE, by its id, once request_timeout_s passed -- not before, and not
    never (the stream's one sweep cancels late requests: no timer per request)."""
    import signal
    import time

    from agora.deploy.local_group import LocalGroup
    from tests.coordinator.grpc_helpers import CLIENTS, CLUSTER

    g = LocalGroup(tmp_path, n=4, clients=CLIENTS, key_seed=b"test-stream-timeout",
                   cluster=str(CLUSTER), request_timeout_s=1.0, view_change_timeout_s=30.0)
    with g.serving():
        c = g.client("operator")
        _ts, data = c.envelope(pb.Command(cancel_job=pb.CancelJob(job_id="nope"))
                               .SerializeToString())
        env = pb.ClientRequest.FromString(data).envelope
        for i in (2, 3):
            g.procs[i].send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            got = _stream(g, 0, [pb.StreamRequest(id=5, rpc="CancelJob", envelope=env)])
            waited = time.monotonic() - t0
        finally:
            for i in (2, 3):
                g.procs[i].send_signal(signal.SIGCONT)
    assert got[5].code == "UNAVAILABLE", got
    assert "not executed within 1.0 s at replica 0" in got[5].details, got[5].details
    assert 1.0 <= waited < 6.0, waited


def test_replicas_run_on_uvloop_unless_told_otherwise(group, monkeypatch):
    # uvloop is a dependency (pyproject); asyncio's loop stays one variable away
    from agora.deploy.cli_coordinator import run_event_loop

    assert "(event loop: uvloop)" in group.log(0).read_text()

    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]

    assert run_event_loop(which()) == "uvloop"
    monkeypatch.setenv("AGORA_EVENT_LOOP", "asyncio")
    assert run_event_loop(which()) == "asyncio"
