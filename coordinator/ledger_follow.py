"""Following the committed ledger as a client: a ledger query (the state at one version),
then the update stream from the next version, applied with the very transitions the
coordinator made (``agents.ledger_codec``). What ``agora up``'s progress line and
``agora submit --follow`` read."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from agora.agents.ledger_codec import apply_update, restore_ledger, start_position

log = logging.getLogger(__name__)

GONE_KEPT = 100_000
"""Compacted jobs whose outcome a follower remembers (``state['gone']``): one it waits for
(``agora submit --follow``) may be compacted before it looked."""


async def follow_ledger(client, config, state: dict, *, on_update=None,
                        on_view=None) -> None:
    """Keep ``state['ledger']``, ``['version']`` and ``['round']`` current (forever; cancel
    to stop); ``['compacted']`` counts the jobs the coordinator compacted away by outcome,
    and ``['gone']`` holds the (outcome, reason) of those compacted since it began.
    ``on_update(update)`` after each applied update, ``on_view(view)`` after each ledger
    query (``LedgerView``). A stream that fails is reopened from a fresh ledger query."""
    cluster = config.load_cluster()
    site_index = {s: i for i, s in enumerate(cluster.site_names)}
    node_index = {n.name: i for i, n in enumerate(cluster.nodes)}
    while True:
        try:
            view = await client.ledger()
            state["ledger"] = restore_ledger(view, site_index, len(node_index),
                                             cluster.faults.max_attempts)
            state["version"], state["round"] = view.version, view.round.round
            state["compacted"] = Counter({c.name: c.count for c in view.compaction.jobs})
            if on_view is not None:
                on_view(view)
            position = start_position(view)
            async for u in client.watch(since_version=view.version):
                if (u.version, u.sub) <= position:
                    continue
                position = (u.version, u.sub)
                ledger = state["ledger"]
                apply_update(ledger, u, site_index, node_index, compact=False)
                if u.compacted:      # finished jobs the coordinator let go, by outcome as
                    gone = state.setdefault("gone", {})  # this very update left them
                    for job_id in u.compacted:
                        js = ledger.jobs.get(job_id)
                        if js is not None:
                            state["compacted"][js.outcome] += 1
                            gone[job_id] = (js.outcome, js.reason)
                    while len(gone) > GONE_KEPT:
                        del gone[next(iter(gone))]
                    ledger.forget_jobs(set(u.compacted))
                state["version"], state["round"] = u.version, u.round.round
                if on_update is not None:
                    on_update(u)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the coordinator restarting, a view change
            log.info("following the ledger: %s; again in 1 s", e)
            await asyncio.sleep(1.0)


def ledger_summary(state: dict) -> dict:
    """Jobs by outcome (those compacted away too), running instances, round and version ({}
    before the first query)."""
    ledger = state.get("ledger")
    if ledger is None:
        return {}
    gone = state.get("compacted") or {}
    by = {"pending": 0, "running": 0, "done": gone.get("completed", 0), "failed": sum(
        n for k, n in gone.items() if k not in ("completed", "cancelled")),
        "cancelled": gone.get("cancelled", 0)}
    for js in ledger.jobs.values():
        if js.outcome == "pending":
            busy = any(ts.running for ts in js.tasks)
            by["running" if busy else "pending"] += 1
        elif js.outcome == "completed":
            by["done"] += 1
        elif js.outcome == "cancelled":
            by["cancelled"] += 1
        else:
            by["failed"] += 1
    by["instances_running"] = sum(ts.running for ts in ledger.tasks.values())
    by["round"], by["version"] = state["round"], state["version"]
    return by
