"""Hostile input on every entry point of a replica (``agora.v1.Coordinator``), fed over real
gRPC to one ``agora coordinator`` process (n = 1: its memory and log are its own): what a
refusal may cost the replica, whoever sends it.

- Unknown fields in bulk (a review): listing them built an object per field, so one keyless
  request of 20 MB of two-byte unknown fields held the replica's event loop 6 s and raised
  it to 900 MB (at gRPC's 64 MiB receive limit, ~20 s and 3 GB), on every RPC, in an
  envelope (4 MiB: 1.2 s), and in a request stream (one message of 15 such envelopes: 22 s).
  A refusal now costs about what its bytes do: refused naming the message, the same
  status, the loop free.

The request stream's own hostile input: ``test_grpc_hostile_streams.py``.
"""

from __future__ import annotations

import time

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.coordinator.validate import RPC_KINDS
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage, PrePrepare
from tests.coordinator.hostile_replica import (examples, hostile_one, still_serves, stream,
                                               tracebacks)

# wall-clock bounds: run apart from the other test worker (make test)
pytestmark = [pytest.mark.timeout(120), pytest.mark.timing]
one = hostile_one("hostile")


def _peak_mb(g: LocalGroup) -> int:
    """The replica's peak resident memory since the last ``_reset_peak`` (VmHWM)."""
    with open(f"/proc/{g.procs[0].pid}/status") as f:
        return next(int(x.split()[1]) // 1024 for x in f if x.startswith("VmHWM"))


def _reset_peak(g: LocalGroup) -> None:
    with open(f"/proc/{g.procs[0].pid}/clear_refs", "w") as f:
        f.write("5")


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
    before = tracebacks(one)
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
    still_serves(one)
    assert tracebacks(one) == before


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
    still_serves(one)


def test_a_stream_message_of_envelopes_of_unknown_fields_is_refused_without_holding_the_loop(
        one):
    """Three 4 MiB envelopes of unknown fields in one StreamRequests (up to 15 fit gRPC's
    64 MiB: 22 s of the replica's loop): each is refused, INVALID_ARGUMENT naming the
    envelope, while the replica answers others."""
    env = _keyless_envelope("envelope", ENVELOPE)
    msg = pb.StreamRequests(requests=[pb.StreamRequest(id=k, rpc="SubmitJobs", envelope=env)
                                      for k in range(3)]).SerializeToString()
    t = time.monotonic()
    got, code, details = stream(one, [msg])
    took = time.monotonic() - t
    assert code == grpc.StatusCode.OK, details
    assert sorted(got) == [0, 1, 2]
    for r in got.values():
        assert r.code == "INVALID_ARGUMENT" and r.details.startswith("envelope"), r
        assert "unknown field" in r.details, r.details
    assert took < 3.0, took
    still_serves(one)


