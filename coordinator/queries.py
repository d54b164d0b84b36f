"""The queries a coordinator client sends, built once for the online client and the offline
reader (``offline.py``) alike, and the fields of the replicas' statuses that f+1 agree on."""

from __future__ import annotations

from collections import Counter

from agora.protos.agora.v1 import coordinator_pb2 as pb


def schedule_query(**by) -> pb.Query:
    """The query ``CoordinatorClient.schedule(**by)`` sends (offline reads answer the same)."""
    if "task" in by and isinstance(by["task"], tuple):
        by["task"] = pb.TaskRef(job_id=by["task"][0], task_id=by["task"][1])
    return pb.Query(schedule=pb.ScheduleQuery(**(by or {"all": True})))


def job_status_query(job_id: str) -> pb.Query:
    return pb.Query(job_status=pb.JobStatusQuery(job_id=job_id))


def ledger_query() -> pb.Query:
    return pb.Query(ledger=pb.LedgerQuery())


def silent_sites(statuses: list[pb.ReplicaStatus | str], f: int) -> set[str] | None:
    """The sites f+1 replicas report silent (``ReplicaStatus.silent_sites``: no heartbeat
    for ``site_timeout_s`` on their own clocks): no f faulty replicas can make a site look
    silent, nor hide one that is (with 2f+1 answering). None when fewer than f+1 answer."""
    good = [s for s in statuses if isinstance(s, pb.ReplicaStatus)]
    if len(good) < f + 1:
        return None
    count = Counter(site for s in good for site in set(s.silent_sites))
    return {site for site, k in count.items() if k >= f + 1}


def agreed_status(statuses: list[pb.ReplicaStatus | str], f: int) -> dict[str, int]:
    """Fields of ReplicaStatus that f+1 replicas report identically (view, primary, ...)."""
    out = {}
    good = [s for s in statuses if isinstance(s, pb.ReplicaStatus)]
    for name in ("view", "primary", "last_executed", "last_committed", "stable_checkpoint",
                 "round", "allocations"):
        value, k = Counter(getattr(s, name) for s in good).most_common(1)[0] if good \
            else (None, 0)
        if k >= f + 1:
            out[name] = value
    return out
