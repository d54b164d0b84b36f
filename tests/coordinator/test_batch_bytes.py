"""Batches are bounded in bytes as well as in count: the primary's pre-prepares and the
transport's messages to a peer. Counted alone, sixteen maximum-size requests made a
pre-prepare of 64 MiB, and a peer batch of large envelopes outgrew the 64 MiB a gRPC message
may hold -- lost whole, every time it was sent again."""

from __future__ import annotations

import asyncio

import pytest

from agora.coordinator import transport
from agora.coordinator.config import config_from_dict
from agora.coordinator.pbft.messages import Broadcast
from agora.agents.workloads.errors import InputError
from agora.protos.agora.v1.pbft_pb2 import PbftMessage
from tests.pbft_fixtures import Forge, config, replica

pytestmark = pytest.mark.timeout(30)


def pre_prepares(actions) -> list:
    out = []
    for a in actions:
        if isinstance(a, Broadcast):
            msg = PbftMessage.FromString(a.msg.payload)
            if msg.WhichOneof("kind") == "pre_prepare":
                out.append(msg.pre_prepare)
    return out


def test_the_primary_closes_a_batch_before_its_requests_pass_batch_bytes():
    cfg = config(batch_size=16, max_outstanding=8, batch_bytes=2_500, batch_timeout=10.0)
    primary = replica(0, cfg=cfg)
    forge = Forge()
    # the pipeline is busy (one batch out), so requests gather, then go out together
    sent = pre_prepares(primary.receive(forge.request_env("c0", 1, b"x"), 0.0))
    for k in range(6):
        cid = ("c1", "mallory")[k % 2]
        sent += pre_prepares(primary.receive(
            forge.request_env(cid, 1 + k // 2, bytes(1000)), 0.0))
    assert len(sent) == 1
    sent += pre_prepares(primary.tick(20.0))           # the batch timeout: all go now
    by_seq = {pp.seq: pp for pp in sent}               # a retransmission sends one again
    sent = [by_seq[s] for s in sorted(by_seq)]
    sizes = [sum(r.ByteSize() for r in pp.requests) for pp in sent[1:]]
    assert sum(len(pp.requests) for pp in sent[1:]) == 6, "a request was lost"
    assert all(s <= 2_500 for s in sizes) and len(sizes) == 3, sizes


def test_a_request_larger_than_batch_bytes_goes_alone():
    cfg = config(batch_size=16, batch_bytes=100)
    primary = replica(0, cfg=cfg)
    sent = pre_prepares(primary.receive(Forge().request_env("c0", 1, bytes(5_000)), 0.0))
    assert len(sent) == 1 and len(sent[0].requests) == 1


def test_peer_batches_are_packed_by_bytes(monkeypatch):
    monkeypatch.setattr(transport, "PEER_BATCH_BYTES", 10_000)   # smaller, same rule
    links = transport.PeerLinks(index=0, addresses=("a:1", "b:2"), batch_max=256)
    sizes = [4_000, 4_000, 4_000, 30_000, 10, 10]
    for n in sizes:
        links.send(1, bytes(n))

    async def take(count: int) -> list[list[int]]:
        gen = links._batches(1)
        out = []
        for _ in range(count):
            batch = await gen.__anext__()
            out.append([len(e) for e in batch.envelopes])
        await gen.aclose()
        return out

    batches = asyncio.run(take(3))
    assert batches == [[4_000, 4_000], [4_000], [30_000, 10, 10]] or \
        batches == [[4_000, 4_000], [4_000], [30_000]], batches
    assert all(sum(b) <= 10_000 or len(b) == 1 or b[0] > 10_000 for b in batches)


def test_a_max_request_bytes_no_message_between_replicas_can_carry_is_refused():
    with pytest.raises(InputError) as e:
        config_from_dict({"replicas": ["h:1", "h:2", "h:3", "h:4"],
                          "max_request_bytes": 64 * 1024 * 1024}, "coordinator.yaml")
    assert "max_request_bytes" in str(e.value) and "16 MiB" in str(e.value)
    ok = config_from_dict({"replicas": ["h:1", "h:2", "h:3", "h:4"],
                           "max_request_bytes": 16 * 1024 * 1024}, "coordinator.yaml")
    assert ok.pbft().batch_bytes == 16 * 1024 * 1024
