"""A hostile neighbour makes an agent re-decide once per code it sends: every accepted code
wakes the agent, and a code that changes the bytes of ``exchange.codes(round)`` is a
re-decision (``AgentRuntime.act_if_owed``: re-rank, and a new signed part to the coordinator
whenever the bids move). An honest peer speaks at most once a round; a hostile one may send
as many codes as it likes -- the same round again and again with new contents, or rounds
it never held, old ones (1, 2, ... r - 1 once it kept quiet) or future ones (they change
the masked-out row of ``codes``). Expected: one re-decision per round per sender; an
honest peer's late code is still heard.

The agent's real runtime, step and ``GrpcExchange`` (its ``PeerService.Send`` called as the
server calls it, no TLS), over the late-round tests' stand-ins of its clearinghouse and
executor. No servers, no Ray."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from agora.agents.cluster.peers import GrpcExchange
from agora.agents.cluster.runtime import AgentRuntime
from agora.agents.step.codes import code_bytes
from agora.agents.step.seams import RoundInfo
from agora.protos.agora.v1 import agent_pb2 as pb
from tests.cluster.test_late_round import SITES, Clearinghouse, Executor, only_c_can_hold, policy
from tests.coordinator.state_helpers import cluster


class Context:
    def auth_context(self):
        return {}                           # no TLS: the site a code names


async def _stream(*msgs):
    for m in msgs:
        yield m


def feed(ex: GrpcExchange, *msgs: pb.SiteCode) -> None:
    asyncio.run(ex.service.Send(_stream(*msgs), Context()))


@pytest.mark.timeout(60)
def test_one_sender_gets_one_re_decision_a_round_however_many_codes_it_sends():
    r = only_c_can_hold()
    pol = policy()
    names = list(SITES)
    ex = GrpcExchange(site="c", sites=names, code_dim=pol.code_dim,
                      code_bytes=code_bytes(pol.code_dim, pol.bits),
                      resolve=None, epoch=1)
    c = AgentRuntime(site=SITES["c"], name="c", cluster=cluster(), policy=pol, exchange=ex,
                     clearinghouse=Clearinghouse(r), executor=Executor(SITES["c"]))
    ch = c.agent.clearinghouse
    ch.catch_up()
    ch.round = RoundInfo(round=500, armed=True, armed_version=ch.version, version=ch.version)
    c.act_if_owed()                                    # decides round 500
    assert c.counts["decisions"] == 1
    nb = code_bytes(pol.code_dim, pol.bits)
    rng = np.random.default_rng(0)

    def code() -> bytes:
        return rng.integers(-127, 128, nb, dtype=np.int8).tobytes()

    # b, hostile: the same round 499 with new contents, then old rounds it never held, then
    # future ones -- each accepted, each followed by a wake of the agent's loop
    hostile = [pb.SiteCode(site="b", round=499, code=code()) for _ in range(30)]
    hostile = [pb.SiteCode(site="b", round=1, code=code())] + hostile
    hostile += [pb.SiteCode(site="b", round=600 + i, code=code()) for i in range(30)]
    t0 = time.perf_counter()
    for m in hostile:
        feed(ex, m)
        c.act_if_owed()                                # the loop, woken by on_code
    spent = time.perf_counter() - t0
    by_b = c.counts["reranked"]
    # a, honest: its code of round 499 arrives late; it is heard
    feed(ex, pb.SiteCode(site="a", round=499, code=code()))
    c.act_if_owed()
    assert c.counts["reranked"] == by_b + 1, "an honest peer's late code is re-decided on"
    assert by_b <= 2, (f"{len(hostile)} codes of one hostile peer in one round made "
                       f"{by_b} re-decisions ({spent:.2f} s of the agent's loop)")
