"""A site's messages as its clearinghouse sends them (a review of the agent side): a reason
cut at 1,024 characters was over the replicas' 1,024 bytes, and the refused part was sent
again for good with every later part merged into it; a part merged over an outage outgrew a
message; a node named twice in a part kept its older state at the coordinator; a part the
replicas refuse makes the agent start afresh. The replicas' own check of a part
(``validate.check_command``) stands in for them (this test's client)."""

from __future__ import annotations

import asyncio

from agora.agents.step.seams import Ended, SitePart
from agora.coordinator.clearinghouse import PbftClearinghouse
from agora.coordinator.client import CoordinatorError
from agora.coordinator.site_messages import (MAX_ENDS_A_MESSAGE, merge, split_part,
                                             to_message)
from agora.coordinator.validate import Refusal, check_command
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import cluster


class CheckingClient:
    """Each message as the replicas check it before ordering: refused as they refuse it."""
    client_id = "site:a"

    def __init__(self) -> None:
        self.tries, self.accepted = 0, []

    async def submit_round(self, msg):
        self.tries += 1
        try:
            check_command(pb.Command(site_round=msg), self.client_id, "op")
        except Refusal as e:
            raise CoordinatorError(e.code, e.message, {}) from None
        self.accepted.append(msg)
        return pb.Result(accepted=len(msg.ends), round=msg.round, decided=True)


def end(i: int, reason: str = "", start: float = 1.0, stop: float = 2.0) -> Ended:
    return Ended("j", "map", i, "failed", start, stop, 1, reason)


def part(*ends: Ended, nodes=(), bidding=False, offers=()) -> SitePart:
    return SitePart(site="a", round=0, seen_version=0, ends=list(ends), nodes=list(nodes),
                    bidding=bidding, offers=list(offers))


def test_a_reason_of_wide_characters_fits_the_replicas_bytes():
    reason = "échec: " + "é" * 600                     # 607 characters, 1,207 bytes
    msg = to_message(part(end(0, reason), end(1, "ok", start=5.0, stop=4.0)))
    check_command(pb.Command(site_round=msg), "site:a", "op")       # not refused
    assert len(msg.ends[0].reason.encode()) <= 1024 and msg.ends[0].reason.startswith("échec")
    assert (msg.ends[1].start_s, msg.ends[1].end_s) == (4.0, 4.0)   # start <= end


def test_a_part_over_a_message_goes_in_several_its_decision_last():
    from agora.agents.step.seams import Offer

    big = part(*(end(i) for i in range(2 * MAX_ENDS_A_MESSAGE + 5)), nodes=[("a/n0", True)],
               bidding=True, offers=[Offer("j", "map", 1, 1)])
    head, rest = split_part(big)
    assert len(head.ends) == MAX_ENDS_A_MESSAGE and not head.bidding and not head.offers
    assert head.nodes == []                             # node states after every end
    head2, rest2 = split_part(rest)
    last, none = split_part(rest2)
    assert none is None and last.bidding and last.offers and len(last.ends) == 5
    assert last.nodes == [("a/n0", True)]
    assert len(head.ends) + len(head2.ends) + len(last.ends) == len(big.ends)


def test_a_node_named_twice_is_sent_once_in_its_latest_state():
    merged = merge(part(nodes=[("a/n0", False)]), part(nodes=[("a/n0", True), ("a/n1", False)]))
    assert merged.nodes == [("a/n0", True), ("a/n1", False)]
    msg = to_message(part(nodes=[("a/n0", True), ("a/n0", False)]))
    assert [(n.node, n.up) for n in msg.nodes] == [("a/n0", False)]


def test_a_refused_part_is_not_sent_again_for_good_the_agent_starts_afresh():
    async def main():
        ch = PbftClearinghouse(cluster=cluster(), client=CheckingClient(), heartbeat_s=3600)
        lost = []
        ch.lost_track = lost.append
        task = asyncio.create_task(ch._send_loop())
        ch.submit(part(end(0, start=float("nan"))))                # would be refused as is
        ch.submit(part(end(-1)))                                     # refused: instance -1
        await asyncio.sleep(0.3)
        task.cancel()
        return ch, lost
    ch, lost = asyncio.run(main())
    assert ch.client.tries == 1 and ch.client.accepted == []
    assert len(lost) == 1 and "a message of this site was refused" in lost[0]


def test_a_split_part_sends_its_node_states_after_all_its_ends():
    """A second review: the first message carried the node states; a node going down there
    stopped an instance whose "completed" end was in the next message (refused: not
    running) -- completed work ran again. A message's ends apply before its node states."""
    from tests.coordinator.state_helpers import Run, allocate, job, submit

    r = Run()
    r("site:c", submit(job("jc", "c", n=1, dag=False)))
    allocate(r, "jc", "c", 1)
    ts = r.state.ledger.tasks[("jc", "map")]
    node = r.state.node_names[ts.placements[0][0]]
    filler = [Ended("nope", "map", 0, "lost", 0.0, 0.0) for _ in range(MAX_ENDS_A_MESSAGE)]
    done = Ended("jc", "map", 0, "completed", 1.0, 2.0, 0, "", ts.placed_at[0])
    whole = SitePart(site="c", round=r.state.round, seen_version=r.seq, ends=filler + [done],
                     nodes=[(node, False)], bidding=False)
    head, rest = split_part(whole)
    assert head.nodes == [] and rest.nodes == [(node, False)] and rest.ends == [done]
    for p in (head, rest):
        r("site:c", pb.Command(site_round=to_message(p)).SerializeToString())
    assert ts.done == 1


def test_a_message_is_split_by_bytes_too():
    wide = "終" * 128                                   # 384 bytes a reason, 128 an id char
    ends = [Ended(wide, "map", i, "failed", 1.0, 2.0, 1, "é" * 600) for i in range(500)]
    head, rest = split_part(part(*ends), budget=64 * 1024)
    assert 0 < len(head.ends) < 500 and len(head.ends) + len(rest.ends) == 500
    assert to_message(head).ByteSize() <= 96 * 1024


def test_a_site_whose_key_is_refused_does_not_restart_its_agent():
    """A second review: "no key for client" (the operator removed the site) is a refusal,
    and the agent restarted -- before its heartbeats found the removal and stopped its work
    -- and again and again. A key refused is left to the heartbeats; its part waits."""
    import grpc

    class Removed:
        client_id = "site:a"

        async def submit_round(self, msg):
            raise CoordinatorError(grpc.StatusCode.UNAUTHENTICATED,
                                   "envelope.payload.request.client_id: no key for client "
                                   "'site:a'", {})

    async def main():
        ch = PbftClearinghouse(cluster=cluster(), client=Removed(), heartbeat_s=3600)
        lost = []
        ch.lost_track = lost.append
        task = asyncio.create_task(ch._send_loop())
        ch.submit(part(end(0)))
        await asyncio.sleep(0.2)
        task.cancel()
        return ch, lost
    ch, lost = asyncio.run(main())
    assert lost == [] and ch._pending is not None and ch._pending.ends


def test_a_reason_with_a_lone_surrogate_is_sent_not_dropped():
    msg = to_message(part(end(0, "bad \ud800 byte")))
    assert msg.ends[0].reason == "bad ? byte"
