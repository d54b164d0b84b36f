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
"""ends one message carries (with reasons of up to 1 KiB, well under max_request_bytes);
more go in the next ones"""


def split_part(part: SitePart) -> tuple[SitePart, SitePart | None]:
    """``part`` as one message and the rest for the next: a part merged over an outage
    grew past a message's limits and was refused for good (a review)."""
    if len(part.ends) <= MAX_ENDS_A_MESSAGE:
        return part, None
    head = SitePart(site=part.site, round=part.round, seen_version=part.seen_version,
                    ends=part.ends[:MAX_ENDS_A_MESSAGE], nodes=part.nodes, bidding=False)
    rest = SitePart(site=part.site, round=part.round, seen_version=part.seen_version,
                    offers=part.offers, ends=part.ends[MAX_ENDS_A_MESSAGE:],
                    bidding=part.bidding)
    return head, rest


def clipped(reason: str) -> str:
    """``reason`` in at most ``MAX_REASON_BYTES`` bytes of UTF-8: cut at 1,024 characters,
    a reason of wider characters was refused and the message with it (a review)."""
    data = reason.encode("utf-8", "replace")
    if len(data) <= MAX_REASON_BYTES:
        return reason
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
