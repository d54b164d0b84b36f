"""Hostile input on every entry point of a replica (``agora.v1.Coordinator``), fed over real
gRPC to one ``agora coordinator`` process (n = 1: its memory and log are its own): what a
refusal may cost the replica, whoever sends it, and what a copy of another client's request
may take from that client.

- Unknown fields in bulk (a review): listing them built an object per field, so one keyless
  request of 20 MB of two-byte unknown fields held the replica's event loop 6 s and raised
  it to 900 MB (at gRPC's 64 MiB receive limit, ~20 s and 3 GB), on every RPC, in an
  envelope (4 MiB: 1.2 s), and in a request stream (one message of 15 such envelopes: 22 s).
  A refusal now costs about what its bytes do: refused naming the message, the same
  status, the loop free.
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
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from agora.coordinator.validate import RPC_KINDS
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage, PrePrepare
from tests.coordinator.grpc_helpers import CLIENTS, CLUSTER

pytestmark = pytest.mark.timeout(120)



def examples(n: int) -> settings:
    """``n`` examples, the same ones each run, not shrunk: each costs a real server seconds
    of megabytes (a failure reports the example as drawn)."""
    return settings(max_examples=n, deadline=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=[
                        HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                        HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    g = LocalGroup(tmp_path_factory.mktemp("hostile"), n=1, clients=CLIENTS,
                   key_seed=b"test-hostile", cluster=str(CLUSTER), request_timeout_s=5.0)
    with g.serving():
        yield g


def _peak_mb(g: LocalGroup) -> int:
    """The replica's peak resident memory since the last ``_reset_peak`` (VmHWM)."""
    with open(f"/proc/{g.procs[0].pid}/status") as f:
        return next(int(x.split()[1]) // 1024 for x in f if x.startswith("VmHWM"))


def _reset_peak(g: LocalGroup) -> None:
    with open(f"/proc/{g.procs[0].pid}/clear_refs", "w") as f:
        f.write("5")


def _tracebacks(g: LocalGroup) -> int:
    return g.log(0).read_text().count("Traceback")


def _unknown(size: int, number: int, wire: int) -> bytes:
    """``size`` bytes (about) of fields numbered ``number`` (unknown to every message here),
    each as small as its wire type allows: many fields, few bytes."""
    tag = (number << 3 | wire)
    key = bytearray()
    while True:
        key.append(tag & 0x7F | (0x80 if tag > 0x7F else 0))
        tag >>= 7
        if not tag:
            break
    one = bytes(key) + {0: b"\x00", 1: bytes(8), 2: b"\x00", 5: bytes(4)}[wire]
    return one * (size // len(one))


def _call(g: LocalGroup, method: str, data: bytes):
    """Call ``method`` with raw request bytes: (code, details, seconds)."""
    path = f"/agora.v1.Coordinator/{method}"
    with g.channel(0) as ch:
        t = time.monotonic()
        try:
            if method == "WatchSchedule":
                list(ch.unary_stream(path)(data, timeout=60))
            else:
                ch.unary_unary(path)(data, timeout=60)
        except grpc.RpcError as e:
            return e.code(), e.details() or "", time.monotonic() - t
    return grpc.StatusCode.OK, "", time.monotonic() - t


def _still_serves(g: LocalGroup) -> None:
    with g.channel(0) as ch:
        s = ch.unary_unary("/agora.v1.Coordinator/GetStatus",
                           response_deserializer=pb.ReplicaStatus.FromString)(
            g.status_request(replica=0).SerializeToString(), timeout=10)
    assert s.replica == 0


def _well_formed_but_refused(method: str, size: int) -> bytes:
    """A request of ``size`` bytes of a known field, refused early (the yardstick of what
    receiving and parsing that many bytes costs)."""
    big = "x" * size
    if method == "GetStatus":
        return pb.StatusRequest(auth=pb.ReadAuth(client_id=big)).SerializeToString()
    if method == "WatchSchedule":
        return pb.WatchRequest(auth=pb.ReadAuth(client_id=big)).SerializeToString()
    if method == "Heartbeat":
        return pb.HeartbeatRequest(client_id=big).SerializeToString()
    return pb.ClientRequest(envelope=big.encode()).SerializeToString()


METHODS = sorted(RPC_KINDS) + ["GetStatus", "Heartbeat", "WatchSchedule"]
SIZE = 12 * 1024 * 1024


@pytest.mark.parametrize("method", METHODS)
@examples(2)
@given(number=st.sampled_from([15, 16, 99, 2047]), wire=st.sampled_from([0, 2, 5]))
def test_unknown_fields_in_bulk_are_refused_for_what_their_bytes_cost(one, method, number,
                                                                      wire):
    """12 MiB of small unknown fields on any RPC: INVALID_ARGUMENT naming the request, in
    about the time a request of as many bytes of a known field takes to refuse, and
    without the replica's memory growing by many times their size (it was 4 s and
    +560 MB here)."""
    before = _tracebacks(one)
    _code, _details, yardstick = _call(one, method, _well_formed_but_refused(method, SIZE))
    _reset_peak(one)
    base = _peak_mb(one)
    code, details, took = _call(one, method, _unknown(SIZE, number, wire))
    grew = _peak_mb(one) - base
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details.startswith("request: ") and "unknown field" in details, details
    assert "Traceback" not in details and "Exception" not in details
    assert took < 3 * yardstick + 1.0, (took, yardstick)
    assert grew < 4 * SIZE // 2**20 + 64, f"the replica grew by {grew} MB"
    _still_serves(one)
    assert _tracebacks(one) == before


def _keyless_envelope(form: str, size: int) -> bytes:
    """An envelope of about ``size`` bytes, unknown fields where ``form`` says: at its top,
    in its payload, or in the last of many (empty) requests of a pre-prepare it carries
    ("none": the same pre-prepare without it, the yardstick)."""
    if form == "envelope":
        return PbftEnvelope(sender=-1).SerializeToString() + _unknown(size, 15, 0)
    if form == "payload":
        return PbftEnvelope(sender=-1, payload=_unknown(size, 15, 0)).SerializeToString()
    last = b"\x22\x00" if form == "none" else b"\x22\x02\x78\x00"      # field 15 = 0
    requests = b"\x22\x00" * (size // 2 - 2) + last
    msg = PbftMessage(pre_prepare=PrePrepare.FromString(requests))
    return PbftEnvelope(sender=-1, payload=msg.SerializeToString()).SerializeToString()


ENVELOPE = 4 * 1024 * 1024 - 4096      # under max_request_bytes (4 MiB)


@pytest.mark.parametrize("form,method", [("envelope", "SubmitJobs"),
                                         ("payload", "GetSchedule"),
                                         ("nested", "SubmitRound")])
def test_an_envelope_of_unknown_fields_is_refused_without_a_key_for_what_its_bytes_cost(
        one, method, form):
    """No key is looked at before the envelope is read: its unknown fields, at its top, in
    its payload, or in the last of a million requests it carries, cost the replica about
    what its bytes do -- as much as one of a million known requests (it was 1.2 s, 2.5 s
    here) -- and the refusal names where it looked."""
    # the faster of two of each: a pause of the shared machine (or of the replica's
    # collector after a million objects) in one call is not the refusal's cost
    plain = pb.ClientRequest(envelope=_keyless_envelope("none", ENVELOPE)).SerializeToString()
    yardstick = min(_call(one, method, plain)[2] for _ in range(2))
    bad = pb.ClientRequest(envelope=_keyless_envelope(form, ENVELOPE)).SerializeToString()
    tries = [_call(one, method, bad) for _ in range(2)]
    code, details, _took = tries[0]
    took = min(t[2] for t in tries)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert details.startswith("envelope") and "unknown field" in details, details
    assert took < 2 * yardstick + 0.3, (took, yardstick)
    _still_serves(one)


def _stream(g: LocalGroup, messages, timeout: float = 30.0):
    """Send raw ``messages`` (bytes) on a Requests stream: (replies by id, status code,
    details)."""
    got: dict[int, pb.StreamReply] = {}
    with g.channel(0) as ch:
        call = ch.stream_stream("/agora.v1.Coordinator/Requests",
                                response_deserializer=pb.StreamReplies.FromString)(
            iter(messages), timeout=timeout)
        try:
            for batch in call:
                for r in batch.replies:
                    got[r.id] = r
        except grpc.RpcError as e:
            return got, e.code(), e.details() or ""
    return got, grpc.StatusCode.OK, ""


def test_a_stream_message_of_envelopes_of_unknown_fields_is_refused_without_holding_the_loop(
        one):
    """Three 4 MiB envelopes of unknown fields in one StreamRequests (up to 15 fit gRPC's
    64 MiB: 22 s of the replica's loop): each is refused, INVALID_ARGUMENT naming the
    envelope, while the replica answers others."""
    env = _keyless_envelope("envelope", ENVELOPE)
    msg = pb.StreamRequests(requests=[pb.StreamRequest(id=k, rpc="SubmitJobs", envelope=env)
                                      for k in range(3)]).SerializeToString()
    t = time.monotonic()
    got, code, details = _stream(one, [msg])
    took = time.monotonic() - t
    assert code == grpc.StatusCode.OK, details
    assert sorted(got) == [0, 1, 2]
    for r in got.values():
        assert r.code == "INVALID_ARGUMENT" and r.details.startswith("envelope"), r
        assert "unknown field" in r.details, r.details
    assert took < 3.0, took
    _still_serves(one)


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
    got, code, details = _stream(one, [wrapped, around, good])
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
    got, code, _ = _stream(one, [pb.StreamRequests(requests=[pb.StreamRequest(
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
    _still_serves(one)


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
    before = _tracebacks(one)

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
    _still_serves(one)
    assert _tracebacks(one) == before


def test_the_replica_watches_serves_and_answers_after_all_of_it(one):
    """After the module's hostile input: a signed read and a watch are served."""
    from agora.coordinator.read_auth import sign_read

    with one.channel(0) as ch:
        got, code, details = _stream(one, [pb.StreamRequests(requests=[pb.StreamRequest(
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
