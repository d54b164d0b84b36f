"""``agora schedule get`` and ``agora schedule watch`` (wired in by ``cli_coordinator``): the
committed schedule, as f+1 replicas agree -- live, or after a stop from the replicas' logs
(``get``); and its updates as they commit (``watch``), until ``--count`` updates, Ctrl-C,
or the service stops."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from agora.deploy import cli_coordinator
from agora.deploy.cli_coordinator import _check_answering
from agora.deploy.service_client import target

SERVING_CHECK_S = 3.0
"""``agora schedule watch`` looks this often whether the service still runs"""


def cmd_schedule_get(a: argparse.Namespace) -> int:
    from agora.deploy.api import schedule

    selected = a.site or a.job or a.task or a.since_version is not None
    if not selected and a.at_version is not None and a.at_version < 0:
        raise ValueError(f"--version: got {a.at_version}; expected a version >= 0")
    answer = schedule(config=a.config, site=a.site, job=a.job, task=a.task,
                      since_version=a.since_version, client=a.client, keys=a.keys)
    rows = [r for r in answer["allocations"]
            if a.at_version is None or r["version"] <= a.at_version]
    if a.json:
        print(json.dumps({"version": answer["version"], "source": answer["source"],
                          "allocations": rows}, indent=1))
        return 0
    src = answer["source"]
    if src.startswith("offline (") and src.endswith(")"):   # its own line: nested in the
        print(f"offline: {src[len('offline ('):-1]}")        # first, it read badly (a probe)
        src = "offline"
    print(f"schedule version {answer['version']} ({src}): {len(rows)} allocations")
    print(f"{'version':>8}  {'job':<16} {'task':<12} {'instances':>11}  {'site':<12} node")
    for r in rows:
        b, e = r["instances"]
        print(f"{r['version']:>8}  {r['job']:<16} {r['task']:<12} {f'{b}..{e - 1}':>11}  "
              f"{r['site']:<12} {r['node']}")
    return 0


def cmd_schedule_watch(a: argparse.Namespace) -> int:
    from agora.deploy.api import allocation_dict

    t = target(a.config)
    _cfg, client = cli_coordinator._client(a)
    seen: list[int] = []
    """the last version printed"""

    async def main():
        n = 0
        async with client:
            await _check_answering(client)
            async for u in client.watch(a.since_version):
                for x in u.allocations:
                    if a.json:
                        print(json.dumps({"version": u.version,
                                          "allocated": allocation_dict(x)}), flush=True)
                    else:
                        print(f"{u.version:>8}  allocated {x.job_id}/{x.task_id} "
                              f"[{x.instance_begin}..{x.instance_end - 1}] at {x.site} "
                              f"({x.node})", flush=True)
                for c in u.changes:
                    if a.json:
                        print(json.dumps({"version": u.version, c.kind: {
                            "job": c.job_id, "task": c.task_id, "site": c.site,
                            "instances": [c.instance_begin, c.instance_end]}}), flush=True)
                    else:
                        print(f"{u.version:>8}  {c.kind} {c.job_id}/{c.task_id} "
                              f"[{c.instance_begin}..{c.instance_end - 1}] at {c.site}",
                              flush=True)
                if u.allocations or u.changes:    # a counted update printed a line (a
                    n += 1                         # probe: admissions and rounds counted too)
                    seen[:] = [u.version]
                if a.count is not None and n >= a.count:
                    return

    from agora.coordinator.watch_merge import WatchRefused

    async def watched() -> bool:
        """``main`` until it ends (True), or until the service stops (False): a probe's
        watches went on silently for good after agora down, and missed the updates once it
        ran again."""
        task = asyncio.ensure_future(main())
        try:
            while True:
                await asyncio.wait({task}, timeout=SERVING_CHECK_S)
                if task.done():
                    task.result()
                    return True
                if not await asyncio.to_thread(t.serving):    # off the loop: it may connect
                    return False
        finally:
            task.cancel()

    try:
        if asyncio.run(watched()):
            return 0
    except WatchRefused as e:       # compacted away, or far past the schedule
        print(f"agora schedule: --since-version: {e}", file=sys.stderr)
        return 2
    # (Ctrl-C and SIGTERM end it as they end every command: one line, 130 or 143 -- a
    # probe: it exited 0 without a word, as if its --count was done)
    resume = f" (--since-version {seen[0] + 1} goes on from there)" if seen else ""
    print(f"agora schedule: the service stopped; the watch ended{resume}", file=sys.stderr)
    return 1
