"""The PBFT client: a result needs f+1 matching authentic replies (a bad MAC, a repeated
replica or a disagreeing one does not count); it retransmits to all, and a read-only request
whose replies disagree falls back to an ordered one; the read-only fast path end to end."""

from __future__ import annotations

import pytest

from agora.coordinator.pbft.client import Client
from agora.coordinator.pbft.messages import Broadcast, Completed, Send
from agora.protos.agora.v1.pbft_pb2 import PbftMessage, PbftReply
from tests.pbft_fixtures import Forge, config, finish, keys, net

pytestmark = pytest.mark.timeout(60)


def test_client_needs_f_plus_1_matching_authentic_replies():
    cfg, fx = config(), Forge()
    c = Client(cfg, "c0", keys().for_client("c0"))
    out = c.submit(b"add x 1", 0.0)
    assert [type(a) for a in out] == [Send] and out[0].to == 0

    def reply(i, result, mac_ok=True):
        msg = PbftMessage(reply=PbftReply(view=0, timestamp=1, client_id="c0", replica=i,
                                          result=result))
        env = fx.replicas[i].to_client(msg, "c0")
        if not mac_ok:
            env.macs[0] = bytes(16)
        return env

    assert c.receive(reply(1, b"1"), 0.0) == []
    assert c.receive(reply(2, b"1", mac_ok=False), 0.0) == [] and c.rejected["bad_mac"] == 1
    assert c.receive(reply(1, b"1"), 0.0) == []            # same replica twice: still one
    assert c.receive(reply(3, b"666"), 0.0) == []
    done = c.receive(reply(2, b"1"), 0.0)
    assert done == [Completed("c0", 1, b"1", False)] and not c.busy


def test_client_retransmits_to_all_and_read_only_falls_back_on_disagreement():
    cfg, fx = config(), Forge()
    c = Client(cfg, "c0", keys().for_client("c0"))
    c.submit(b"add x 1", 0.0)
    assert [type(a) for a in c.tick(cfg.client_retransmit)] == [Broadcast]
    c2 = Client(cfg, "c1", keys().for_client("c1"))
    assert [type(a) for a in c2.submit(b"get x", 0.0, read_only=True)] == [Broadcast]

    def reply(i, result):
        return fx.replicas[i].to_client(PbftMessage(reply=PbftReply(
            view=0, timestamp=1, client_id="c1", replica=i, result=result, read_only=True)), "c1")

    c2.receive(reply(0, b"a"), 0.0)
    c2.receive(reply(1, b"b"), 0.0)
    out = c2.receive(reply(2, b"c"), 0.0)      # 2f+1 = 3 matching can no longer come
    assert [type(a) for a in out] == [Send]
    assert not PbftMessage.FromString(out[0].msg.payload).request.read_only


def test_read_only_fast_path_end_to_end():
    n = net()
    n.submit("c0", [b"set k v", (b"get k",)])
    finish(n)
    assert [d.result for d in n.clients["c0"].done] == [b"ok", b"v"]
    assert n.clients["c0"].done[1].read_only
