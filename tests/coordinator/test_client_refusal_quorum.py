"""A refusal that depends on a replica's state is not final at f+1 (review).

n = 4, f = 1. The operator admits site:x (an ordered command); replicas 0, 1, 2 execute it,
replica 3 misses the COMMITs and lags. site:x then submits a request through the shipped
client (``CoordinatorClient.send_raw``). Replica 3 truthfully refuses it ("no key for
client 'site:x'": it has not executed the admission); replica 1 is faulty -- it takes part
in the protocol correctly but answers the client with a copy of 3's refusal. The request is
ordered and executed by 0, 1 and 2, and 0 and 2 send matching replies; the client must take
them. It took the two identical refusals instead (f+1 = 2) and raised UNAUTHENTICATED, for
a request that was in fact executed. The faulty replica needs no help to do it: as the
primary it can leave replica 3 out of the admission's PRE-PREPARE (the second case), and
0, 1, 2 still commit it.

No servers: each replica's answer is what ``CoordinatorService._verified`` (the replica's key
checks before ordering) says against the real ``Replica`` of a hand-driven network
(``pbft_handnet``), and an admitted request is fed to that network; its reply envelope is
the replica's own, authenticated as the client checks it.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import grpc
import pytest

from agora.coordinator.client import CoordinatorClient, CoordinatorError
from agora.coordinator.config import config_from_dict
from agora.coordinator.pbft.messages import Reply
from agora.coordinator.request_clock import WINDOW_US, ahead_refusal
from agora.coordinator.service import CoordinatorService
from agora.coordinator.validate import Refusal
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage
from tests.coordinator.pbft_handnet import GovApp, Net


class ReplyNet(Net):
    """``Net`` that keeps the replies its replicas send to clients."""

    def __init__(self, *a, **kw):
        self.replies: dict[tuple[int, int], PbftEnvelope] = {}
        super().__init__(*a, **kw)

    def _out(self, src, actions):
        actions = list(actions)
        if src not in self.silent and src not in self.down:
            for a in actions:
                if isinstance(a, Reply):
                    ts = PbftMessage.FromString(a.msg.payload).reply.timestamp
                    self.replies[(src, ts)] = a.msg
        super()._out(src, actions)


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


CFG = config_from_dict({"replicas": [f"127.0.0.1:{p}" for p in (1, 2, 3, 4)]})


def send(net: ReplyNet, faulty: int, faulty_answer,
         slow: tuple[int, ...] = ()) -> tuple[bytes | CoordinatorError, int]:
    """site:x's request ``set y 1`` through ``CoordinatorClient.send_raw``: each correct
    replica answers as its key checks (``CoordinatorService._verified``) and its
    ``Replica`` in ``net`` say -- a refusal at once, else its reply once ordered --, and
    replica ``faulty`` answers ``faulty_answer(verified, envelope)``. The client's answer
    (the result, or the CoordinatorError it raised) and the request's timestamp. The
    ``slow`` replicas' clocks are behind by twice the window a timestamp may lead by: they
    refuse the request as stamped ahead (``request_clock.ahead_refusal``)."""
    # the site's own key (it made it; no link keys in the key file): replies are MACed
    # with the keys both ends derive
    site_keys = net.keys.public().with_own_key("site:x", net.keys.client_signing["site:x"])

    def verified(i: int, envelope: bytes) -> Refusal | None:
        """Replica ``i``'s key checks of the request (``CoordinatorService._verified``)."""
        if i in slow:
            req = PbftMessage.FromString(PbftEnvelope.FromString(envelope).payload).request
            return ahead_refusal(req.timestamp, time.time_ns() // 1000 - 2 * WINDOW_US)
        svc = SimpleNamespace(host=SimpleNamespace(config=CFG, replica=net.reps[i]))
        try:
            CoordinatorService._verified(svc, envelope, "SubmitJobs")
        except Refusal as r:
            return r
        return None

    async def one(i: int, rpc_name: str, data: bytes):
        envelope = pb.ClientRequest.FromString(data).envelope
        if i == faulty:              # it takes the request as a correct replica would ...
            net.q.append((-1, i, PbftEnvelope.FromString(envelope)))
            net.run()
            return i, faulty_answer(verified, envelope)     # ... and answers as it likes
        r = verified(i, envelope)
        if r is not None:                            # refused at once, never ordered
            return i, _error(r.code, r.message)
        req = PbftMessage.FromString(PbftEnvelope.FromString(envelope).payload).request
        net.q.append((-1, i, PbftEnvelope.FromString(envelope)))
        net.run()
        await asyncio.sleep(0.05)                    # three phases take longer than a refusal
        reply = net.replies.get((i, req.timestamp))
        if reply is None:
            return i, _error(grpc.StatusCode.UNAVAILABLE, "not executed")
        return i, pb.ClientReply(envelope=reply.SerializeToString(), replica=i)

    async def main():
        c = CoordinatorClient(CFG, site_keys, "site:x", streams=False, timeout_s=5.0)
        c._one = one
        try:
            ts, data = c.envelope(b"set y 1")
            try:
                return await c.send_raw("SubmitJobs", data, ts), ts
            except CoordinatorError as e:
                return e, ts
        finally:
            await c.close()

    return asyncio.run(main())


def _net() -> ReplyNet:
    return ReplyNet(clients=("op", "site:x"), app=GovApp, static_clients={"op"})


@pytest.mark.parametrize("faulty,lag", [
    (1, "commit"),          # the network delays the admission's COMMITs to 3
    (0, "pre_prepare"),     # the faulty one alone: as primary it leaves 3 out of the admission
])
def test_a_lagging_replica_and_a_faulty_copy_of_its_refusal_do_not_refuse_an_admitted_site(
        faulty, lag):
    net = _net()
    site_pub = net.keys.client_verify["site:x"].hex()
    net.drop = lambda s, d, e: d == 3 and net.kind(e) == lag                # 3 lags
    net.request(1, f"admit site:x {site_pub}".encode(), client="op", run=True)
    assert [r.last_executed for r in net.reps] == [1, 1, 1, 0]      # 2f+1 executed it
    net.drop = lambda s, d, e: False

    def copy_of_3s_refusal(verified, envelope):   # orders correctly, lies to the client
        r = verified(3, envelope)
        return _error(r.code, r.message)

    answer, ts = send(net, faulty, copy_of_3s_refusal)
    # the request was ordered and executed by the 2f+1 replicas that admitted site:x ...
    assert [r.clients.get("site:x", (0,))[0] for r in net.reps] == [ts, ts, ts, 0]
    assert (0, ts) in net.replies and (2, ts) in net.replies
    # ... so the client takes their f+1 matching replies, not the two refusals
    assert answer == b"ok", f"the client gave up on an executed request: {answer!r}"


def test_a_site_no_correct_replica_admitted_is_still_refused():
    """The guard: with no admission, the 2f+1 correct replicas refuse site:x alike, and the
    client is told so (UNAUTHENTICATED), whatever the faulty one answers."""
    for faulty_says in ("silent", "ok"):
        net = _net()

        def faulty(verified, envelope):
            if faulty_says == "silent":
                return _error(grpc.StatusCode.UNAVAILABLE, "no answer")
            return _error(grpc.StatusCode.INVALID_ARGUMENT, "something else")

        answer, _ = send(net, 1, faulty)
        assert isinstance(answer, CoordinatorError), answer
        assert answer.code == grpc.StatusCode.UNAUTHENTICATED, answer
        assert "no key for client 'site:x'" in answer.message
        assert all(r.last_executed == 0 for r in net.reps)


def test_one_slow_clock_and_a_faulty_copy_of_its_refusal_do_not_refuse_a_request():
    """Replica 3's clock is behind: it refuses site:x's request as stamped ahead of its
    clock, truthfully; replica 1 orders the request and copies 3's refusal to the client.
    0 and 2 execute it: the client takes their replies (the refusal needed only f+1). With
    every correct clock behind, the 2f+1 refusals still end the call."""
    net = _net()
    site_pub = net.keys.client_verify["site:x"].hex()
    net.request(1, f"admit site:x {site_pub}".encode(), client="op", run=True)

    def copy_of_3s_refusal(verified, envelope):
        r = verified(3, envelope)
        return _error(r.code, r.message)

    answer, ts = send(net, 1, copy_of_3s_refusal, slow=(3,))
    assert answer == b"ok", f"the client gave up on an executed request: {answer!r}"
    answer, _ = send(net, 1, copy_of_3s_refusal, slow=(0, 2, 3))
    assert isinstance(answer, CoordinatorError), answer
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT and "ahead" in answer.message
