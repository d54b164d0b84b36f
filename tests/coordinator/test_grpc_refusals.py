"""Requests the replicas refuse over real gRPC, each with the status its fault calls for and
a message naming the field, changing nothing: a site's votes, forged heartbeats and heartbeats
far from the replicas' clock, a timestamp past the log's integers, a sender without a key,
bytes that are no message on any method, decisions signed with a wrong key or for another
site, malformed requests, and arbitrary request bytes and signed ops (fuzzed)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from agora.coordinator.client import CoordinatorError
from agora.coordinator.pbft.keys import generate_keys
from agora.coordinator.queries import schedule_query
from agora.coordinator.site_lapses import sign_heartbeat
from agora.coordinator.validate import RPC_KINDS
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage
from agora.protos.convert import job_to_proto
from tests.coordinator.grpc_helpers import CLIENTS, current_round, decision, job, run

pytestmark = pytest.mark.timeout(180)


def test_a_site_cannot_vote_and_forged_heartbeats_are_refused(group):
    async def go():
        async with group.client("site:east") as east, group.client("operator") as op:
            before = [s.last_executed for s in await op.status()]
            with pytest.raises(CoordinatorError) as e:
                await east.call("CloseRound", pb.Command(close_round=pb.CloseRound(round=0)))
            assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert "may not vote" in e.value.message
            with pytest.raises(CoordinatorError) as e:
                await east.call("SiteLapsed", pb.Command(site_lapsed=pb.SiteLapsed(site="west")))
            assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert [s.last_executed for s in await op.status()] == before
            assert await east.heartbeat() == 4
            forged = generate_keys(4, CLIENTS, seed=b"another group")
            async with group.client("site:east", keys=forged) as bad:
                assert await bad.heartbeat() == 0
    run(go())


def test_a_timestamp_past_the_logs_integers_is_refused_and_the_group_goes_on(group):
    """One signed request with timestamp 2^63 once stopped every replica for good (SQLite's
    integers are signed 64-bit): it is refused before ordering, naming the field. One
    stamped 2^63-1 (or a day ahead) was ordered, and every later request of its client was
    refused as older, for good: a timestamp more than the read window ahead of the
    replica's clock is refused too, and the client goes on."""
    async def go():
        async with group.client("site:edge") as edge, group.client("operator") as op:
            op_bytes = pb.Command(site_round=pb.SiteRound(site="edge", round=0))
            day_ahead = (int(time.time()) + 86_400) * 1_000_000
            for ts in (2**63, 2**64 - 1, 2**63 - 1, day_ahead):
                req = edge.auth.sign_request(ts, op_bytes.SerializeToString(), False)
                env = PbftEnvelope(sender=-1, payload=PbftMessage(
                    request=req).SerializeToString())
                with pytest.raises(CoordinatorError) as e:
                    await edge.send_raw("SubmitRound", pb.ClientRequest(
                        envelope=env.SerializeToString()).SerializeToString(), ts)
                assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
                assert "envelope.payload.request.timestamp" in e.value.message
            assert (await op.submit_jobs([job("after-huge-timestamp")])).accepted == 1
            await edge.call("SubmitRound", op_bytes)     # edge is not locked out
    run(go())


def test_a_read_only_request_is_answered_once_and_only_while_fresh(group):
    """A copy of a site's read-only query (every replica receives one: a faulty replica
    holds it) replayed at a replica was answered again each time, charged to the site's
    read budget until the site's own queries were refused: a copy is refused, as is a
    read-only request stamped outside the read window of the replica's clock."""
    async def go():
        async with group.client("site:west") as west:
            query = pb.Command(query=schedule_query(job_id="nothing-such")).SerializeToString()
            for attempt in range(5):    # 2f+1 alike: replicas still catching up from the
                ts, data = west.envelope(query, read_only=True)   # module's earlier tests
                try:                                # answer at different versions (a full
                    await west.send_raw("GetSchedule", data, ts, read_only=True)   # run, once)
                    break
                except CoordinatorError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1.0)
            with pytest.raises(CoordinatorError) as e:
                await west.send_raw("GetSchedule", data, ts, read_only=True)
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "a copy of a read-only request" in e.value.message
            old = int(time.time() - 3600) * 1_000_000
            req = west.auth.sign_request(old, query, True)
            env = PbftEnvelope(sender=-1, payload=PbftMessage(request=req).SerializeToString())
            with pytest.raises(CoordinatorError) as e:
                await west.send_raw("GetSchedule", pb.ClientRequest(
                    envelope=env.SerializeToString()).SerializeToString(), old, read_only=True)
            assert "s from the replicas' clocks" in e.value.message
            assert "read-only" in e.value.message
            # a fresh query of the same client is answered
            assert (await west.schedule(job_id="nothing-such")).schedule.allocations == []
            # a faulty replica replays a client's query to the others before the client's
            # own reaches them: the query is ordered instead (it raised "a copy": a review)
            ts, data = west.envelope(query, read_only=True)
            await west.send_raw("GetSchedule", data, ts, read_only=True)    # the replay
            fresh = west.envelope
            west.envelope = lambda op, read_only=False: (ts, data) if read_only \
                else fresh(op, read_only=read_only)
            try:
                assert (await west.schedule(job_id="nothing-such")).schedule.allocations == []
            finally:
                west.envelope = fresh
    run(go())


def test_a_sender_without_a_key_is_refused_before_its_jobs_are_read(group):
    """A keyless sender once made each replica parse every job of its request (9,000 jobs:
    ~2 s of a replica's loop) before its key was looked up: its request is now refused on
    its client id (its jobs, of another site's origin, would have been refused on that)."""
    stranger = generate_keys(4, ["site:nobody"], seed=b"a stranger")

    async def go():
        async with group.client("site:nobody", keys=stranger) as c:
            jobs = [job(f"stranger-{k}", origin="east") for k in range(50)]
            with pytest.raises(CoordinatorError) as e:
                await c.submit_jobs(jobs)
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "client_id: no key for client 'site:nobody'" in e.value.message, e.value
    run(go())


UNPARSEABLE = b"\xff\xff\xff\xff\x0f"        # field 0 / a truncated varint: no message


@pytest.mark.parametrize("service,method,shape", [
    *[("agora.v1.Coordinator", m, "unary") for m in (*RPC_KINDS, "Heartbeat", "GetStatus")],
    ("agora.v1.Coordinator", "WatchSchedule", "unary_stream"),
    ("agora.v1.Coordinator", "Requests", "stream_stream"),
    ("agora.v1.Peer", "Stream", "stream_unary"),
])
def test_bytes_that_are_no_message_are_refused_naming_the_type_and_log_nothing(
        group, service, method, shape):
    """Once: UNKNOWN "Unexpected <class 'DecodeError'>" and a traceback in the replica's log
    per call (coordinator/undecodable.py)."""
    before = group.log(1).read_text().count("Traceback")
    path = f"/{service}/{method}"
    with group.channel(1) as ch:
        with pytest.raises(grpc.RpcError) as e:
            if shape == "unary":
                ch.unary_unary(path)(UNPARSEABLE, timeout=10)
            elif shape == "unary_stream":
                list(ch.unary_stream(path)(UNPARSEABLE, timeout=10))
            elif shape == "stream_stream":
                list(ch.stream_stream(path)(iter([UNPARSEABLE]), timeout=10))
            else:
                ch.stream_unary(path)(iter([UNPARSEABLE]), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    assert "request: cannot be parsed as agora.v1." in e.value.details(), e.value.details()
    time.sleep(0.2)
    assert group.log(1).read_text().count("Traceback") == before


def test_a_heartbeat_far_from_the_replicas_clock_is_refused(group):
    """A heartbeat stamped far in the future once locked its site's later heartbeats out
    (each must be newer than the last): it is refused, and the site's next one counts."""
    async def go():
        async with group.client("site:west") as west:
            far = sign_heartbeat(west.auth.signer, "site:west", 2**63 - 1)
            west.open()
            stub = west._stubs[0]
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.Heartbeat(far, timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "timestamp_us" in e.value.details()
            assert await west.heartbeat() == 4
    run(go())


def test_a_decision_with_a_wrong_key_or_for_another_site_is_refused_and_changes_nothing(group):
    async def go():
        async with group.client("operator") as op:
            before = [s.last_executed for s in await op.status()]
            rnd = await current_round(group)
            # another group's key for site:east: the signature does not verify.
            forged = generate_keys(4, CLIENTS, seed=b"another group")
            async with group.client("site:east", keys=forged) as bad:
                with pytest.raises(CoordinatorError) as e:
                    await bad.submit_round(decision("east", rnd, ("g1", "reduce", 1, 1)))
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "signature" in e.value.message
            # A genuine key acting for another site.
            async with group.client("site:west") as west:
                with pytest.raises(CoordinatorError) as e:
                    await west.submit_round(decision("east", rnd, ("g1", "reduce", 1, 1)))
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "may not act for site 'east'" in e.value.message
            after = await op.status()
            assert [s.last_executed for s in after] == before
            # the client asks f+1 replicas first (client.py); each of them counted it
            assert sum(any(c.name == "service.bad_signature" for c in s.rejected)
                       for s in after) >= group.config.f + 1
    run(go())


def test_malformed_requests_get_invalid_argument_naming_the_field(group):
    async def go():
        async with group.client("site:east") as east:
            with pytest.raises(CoordinatorError) as e:
                await east.submit_round(decision("east", 0, ("g1", "map", 0, 1)))
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "site_round.bids[0].instances" in e.value.message
            bad = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[pb.Command().submit_jobs.jobs.add()]))
            with pytest.raises(CoordinatorError) as e:
                await east.call("SubmitJobs", bad)
            assert "submit_jobs.jobs[0]" in e.value.message
            with pytest.raises(CoordinatorError) as e:
                await east.call("SubmitRound", pb.Command(submit_jobs=pb.SubmitJobs()))
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "op.site_round" in e.value.message
        with grpc.insecure_channel(group.config.replicas[0]) as ch:
            with pytest.raises(grpc.RpcError) as e:
                rpc.CoordinatorStub(ch).SubmitRound(pb.ClientRequest(envelope=b"\xff\xfe"),
                                                    timeout=5)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert e.value.details().startswith("envelope")
            # a signed request in a ClientRequest with a field this version does not know
            # (a probe: refused inside the envelope, accepted around it)
            c = group.client("operator")
            _ts, data = c.envelope(pb.Command(query=pb.Query(ledger=pb.LedgerQuery()))
                                   .SerializeToString(), read_only=True)
            with pytest.raises(grpc.RpcError) as e:
                rpc.CoordinatorStub(ch).GetSchedule(
                    pb.ClientRequest.FromString(data + b"\xa0\x06\x01"), timeout=5)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert e.value.details().startswith("request: unknown field number(s) [100]")
    run(go())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=120), method=st.sampled_from(
    sorted(RPC_KINDS)))
def test_arbitrary_request_bytes_are_refused_with_a_status_and_change_nothing(group, data,
                                                                                method):
    with grpc.insecure_channel(group.config.replicas[1]) as ch:
        stub = rpc.CoordinatorStub(ch)
        before = stub.GetStatus(group.status_request(replica=1), timeout=5)
        with pytest.raises(grpc.RpcError) as e:
            getattr(stub, method)(pb.ClientRequest(envelope=data), timeout=5)
        assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.UNAUTHENTICATED), e.value.details()
        assert e.value.details().startswith("envelope")
        after = stub.GetStatus(group.status_request(replica=1), timeout=5)
        assert after.last_executed == before.last_executed
        assert sum(c.count for c in after.rejected) > sum(c.count for c in before.rejected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(op=st.binary(max_size=80))
def test_signed_requests_with_arbitrary_ops_are_invalid_argument(group, op):
    c = group.client("site:east")
    ts, data = c.envelope(op)
    with grpc.insecure_channel(group.config.replicas[2]) as ch:
        with pytest.raises(grpc.RpcError) as e:
            rpc.CoordinatorStub(ch).SubmitRound(pb.ClientRequest.FromString(data), timeout=5)
    assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                              grpc.StatusCode.UNAUTHENTICATED), e.value.details()
    assert "envelope.payload.request.op" in e.value.details() or \
        e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_reader_holds_at_most_max_watches_per_replica_and_others_are_not_refused(group):
    from agora.coordinator.read_auth import sign_read
    from agora.coordinator.service import MAX_WATCHES_PER_READER

    def watch(ch, cid: str):
        auth = sign_read(SigningKey(group.keys.client_signing[cid]), cid, "WatchSchedule",
                         replica=2)
        return rpc.CoordinatorStub(ch).WatchSchedule(
            pb.WatchRequest(since_version=0, auth=auth), timeout=30)

    def refused(call) -> grpc.RpcError | None:
        try:
            next(call)              # the committed history comes first, if any
        except grpc.RpcError as e:
            return e
        return None

    with group.channel(2) as ch:
        held = [watch(ch, "operator") for _ in range(MAX_WATCHES_PER_READER)]
        time.sleep(1.0)             # each is open at the replica
        extra = watch(ch, "operator")
        e = refused(extra)
        assert e is not None and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "auth.client_id: 'operator'" in e.details() and "close one" in e.details()
        other = watch(ch, "site:east")      # another reader is not charged for them
        time.sleep(0.5)
        assert other.running() or other.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
        held[0].cancel()
        time.sleep(1.0)             # the replica lets go of the cancelled one
        again = watch(ch, "operator")
        time.sleep(0.5)
        assert again.running(), again.details()
        for c in held[1:] + [other, again]:
            c.cancel()


def test_a_client_restamps_past_another_process_signing_as_it(group):
    """Processes signing as one client (a few agora submit as the operator) were refused
    as stale when another's later timestamp executed first, and each restamped from its own
    clock -- still behind one whose clock runs ahead, so it gave up: a stale refusal names
    the last executed timestamp, and the client restamps past it."""
    async def go():
        async with group.client("operator") as a, group.client("operator") as b:
            a._ts = (int(time.time()) + 60) * 1_000_000       # a clock a minute ahead
            assert (await a.submit_jobs([job("from-a-clock-ahead")])).accepted == 1
            assert (await b.submit_jobs([job("from-b-clock-behind")])).accepted == 1
    run(go())


def test_a_request_overtaken_by_a_later_one_of_its_client_is_refused_as_stale_at_once(group):
    """Two requests of one client in flight, the later timestamp ordered first: the earlier
    can never execute, and every replica that held it waited request_timeout_s to answer
    UNAVAILABLE "retry", which the same bytes could not mend (a probe's pipelined client).
    It is refused as stale when the later one executes, naming it, so the client stamps it
    again."""
    async def go():
        # not the operator: another test here moved its timestamps a minute ahead
        async with group.client("site:east") as op:
            first = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(job("overtaken"))]))
            later = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(job("overtaking"))]))
            ts_a, data_a = op.envelope(first.SerializeToString())
            ts_b, data_b = op.envelope(later.SerializeToString())
            primary = (await op.status())[0].primary

            async def at(i: int):
                try:
                    await op._stubs[i].SubmitJobs(pb.ClientRequest.FromString(data_a),
                                                  timeout=30)
                except grpc.aio.AioRpcError as e:
                    return e.code(), e.details()
                return "answered", ""
            # the earlier one to the backups only (a backup holds a request for the primary's
            # pre-prepare; only its retransmission timer forwards it), the later one as usual
            got = await asyncio.gather(op.send_raw("SubmitJobs", data_b, ts_b),
                                       *(at(i) for i in range(group.config.n) if i != primary))
            for code, details in got[1:]:
                assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, details)
                assert f"last executed request ({ts_b})" in details
    run(go())


@pytest.mark.parametrize("method, shape, message", [
    ("GetStatus", "unary", lambda g: g.status_request(replica=1)),
    ("Heartbeat", "unary", lambda g: sign_heartbeat(
        SigningKey(g.keys.client_signing["site:east"]), "site:east", time.time_ns() // 1000)),
    ("WatchSchedule", "unary_stream", lambda g: pb.WatchRequest(since_version=0)),
])
def test_unknown_fields_are_refused_on_status_heartbeat_and_watch_too(group, method, shape,
                                                                        message):
    """Refused in every ordered request, they were taken on these three (a probe)."""
    data = message(group).SerializeToString() + bytes([0x98, 0x06, 0x01])   # field 99 = 1
    path = f"/agora.v1.Coordinator/{method}"
    with group.channel(1) as ch:
        with pytest.raises(grpc.RpcError) as e:
            if shape == "unary":
                ch.unary_unary(path)(data, timeout=10)
            else:
                list(ch.unary_stream(path)(data, timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
    assert "unknown field" in e.value.details(), e.value.details()


def test_a_watch_from_far_past_the_schedule_is_refused_not_left_silent(group):
    """A probe: since_version 10^12 or 2^63-1 was taken, and the stream said nothing for
    good. Past the replica's version by more than WATCH_AHEAD: INVALID_ARGUMENT naming the
    version it holds; from a version just ahead, the stream waits for it, as before."""
    from agora.coordinator.read_auth import sign_read
    from agora.coordinator.service import WATCH_AHEAD

    def watch(ch, since: int):
        auth = sign_read(SigningKey(group.keys.client_signing["operator"]), "operator",
                         "WatchSchedule", since=since, replica=2)
        return rpc.CoordinatorStub(ch).WatchSchedule(
            pb.WatchRequest(since_version=since, auth=auth), timeout=3)

    with group.channel(2) as ch:
        for since in (10**12, 2**63 - 1):
            with pytest.raises(grpc.RpcError) as e:
                next(watch(ch, since))
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
            assert e.value.details().startswith(f"since_version: {since} is more than "
                                                f"{WATCH_AHEAD:,} versions past")
        with pytest.raises(grpc.RpcError) as e:        # near: it waits (until the deadline)
            next(watch(ch, WATCH_AHEAD // 2))
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_client_watch_far_past_the_schedule_ends_refused_not_asking_for_ever(group):
    """A probe: ``agora schedule watch --since-version 99999999999`` printed nothing and
    asked again every 0.5 s for ever -- the replicas' INVALID_ARGUMENT was dropped (only
    OUT_OF_RANGE ended a watch). Now more than 2f refusals end it with their reason."""
    from agora.coordinator.watch_merge import WatchRefused

    async def go():
        async with group.client("operator") as op:
            with pytest.raises(WatchRefused) as e:
                async for _ in op.watch(99_999_999_999):
                    pass
            return str(e.value)

    said = asyncio.run(asyncio.wait_for(go(), 20))
    assert said.startswith("since_version: 99999999999 is more than"), said
