"""A site the operator removed keeps its certificate (the CA's, not revoked) and its agent may
go on running: its peer codes went on moving its listeners' decisions, and it went on hearing
theirs (a review). The committed schedule now says which sites are removed (an update's
``sites`` entry gives a site's whole standing), the clearinghouse keeps that set, and the
agent's exchange refuses the removed sites' codes, leaves their old ones out and sends them
none -- until the operator admits the site back.

The state machine and the exchange over real gRPC; the clearinghouse's watch over a fake
client (an object yielding updates, in this test only)."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from nacl.signing import SigningKey

from agora.agents.cluster.peers import GrpcExchange
from agora.coordinator.clearinghouse import PbftClearinghouse
from agora.protos.agora.v1 import agent_pb2 as apb
from agora.protos.agora.v1 import agent_pb2_grpc as rpc
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, lapse, op
from tests.simkit import cluster, node, site

SITES = ["east", "west", "edge"]


def test_removal_and_admission_back_are_in_the_updates_with_the_sites_standing():
    r = Run()
    sites = sorted(r.state.site_index)
    gone = sites[0]
    assert r("operator", op(remove_site=pb.RemoveSite(site=gone))).accepted == 1
    entries = [s for s in r.updates[-1].sites if s.site == gone]
    assert [(s.lapsed, s.removed) for s in entries] == [(True, True)]
    key = SigningKey(b"\x05" * 32)
    back = op(admit_site=pb.AdmitSite(site=gone, verify_key=bytes(key.verify_key)))
    assert r("operator", back).accepted == 1
    entries = [s for s in r.updates[-1].sites if s.site == gone]
    assert [(s.lapsed, s.removed) for s in entries] == [(True, False)]   # lapsed till heard
    # a rotation of a member site's key says nothing of its standing
    other = op(admit_site=pb.AdmitSite(site=sites[1],
                                       verify_key=bytes(SigningKey(b"\x06" * 32).verify_key)))
    published = len(r.updates)
    assert r("operator", other).accepted == 1
    assert len(r.updates) == published


def test_a_site_lapsed_before_its_removal_is_still_said_removed():
    r = Run()
    gone = sorted(r.state.site_index)[0]
    for voter in ("replica:0", "replica:1"):       # f+1 replicas vote it lapsed
        r(voter, lapse(gone, r.state.sites[gone].last_heard))
    assert r.state.sites[gone].lapsed
    assert r("operator", op(remove_site=pb.RemoveSite(site=gone))).accepted == 1
    assert [(s.lapsed, s.removed) for s in r.updates[-1].sites] == [(True, True)]


class Watching:
    """A fake coordinator client (this test only): its watch yields the given updates."""
    client_id = "site:a"

    def __init__(self, updates: list[pb.ScheduleUpdate]) -> None:
        self.updates = updates

    def watch(self, since_version):
        async def stream():
            for u in self.updates:
                yield u
            await asyncio.sleep(60)
        return stream()


@pytest.mark.timeout(30)
def test_the_clearinghouse_keeps_the_removed_sites_in_one_set_it_updates_in_place():
    def update(v, **standing):
        u = pb.ScheduleUpdate(version=v)
        u.round.round = 0
        u.sites.add(site="b", **standing)
        return u

    async def main():
        cl = cluster(site("a", node("a", "n0", 2)), site("b", node("b", "n1", 2)))
        ch = PbftClearinghouse(cluster=cl, client=Watching(
            [update(1, lapsed=True, removed=True), update(2, lapsed=True)]))
        held = ch.removed_sites
        seen = []
        ch.on_update = lambda started: seen.append(set(held))
        follow = asyncio.ensure_future(ch._follow())
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        follow.cancel()
        assert seen == [{"b"}, set()] and ch.removed_sites is held
        assert ch.lapsed == {"b"}

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_removed_sites_codes_are_refused_left_out_and_it_is_sent_none_till_admitted_back():
    async def main():
        addr: dict[str, str] = {}
        ex: dict[str, GrpcExchange] = {}
        servers = []

        async def resolve(peer):
            return addr.get(peer)

        removed: set[str] = set()               # the clearinghouse's set, as the agent wires it
        for s in SITES:
            ex[s] = GrpcExchange(site=s, sites=SITES, code_dim=8, code_bytes=8,
                                 resolve=resolve, epoch=1)
            srv = grpc.aio.server()
            rpc.add_PeerExchangeServicer_to_server(ex[s].service, srv)
            addr[s] = f"127.0.0.1:{srv.add_insecure_port('127.0.0.1:0')}"
            await srv.start()
            servers.append(srv)
        ex["east"].exclude(removed)
        for e in ex.values():
            e.links.start()
        code = np.arange(8, dtype=np.int8)
        ex["west"].publish(1, 3, code)
        await until(lambda: ex["east"].book.latest_round[1] == 3)
        assert ex["east"].codes(4)[1][1]                     # heard while a member

        removed.add("west")                                  # the operator removed it
        assert not ex["east"].codes(4)[1][1]                 # what it said before: left out
        ex["west"].publish(1, 5, -code)
        await until(lambda: ex["east"].service.refused == 1)
        assert ex["east"].book.latest_round[1] == 3 and not ex["east"].codes(6)[1][1]
        why = ex["east"].service.check(apb.SiteCode(site="west", round=7, code=code.tobytes()))
        assert why.startswith("site: 'west' was removed by the operator")
        ex["east"].publish(0, 5, code)                       # edge hears it, west does not
        await until(lambda: ex["edge"].book.latest_round[0] == 5)
        await asyncio.sleep(0.3)
        assert ex["west"].book.latest_round[0] == -1

        removed.discard("west")                              # admitted back
        ex["west"].publish(1, 8, code)
        await until(lambda: ex["east"].book.latest_round[1] == 8)
        assert ex["east"].codes(9)[1][1]
        ex["east"].publish(0, 9, code)
        await until(lambda: ex["west"].book.latest_round[0] == 9)
        for e in ex.values():
            await e.links.close()
        for srv in servers:
            await srv.stop(grace=None)

    asyncio.run(main())


async def until(cond, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.02)
