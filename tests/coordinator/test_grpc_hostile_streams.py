"""Hostile input on a replica's request stream (``agora.v1.Coordinator/Requests``), fed
over real gRPC to one ``agora coordinator`` process (n = 1), and what a copy of another
client's request may take from that client (unknown fields in bulk on every entry point:
``test_grpc_hostile.py``).

- The request stream answers each request as its unary RPC would: unknown fields in a
  ``StreamRequest`` were taken there, refused in a ``ClientRequest``.
- A stream counted against a client once a request of the client verified on it: copies of
  one old request of a site (any replica holds them) proved 64 streams, every stream slot of
  the site at the replica, for as long as they were kept open.
- Streams of garbage then valid messages, streams closed half-way and many at once: each
  ends with a status of its own, and the replica answers a valid request after them.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage
from tests.coordinator.hostile_replica import (examples, hostile_one, still_serves, stream,
                                               tracebacks)

pytestmark = pytest.mark.timeout(120)
one = hostile_one("hostile-streams")


_last_ts = [0]


def _signed(g: LocalGroup, client: str, op: pb.Command, read_only: bool = False) -> bytes:
    """``op`` signed by ``client``, stamped past any request signed here before."""
    from agora.coordinator.pbft.auth import ClientAuth

    ts = _last_ts[0] = max(time.time_ns() // 1000, _last_ts[0] + 1)
    req = ClientAuth(g.keys, client).sign_request(ts, op.SerializeToString(), read_only)
    return PbftEnvelope(sender=-1, payload=PbftMessage(request=req).SerializeToString()
                        ).SerializeToString()


def _query(g: LocalGroup, client: str = "operator") -> bytes:
    return _signed(g, client, pb.Command(query=pb.Query(schedule=pb.ScheduleQuery(all=True))),
                   read_only=True)


def test_a_stream_request_with_unknown_fields_is_refused_as_its_unary_rpc_would_be(one):
    """A probe: the unary RPC refused a signed request in a ClientRequest with a field this
    version does not know; the same request in a StreamRequest was answered."""
    sr = pb.StreamRequest(id=1, rpc="GetSchedule", envelope=_query(one)).SerializeToString()
    wrapped = pb.StreamRequests(requests=[pb.StreamRequest.FromString(
        sr + b"\xa0\x06\x01")]).SerializeToString()                        # field 100 = 1
    around = pb.StreamRequests(requests=[pb.StreamRequest(
        id=2, rpc="GetSchedule", envelope=_query(one))]).SerializeToString() + b"\xa0\x06\x01"
    good = pb.StreamRequests(requests=[pb.StreamRequest(
        id=3, rpc="GetSchedule", envelope=_query(one))]).SerializeToString()
    got, code, details = stream(one, [wrapped, around, good])
    assert code == grpc.StatusCode.OK, details
    assert got[1].code == "INVALID_ARGUMENT", got[1]
    assert got[1].details.startswith("request: unknown field number(s) [100]"), got[1].details
    assert got[2].code == "INVALID_ARGUMENT" and "StreamRequests" in got[2].details, got[2]
    assert got[3].reply.envelope, got[3]                 # the stream stays open after them


def test_copies_of_a_sites_old_request_do_not_take_its_request_streams(one):
    """Every replica sees a site's requests (a faulty one keeps them): 64 streams, each
    carrying a copy of one the site sent long ago, held all of the site's stream slots at a
    replica for as long as they stayed open -- its own new stream was refused,
    RESOURCE_EXHAUSTED "holds 64 request streams". A copy now proves no stream."""
    from agora.coordinator.stream_serving import MAX_REQUEST_STREAMS_PER_CLIENT

    op = pb.Command(site_round=pb.SiteRound(site="edge", round=0))
    old = _signed(one, "site:edge", op)
    got, code, _ = stream(one, [pb.StreamRequests(requests=[pb.StreamRequest(
        id=1, rpc="SubmitRound", envelope=old)]).SerializeToString()])
    assert got[1].reply.envelope, got[1]                 # executed: now anyone's copy

    async def go():
        async with grpc.aio.insecure_channel(one.config.replicas[0]) as ch:
            method = ch.stream_stream("/agora.v1.Coordinator/Requests",
                                      response_deserializer=pb.StreamReplies.FromString)
            release = asyncio.Event()

            def copies():
                async def it():
                    yield pb.StreamRequests(requests=[pb.StreamRequest(
                        id=1, rpc="SubmitRound", envelope=old)]).SerializeToString()
                    await release.wait()
                return it()
            held = [method(copies()) for _ in range(MAX_REQUEST_STREAMS_PER_CLIENT)]
            for call in held:        # each copy is answered (a retransmission's reply)
                await call.read()
            fresh = _signed(one, "site:edge", op)

            async def own():
                yield pb.StreamRequests(requests=[pb.StreamRequest(
                    id=7, rpc="SubmitRound", envelope=fresh)]).SerializeToString()
            answer = (await method(own()).read()).replies[0]
            release.set()
            for call in held:
                call.cancel()
            return answer
    answer = asyncio.run(asyncio.wait_for(go(), 60))
    assert not answer.code, (answer.code, answer.details)
    assert answer.reply.envelope


GARBAGE = b"\xff\xff\xff\xff\x0f"


def test_a_valid_request_then_bytes_that_are_no_message_end_the_stream_never_hang_it(one):
    """A stream that sent a signed query, then bytes that are no StreamRequests: its
    refusal was sent from the task that reads the stream while the handler wrote the
    query's reply, and the client got the reply and then nothing -- the call hung until
    its deadline (21 of 30 tries here). It ends INVALID_ARGUMENT naming the type."""
    async def go():
        async with grpc.aio.insecure_channel(one.config.replicas[0]) as ch:
            method = ch.stream_stream("/agora.v1.Coordinator/Requests",
                                      response_deserializer=pb.StreamReplies.FromString)
            ends = []
            for _ in range(10):
                async def it():
                    yield pb.StreamRequests(requests=[pb.StreamRequest(
                        id=1, rpc="GetSchedule", envelope=_query(one))]).SerializeToString()
                    yield GARBAGE
                call = method(it(), timeout=5)
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    async for _ in call:
                        pass
                ends.append((e.value.code(), e.value.details()))
            return ends
    for code, details in asyncio.run(asyncio.wait_for(go(), 60)):
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert "cannot be parsed as agora.v1.StreamRequests" in details
    still_serves(one)


@st.composite
def stream_scripts(draw):
    """What one client writes on a request stream: valid queries, arbitrary requests and
    bytes that are no message, in any order, and whether it leaves half-way."""
    steps = draw(st.lists(st.sampled_from(["query", "junk", "garbage", "wait"]),
                          min_size=1, max_size=5))
    return steps, draw(st.booleans())


@examples(12)
@given(scripts=st.lists(stream_scripts(), min_size=1, max_size=8))
def test_streams_of_garbage_valid_requests_and_early_ends_each_end_with_a_status(one,
                                                                                 scripts):
    """Several streams at once, each a mix of valid queries, refused requests and bytes that
    are no message, some cancelled half-way: a stream with garbage ends INVALID_ARGUMENT
    naming the type, the others end OK with an answer for each request sent before the end,
    never UNKNOWN or a traceback; the replica answers afterwards."""
    before = tracebacks(one)

    async def run_one(ch, steps, leave):
        method = ch.stream_stream("/agora.v1.Coordinator/Requests",
                                  response_deserializer=pb.StreamReplies.FromString)
        sent: list[int] = []

        async def it():
            for k, s in enumerate(steps):
                if s == "wait":
                    await asyncio.sleep(0.05)
                elif s == "garbage":
                    yield GARBAGE
                else:
                    env = _query(one, "site:east") if s == "query" else b"\x0a\x01"
                    sent.append(k)
                    yield pb.StreamRequests(requests=[pb.StreamRequest(
                        id=k, rpc="GetSchedule", envelope=env)]).SerializeToString()
        call = method(it(), timeout=20)
        got = {}
        try:
            async for batch in call:
                for r in batch.replies:
                    got[r.id] = r
                if leave:
                    call.cancel()
                    return "left", got, sent
        except asyncio.CancelledError:
            return "left", got, sent
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED and leave:
                return "left", got, sent
            return e, got, sent
        return "ok", got, sent

    async def go():
        async with grpc.aio.insecure_channel(one.config.replicas[0]) as ch:
            return await asyncio.gather(*(run_one(ch, s, leave) for s, leave in scripts))

    for (steps, leave), (end, got, sent) in zip(scripts, asyncio.run(
            asyncio.wait_for(go(), 60))):
        if end == "left":
            continue
        if isinstance(end, grpc.aio.AioRpcError):
            assert "garbage" in steps, (steps, end)
            if end.code() == grpc.StatusCode.INTERNAL:     # the client's own write after the
                assert "execute_batch" in (end.debug_error_string() or ""), end    # refusal
                continue
            assert end.code() == grpc.StatusCode.INVALID_ARGUMENT, (steps, end)
            assert "cannot be parsed as agora.v1.StreamRequests" in end.details()
            continue
        assert "garbage" not in steps, steps
        assert sorted(got) == sent, (steps, got)
        for k, r in got.items():
            if steps[k] == "query":
                assert r.reply.envelope or r.code == "RESOURCE_EXHAUSTED", r
            else:
                assert r.code == "INVALID_ARGUMENT" and r.details.startswith("envelope"), r
    still_serves(one)
    assert tracebacks(one) == before


def test_the_replica_watches_serves_and_answers_after_all_of_it(one):
    """After the module's hostile input: a signed read and a watch are served."""
    from agora.coordinator.read_auth import sign_read

    with one.channel(0) as ch:
        got, code, details = stream(one, [pb.StreamRequests(requests=[pb.StreamRequest(
            id=1, rpc="GetSchedule", envelope=_query(one))]).SerializeToString()])
        assert code == grpc.StatusCode.OK and got[1].reply.envelope, (code, details, got)
        auth = sign_read(SigningKey(one.keys.client_signing["operator"]), "operator",
                         "WatchSchedule", replica=0)
        call = ch.unary_stream("/agora.v1.Coordinator/WatchSchedule",
                               response_deserializer=pb.ScheduleUpdate.FromString)(
            pb.WatchRequest(since_version=0, auth=auth).SerializeToString(), timeout=3)
        with pytest.raises(grpc.RpcError) as e:
            for _ in call:
                pass
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED   # open, live
