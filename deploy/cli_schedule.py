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
    from agora.coordinator.watch_merge import WatchRefused

    t = target(a.config)
    _cfg, client = cli_coordinator._client(a)
    seen: list[int] = []
    """the last version printed"""
    got = [a.since_version, 0, None]
    """where a watch opened again goes on from (the version of the last update received),
    how many counted updates were printed, and that update's (version, sub): the parts of a
    split update up to it are not printed again"""

    async def main(client, renewed: bool) -> None:
        async with client:
            if renewed:
                await _answering_again(client)
            else:
                await _check_answering(client)
            async for u in client.watch(got[0]):
                if got[2] is not None and (u.version, u.sub) <= got[2]:
                    continue                       # printed before the restart
                got[0], got[2] = u.version, (u.version, u.sub)
                if _printed(u, a.json):           # a counted update printed a line (a
                    got[1] += 1                    # probe: admissions and rounds counted too)
                    seen[:] = [u.version]
                if a.count is not None and got[1] >= a.count:
                    return

    async def watched() -> bool:
        """``main`` until it ends (True), or until the service stops (False): a probe's
        watches went on silently for good after agora down, and missed the updates once it
        ran again. While its keeper starts it again the watch waits, then goes on at the
        service's new addresses after the last update it received (a probe: it ended at a
        restart)."""
        current, renewed = client, False
        while True:
            task = asyncio.ensure_future(main(current, renewed))
            try:
                while True:
                    await asyncio.wait({task}, timeout=SERVING_CHECK_S)
                    if task.done():
                        task.result()
                        return True
                    if not await asyncio.to_thread(t.serving):   # off the loop: it may
                        break                                      # connect
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            current, renewed = await _served_again(a, t), True
            if current is None:
                return False

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


def _printed(u, as_json: bool) -> bool:
    """Print update ``u``'s allocations and changes; whether it had any."""
    from agora.deploy.api import allocation_dict

    for x in u.allocations:
        if as_json:
            print(json.dumps({"version": u.version, "allocated": allocation_dict(x)}),
                  flush=True)
        else:
            print(f"{u.version:>8}  allocated {x.job_id}/{x.task_id} "
                  f"[{x.instance_begin}..{x.instance_end - 1}] at {x.site} ({x.node})",
                  flush=True)
    for c in u.changes:
        if as_json:
            print(json.dumps({"version": u.version, c.kind: {
                "job": c.job_id, "task": c.task_id, "site": c.site,
                "instances": [c.instance_begin, c.instance_end]}}), flush=True)
        else:
            print(f"{u.version:>8}  {c.kind} {c.job_id}/{c.task_id} "
                  f"[{c.instance_begin}..{c.instance_end - 1}] at {c.site}", flush=True)
    return bool(u.allocations or u.changes)


RESTART_WAIT_S = 120.0
"""How long a watch waits for a restarted service's replicas to answer once it serves"""


async def _served_again(a: argparse.Namespace, t):
    """A client of the service once its keeper started it again (said once, on stderr);
    None once nothing runs or starts it."""
    from agora.deploy.service_client import NotRunning

    said = False
    while True:
        if await asyncio.to_thread(t.serving):
            try:
                return (await asyncio.to_thread(cli_coordinator._client, a))[1]
            except NotRunning:           # it stopped again meanwhile: look again
                pass
        elif not await asyncio.to_thread(t.running):
            return None
        elif not said:
            print("agora schedule: the service is starting again; the watch goes on once "
                  "it serves", file=sys.stderr, flush=True)
            said = True
        await asyncio.sleep(SERVING_CHECK_S / 3)


async def _answering_again(client) -> None:
    """Wait until f+1 replicas of a restarted service answer (they replay their logs
    first); ``NotRunning`` after ``RESTART_WAIT_S``."""
    from agora.deploy.service_client import NotRunning

    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESTART_WAIT_S
    while True:
        try:
            return await _check_answering(client)
        except NotRunning:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(SERVING_CHECK_S / 3)
