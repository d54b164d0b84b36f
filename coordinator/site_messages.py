"""A site's messages to the coordinator, as its agent's clearinghouse sends them
(``coordinator/clearinghouse.py``): parts merged while one is in flight, split to fit one
message, and written as the ``SiteRound`` the replicas check (``coordinator/validate.py``)."""

from __future__ import annotations

import math
import time

from agora.agents.step.seams import SitePart
from agora.coordinator.schedule_rules import MAX_REASON_BYTES
from agora.protos.agora.v1 import coordinator_pb2 as pb

END_KIND_CODES = {"completed": pb.END_COMPLETED, "failed": pb.END_FAILED, "lost": pb.END_LOST}


def merge(old: SitePart | None, new: SitePart) -> SitePart:
    """One message carrying both: every end and node change of ``old`` then ``new``, and the
    newer decision (``new``'s when it is bidding, else ``old``'s)."""
    if old is None:
        return new
    decision = new if new.bidding or not old.bidding else old
    return SitePart(site=new.site, round=decision.round, seen_version=decision.seen_version,
                    offers=decision.offers, ends=old.ends + new.ends,
                    nodes=latest_states(old.nodes + new.nodes), bidding=decision.bidding)


def latest_states(nodes: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Each node once, in its latest state: the coordinator refuses a node named twice in a
    part and keeps the first -- the older -- state (a review: a node down then up stayed
    down for good)."""
    last = {name: up for name, up in nodes}
    return list(last.items())


MAX_ENDS_A_MESSAGE = 2000
"""ends one message carries at most; more go in the next ones"""
END_BYTES = 1 << 20
"""bytes of ends one message carries at most (``split_part``'s default budget)"""


def end_bytes(e) -> int:
    """About what an end takes in a message (ids, reason and the fixed fields)."""
    reason = len(e.reason.encode("utf-8", "replace"))
    return 4 * (len(e.job_id) + len(e.task_id)) + min(reason, MAX_REASON_BYTES) + 64


def split_part(part: SitePart, budget: int = END_BYTES) -> tuple[SitePart, SitePart | None]:
    """``part`` as one message and the rest for the next, ends in order, within
    ``MAX_ENDS_A_MESSAGE`` and ``budget`` bytes: a part merged over an outage grew past a
    message's limits and was refused for good (a review). The node states and the decision
    go with the last ends: a message's ends apply before its node states, so a node going
    down ahead of an end of its own instance refused that end (a second review)."""
    cut, size = 0, 0
    for e in part.ends:
        size += end_bytes(e)
        if cut and (cut == MAX_ENDS_A_MESSAGE or size > budget):
            break
        cut += 1
    if cut == len(part.ends):
        return part, None
    head = SitePart(site=part.site, round=part.round, seen_version=part.seen_version,
                    ends=part.ends[:cut], bidding=False)
    rest = SitePart(site=part.site, round=part.round, seen_version=part.seen_version,
                    offers=part.offers, ends=part.ends[cut:], nodes=part.nodes,
                    bidding=part.bidding)
    return head, rest


def clipped(reason: str) -> str:
    """``reason`` in at most ``MAX_REASON_BYTES`` bytes of UTF-8: cut at 1,024 characters,
    a reason of wider characters was refused and the message with it (a review)."""
    data = reason.encode("utf-8", "replace")     # (a lone surrogate: no protobuf string)
    if len(data) <= MAX_REASON_BYTES:
        return data.decode("utf-8")
    return data[:MAX_REASON_BYTES].decode("utf-8", "ignore")


def to_message(part: SitePart) -> pb.SiteRound:
    msg = pb.SiteRound(site=part.site, round=part.round, seen_version=part.seen_version,
                       bidding=part.bidding)
    for o in part.offers:
        msg.bids.add(job_id=o.job_id, task_id=o.task_id, instances=o.instances, price=o.price)
    for e in part.ends:
        end_s = max(0.0, e.end_s) if math.isfinite(e.end_s) else time.time()
        start_s = min(max(0.0, e.start_s), end_s) if math.isfinite(e.start_s) else end_s
        msg.ends.add(job_id=e.job_id, task_id=e.task_id, instance=e.instance,
                     kind=END_KIND_CODES[e.kind], start_s=start_s, end_s=end_s,
                     exit_code=e.exit_code, reason=clipped(e.reason), run=e.run_id)
    for node, up in latest_states(part.nodes):
        msg.nodes.add(node=node, up=up)
    return msg
