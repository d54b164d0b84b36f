"""The replicated schedule's records: its rows (allocations, instance changes), the round's
per-site state, and their messages. Shared by the state machine (``schedule_state``) and its
codec (``schedule_codec``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agora.agents.market import Bid, Offer
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import schedule_pb2

AllocationRow = tuple[str, str, int, int, str, str, int, int]
"""(job, task, instance begin, end, site, node, version, round)"""
ChangeRow = tuple[int, str, str, int, int, str, str, float, float, int, str]
"""(version, job, task, begin, end, site, kind, start_s, end_s, exit code, reason)"""


@dataclass
class SitePart:
    """A site's decision for the current round."""

    seen_version: int
    offers: list[Offer]
    bids: list[Bid]
    counts: bool = True
    """False when the ends of the same message opened work the site had not seen: its bids
    stand, but the round waits for its next decision"""


@dataclass
class SiteInfo:
    last_heard: int = 0
    """version of the site's last executed message (0: none yet)"""
    lapsed: bool = False
    lapse_votes: set[int] = field(default_factory=set)


def runs(placed: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(instance, node) pairs -> maximal runs (begin, end, node) of consecutive instances on
    one node, in instance order."""
    if len(placed) == 1:                      # most tasks of a round: one instance
        (i, node), = placed
        return [(i, i + 1, node)]
    out: list[tuple[int, int, int]] = []
    for i, node in sorted(placed):
        if out and out[-1][1] == i and out[-1][2] == node:
            out[-1] = (out[-1][0], i + 1, node)
        else:
            out.append((i, i + 1, node))
    return out


def allocation_pb(row: AllocationRow) -> schedule_pb2.Allocation:
    job, task, b, e, site, node, version, rnd = row
    return schedule_pb2.Allocation(job_id=job, task_id=task, instance_begin=b, instance_end=e,
                                   site=site, node=node, version=version, round=rnd)


def change_pb(row: ChangeRow) -> pb.InstanceChange:
    version, job, task, b, e, site, kind, start_s, end_s, code, reason = row
    return pb.InstanceChange(version=version, job_id=job, task_id=task, instance_begin=b,
                             instance_end=e, site=site, kind=kind, start_s=start_s,
                             end_s=end_s, exit_code=code, reason=reason)
