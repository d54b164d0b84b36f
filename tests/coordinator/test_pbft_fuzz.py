"""Fuzzing Replica.receive on a backup that has executed one batch: arbitrary bytes, mutated
valid messages and structurally odd but authentic ones (as from a faulty replica) never raise
nor change committed state, and what is not authentic is counted as rejected."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.coordinator.pbft.messages import batch_digest
from agora.protos.agora.v1.pbft_pb2 import (NewView, PbftEnvelope, PbftMessage, PbftRequest,
                                            PreparedCert, PrePrepare, ViewChange)
from tests.pbft_fixtures import Forge, replica

pytestmark = pytest.mark.timeout(60)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _primed():
    """A backup that has executed one batch, and valid messages to mutate."""
    fx, r = Forge(), replica(1)
    req = fx.request("c0", 1, b"add x 5")
    d = batch_digest([req])
    msgs = [fx.pre_prepare([req]), fx.prepare(3, d), fx.commit(0, d), fx.commit(2, d)]
    for m in msgs:
        r.receive(m, 0.0)
    assert r.last_executed == 1
    nxt = fx.request("c1", 1, b"add y 1")
    msgs += [fx.pre_prepare([nxt], seq=2), fx.prepare(2, batch_digest([nxt]), seq=2),
             fx.request_env("c1", 2, b"add y 2")]
    return r, msgs


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_nor_change_committed_state(data):
    r, _ = _primed()
    before = sum(r.rejected.values())
    r.receive(data, 1.0)
    assert r.last_executed == 1 and r.app.data == {"x": "5"}
    assert sum(r.rejected.values()) == before + 1


@FUZZ
@given(st.integers(0, 6), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                   min_size=1, max_size=6))
def test_mutated_messages_never_raise_and_are_counted_when_not_authentic(which, flips):
    r, msgs = _primed()
    raw = bytearray(msgs[which].SerializeToString())
    for pos, val in flips:
        raw[pos % len(raw)] = val
    before = (sum(r.rejected.values()), r.last_executed, dict(r.app.data))
    r.receive(bytes(raw), 1.0)
    assert r.last_executed == 1 and r.app.data == {"x": "5"}
    env = PbftEnvelope()
    try:
        env.ParseFromString(bytes(raw))
        # a client request is authenticated by the client's signature inside the payload,
        # whoever relays it (any replica forwards requests): its envelope may say anything
        request = PbftMessage.FromString(msgs[which].payload).WhichOneof("kind") == "request"
        authentic = env.payload == msgs[which].payload and (
            request or (env.sender == msgs[which].sender
                        and (env.sender == -1 or env.macs[1:2] == msgs[which].macs[1:2])))
    except Exception:  # noqa: BLE001
        authentic = False
    if not authentic:
        assert sum(r.rejected.values()) == before[0] + 1


@FUZZ
@given(st.sampled_from(["pre_prepare", "prepare", "commit", "checkpoint", "view_change",
                        "new_view", "status", "state", "fetch_state"]),
       st.integers(-5, 10**9), st.integers(-5, 10**9), st.binary(max_size=40))
def test_structurally_odd_but_authentic_messages_never_raise(kind, a, b, blob):
    """Messages with valid MACs (as from a faulty replica) but absurd fields."""
    fx = Forge()
    r, _ = _primed()
    msg = PbftMessage()
    body = getattr(msg, kind)
    for name, value in (("view", a), ("seq", b), ("new_view", a), ("stable_seq", b),
                        ("last_executed", b), ("digest", blob), ("stable_digest", blob),
                        ("state", blob)):
        if name in body.DESCRIPTOR.fields_by_name:
            setattr(body, name, value)
    if "replica" in body.DESCRIPTOR.fields_by_name:
        body.replica = 2
    env = fx.replicas[2].seal(msg)          # signed where its kind is (auth.SIGNED_KINDS)
    r.receive(env, 1.0)
    r.tick(50.0)
    assert r.app.data == {"x": "5"} or r.last_executed > 1


REQUESTS = st.lists(st.builds(
    PbftRequest,
    client_id=st.one_of(st.text(max_size=30), st.integers(65_000, 70_000).map(lambda k: "c" * k)),
    timestamp=st.integers(0, 2**64 - 1), op=st.binary(max_size=20),
    read_only=st.booleans(), signature=st.binary(max_size=64)), min_size=1, max_size=3)


@FUZZ
@given(st.sampled_from(["pre_prepare", "view_change", "new_view"]), REQUESTS)
def test_authentic_messages_carrying_any_requests_never_raise(kind, requests):
    """A faulty replica may put any request -- any client id, timestamp or signature -- in a
    pre-prepare, a certificate or a new view: refused, never raised (a 65,536-byte client id
    once raised in every correct replica)."""
    fx = Forge()
    r, _ = _primed()
    pp = PrePrepare(view=1, seq=2, digest=b"\0" * 32, requests=requests)
    if kind == "pre_prepare":
        msg = PbftMessage(pre_prepare=PrePrepare(view=0, seq=2, digest=b"\0" * 32,
                                                 requests=requests))
        sender = 0
    elif kind == "view_change":
        msg = PbftMessage(view_change=ViewChange(new_view=1, replica=2, prepared=[
            PreparedCert(view=0, seq=2, digest=b"\0" * 32, requests=requests)]))
        sender = 2
    else:
        msg = PbftMessage(new_view=NewView(view=1, pre_prepares=[pp]))
        sender = 1
    before = sum(r.rejected.values())
    r.receive(fx.replicas[sender].seal(msg), 1.0)
    assert r.last_executed == 1 and r.app.data == {"x": "5"}
    assert sum(r.rejected.values()) == before + 1
