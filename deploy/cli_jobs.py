"""The commands people run against a live Agora (wired in by ``deploy/cli.py``):

    agora submit JOBS.jsonl [--follow]      # prints the job ids; --follow waits for their end
    agora jobs [--job J]                    # per job and task (per instance with --job)
    agora logs JOB/TASK[/INSTANCE] [--follow] [--stderr]
    agora cancel JOB [--reason TEXT]

Each takes ``--config`` (an ``agora up`` config, default ``deploy/configs/up.yaml``, or a
coordinator YAML) and ``--json``. Submissions and cancels are ordered by the coordinator and
signed with the ``--client``'s key (default the operator's). ``agora jobs`` after
``agora down`` reads the replicas' logs on disk (and says so).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

from agora.agents.workloads.yamlmarks import describe
from agora.deploy.arg_types import _number
from agora.deploy.cli_logs import cmd_logs
from agora.deploy.job_table import job_rows, print_jobs, shown
from agora.deploy.service_client import (DEFAULT_UP_CONFIG, OPERATOR, checked_reason, run_live,
                                         target)


def _common(p: argparse.ArgumentParser, *, client: bool = True) -> None:
    p.add_argument("--config", default=DEFAULT_UP_CONFIG,
                   help="an agora up config (default: %(default)s) or a coordinator YAML")
    if client:
        p.add_argument("--client", default=OPERATOR, help="client id to sign as")
        p.add_argument("--keys", default=None, help="key file (default: the coordinator's)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def register(sub) -> None:
    s = sub.add_parser("submit", help="submit jobs (JSON Lines, each task with a run) to a "
                       "running Agora")
    s.add_argument("jobs", help="jobs .jsonl (agents/workloads/native.py)")
    s.add_argument("--follow", action="store_true", help="wait until they end, printing "
                   "each end")
    s.add_argument("--timeout", type=_number(gt=0, le=1e9), default=None, metavar="S",
                   help="with --follow: give up after S seconds (exit 1)")
    _common(s)
    s.set_defaults(fn=cmd_submit)
    j = sub.add_parser("jobs", help="jobs and their task instances (pending, running where, "
                       "completed, failed, cancelled)")
    j.add_argument("--job", help="one job, per instance")
    _common(j)
    j.set_defaults(fn=cmd_jobs)
    lg = sub.add_parser("logs", help="the output of a task's instances")
    lg.add_argument("what", metavar="JOB/TASK[/INSTANCE]")
    lg.add_argument("--stderr", action="store_true", help="standard error instead of output")
    lg.add_argument("--follow", action="store_true", help="go on printing until it ends")
    _common(lg)
    lg.set_defaults(fn=cmd_logs)
    c = sub.add_parser("cancel", help="cancel a job: nothing more of it starts, running "
                       "instances are killed")
    c.add_argument("job")
    c.add_argument("--reason", default="", help="kept with the job's outcome (a job that "
                   "failed already keeps its failure as its reason)")
    _common(c)
    c.set_defaults(fn=cmd_cancel)


# ---- submit --------------------------------------------------------------------------------
def refusal_line(path, line: int | None, job_id: str, reason: str) -> str:
    """A job the coordinator refused, as the file's line and the job's own field: the
    reason's ``command.submit_jobs.jobs[i]`` counts jobs of the request (sorted by arrival,
    in chunks), not lines of the file (a probe: the job on line 2 was "jobs[3]")."""
    m = re.match(r"command\.submit_jobs\.jobs\[\d+\]\.?([^:]*): (.*)", reason, re.S)
    what = (f"job {job_id!r} refused: field '{m.group(1)}': {m.group(2)}" if m and m.group(1)
            else f"job {job_id!r} refused: {m.group(2) if m else reason}")
    return f"{path}:{line}: {what}" if line is not None else f"{path}: {what}"


SHOWN_PROBLEMS = 20
"""bad lines of a jobs file ``agora submit`` names before it refuses the file"""


def cmd_submit(a: argparse.Namespace) -> int:
    from agora.deploy.api import prepare_jobs
    from agora.deploy.submission import SubmissionCut, SubmissionRefused, submit_chunks

    if a.timeout is not None and not a.follow:
        raise ValueError(f"--timeout {a.timeout:g} without --follow: it is how long --follow "
                         f"waits; expected --follow --timeout S, or no --timeout")
    t = target(a.config)
    # the file is read and checked first (syntax, ids, DAG, bounds, runs, against the
    # cluster), so a bad file is told before -- and without -- a running Agora
    lines: dict[str, int] = {}
    problems: list = []
    jobs = prepare_jobs(a.jobs, t.load_cluster(), lines, problems)
    if len(problems) == 1:
        raise problems[0]
    if problems:    # every bad line at once (a probe: one a try), and nothing submitted
        for p in problems[:SHOWN_PROBLEMS]:
            print(f"agora submit: {p}", file=sys.stderr)
        more = len(problems) - SHOWN_PROBLEMS
        raise ValueError((f"and {more} more bad line(s); " if more > 0 else "")
                         + f"nothing submitted: a file is submitted whole once its "
                           f"{len(problems)} bad line(s) are mended (jobs the coordinator "
                           f"refuses are refused one by one, the others submitted)")
    if not t.serving() or t.coordinator is None:
        raise t.not_running()

    def say_refused(rejected) -> None:
        for job_id, reason in rejected:
            print(f"agora submit: {refusal_line(a.jobs, lines.get(job_id), job_id, reason)}",
                  file=sys.stderr)

    serving_at = [list(t.coordinator.replicas)]

    def renewed():
        """(client, config) of the service once it serves at other addresses -- a keeper's
        restart puts its replicas on new ports (a probe: --follow went on asking the old ones
        and never told the ends) -- else None."""
        now = target(a.config)
        if not now.serving() or now.coordinator is None or \
                list(now.coordinator.replicas) == serving_at[0]:
            return None
        serving_at[0] = list(now.coordinator.replicas)
        return now.client(a.client, a.keys), now.coordinator

    async def go(client):
        accepted, rejected = await submit_chunks(client, jobs)
        if a.follow and not a.json:
            # what was submitted is said at once: a probe saw nothing until the end
            say_refused(rejected)
            if accepted:
                more = f" and {len(accepted) - 10} more" if len(accepted) > 10 else ""
                print(f"submitted {len(accepted)} job(s): {', '.join(accepted[:10])}{more}; "
                      f"following until they end (Ctrl-C stops following, not the jobs)",
                      flush=True)
        ends = await _follow(client, t.coordinator, accepted, a, t.running, renewed) \
            if a.follow and accepted else None
        return accepted, rejected, ends

    try:
        accepted, rejected, ends = run_live(t, go, a.client, a.keys)
    except (SubmissionCut, SubmissionRefused) as e:
        if not a.json:
            say_refused(e.rejected)     # the jobs refused by name, each with its line
            raise
        print(json.dumps({"submitted": e.accepted, "rejected": [
            {"job": j, "reason": r} for j, r in e.rejected], "not_submitted": e.missing,
            "not_known": e.unknown, "error": str(e)}, indent=1))
        return 2 if isinstance(e, SubmissionRefused) else 1
    if a.json:
        print(json.dumps({"submitted": accepted, "rejected": [
            {"job": j, "reason": r} for j, r in rejected], "ends": ends,
            "unfinished": [j for j in accepted if ends is not None and j not in ends]},
            indent=1))
    elif not a.follow:                  # (with --follow, said before following)
        say_refused(rejected)
        for job_id in accepted:
            print(job_id)
    if rejected:     # bad input, as the file's own errors (a probe: exit 1 where the docs
        return 2     # say 2); the jobs not refused were submitted and run
    if ends is None:
        return 0
    # given up (--timeout) with jobs still running is not success either
    finished = len(ends) == len(accepted)
    return 0 if finished and all(e["outcome"] == "completed" for e in ends.values()) else 1


async def _follow(client, config, job_ids: list[str], a, serving=lambda: True,
                  renewed=lambda: None) -> dict:
    """Until every job of ``job_ids`` ended (or ``serving()`` says the service stopped);
    prints each end; {job: {outcome, ...}}. ``renewed()``: a (client, config) to follow
    with instead, once the service serves elsewhere (restarted), else None."""
    from agora.coordinator.ledger_follow import follow_ledger

    state: dict = {"ledger": None}
    ends: dict[str, dict] = {}
    t0 = checked = time.time()
    task = asyncio.ensure_future(follow_ledger(client, config, state))
    own = None                  # a client opened here, after a restart
    try:
        while len(ends) < len(job_ids):
            ledger = state["ledger"]
            if ledger is not None:
                gone = state.get("gone", {})
                for j in job_ids:
                    if j in ends:
                        continue
                    js = ledger.jobs.get(j)
                    if js is not None:
                        if js.outcome == "pending":
                            continue
                        outcome, reason = js.outcome, js.reason
                    elif j in gone:          # ended, and compacted before it was looked at
                        outcome, reason = gone[j]
                    else:
                        continue
                    ends[j] = {"outcome": outcome, "reason": reason,
                               "seconds": round(time.time() - t0, 1)}
                    # a failed job's running instances finish (docs/running-jobs.md): say
                    # so -- a probe took the end for resources freed while 9 still ran
                    left = sum(len(ts.placements) for ts in js.tasks) if js is not None else 0
                    if left:
                        ends[j]["still_running"] = left
                    if not a.json:
                        why = f": {shown(reason)}" if reason else ""
                        more = (f"; {left} instance(s) of it still running, to finish "
                                f"(agora cancel {j} stops them)" if left else "")
                        print(f"{j}: {outcome} after {ends[j]['seconds']:.1f} s{why}{more}",
                              flush=True)
            if len(ends) < len(job_ids) and time.time() >= checked + 5.0:
                checked = time.time()
                # a probe: it waited out --timeout, then said "still running"; looked at
                # off the loop (a bare coordinator YAML's check connects to its replicas)
                if not await asyncio.to_thread(serving):
                    left = [j for j in job_ids if j not in ends]
                    print(f"agora submit: the service stopped while {len(left)} job(s) had "
                          f"not ended ({', '.join(left[:10])}"
                          f"{f' and {len(left) - 10} more' if len(left) > 10 else ''}); "
                          f"started again, it resumes them", file=sys.stderr)
                    break
                fresh = await asyncio.to_thread(renewed)
                if fresh is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    if own is not None:
                        await own.close()
                    own, config = fresh
                    state = {"ledger": None}
                    task = asyncio.ensure_future(follow_ledger(own, config, state))
            if a.timeout is not None and time.time() - t0 > a.timeout:
                if not a.json:
                    left = [j for j in job_ids if j not in ends]
                    more = f" and {len(left) - 10} more" if len(left) > 10 else ""
                    print(f"agora submit: {len(left)} job(s) still running after "
                          f"{a.timeout:g} s: {', '.join(left[:10])}{more} (agora jobs --job "
                          f"ID follows one; agora cancel ID stops it)", file=sys.stderr)
                break
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        if own is not None:
            await asyncio.gather(task, return_exceptions=True)
            await own.close()
    return ends


# ---- jobs ----------------------------------------------------------------------------------
def job_rows_for(t, job: str | None, client: str, keys: str | None):
    """(rows, LedgerView, source label) of ``agora jobs`` of the service ``t`` (a ``Target``;
    ``job``: that one, per instance)."""
    view, label = _ledger_view(t, client, keys)
    cluster = t.coordinator.load_cluster()
    nodes = [n.name for n in cluster.nodes]
    from agora.coordinator.schedule_rules import site_of_client

    rows = job_rows(view, nodes, t.out, only=job, reader_site=site_of_client(client),
                    cluster=cluster)
    if job is not None and not rows:     # asked for one job: not an empty table
        gone = (f", or it finished and was compacted away with "
                f"{compacted_count(view):,} other older finished jobs (retain_finished_jobs)"
                if compacted_count(view) else "")
        raise ValueError(f"--job {describe(job)}: no such job in the schedule (version "
                         f"{view.version}, {label}){gone}; agora jobs lists them all")
    return rows, view, label


def compacted_count(view) -> int:
    """Finished jobs the schedule no longer lists (coordinator/compaction.py)."""
    return sum(c.count for c in view.compaction.jobs)


def cmd_jobs(a: argparse.Namespace) -> int:
    t = target(a.config)
    rows, view, label = job_rows_for(t, a.job, a.client, a.keys)
    gone = {c.name: c.count for c in view.compaction.jobs}
    if a.json:
        print(json.dumps({"version": view.version, "source": label, "jobs": rows,
                          "compacted": gone}, indent=1))
        return 0
    print(f"{label}: schedule version {view.version}, {len(view.jobs)} jobs" + (
        f" ({sum(gone.values()):,} older finished jobs compacted away: "
        f"{', '.join(f'{n:,} {k}' for k, n in sorted(gone.items()))}; retain_finished_jobs)"
        if gone else ""))
    print_jobs(rows, per_instance=a.job is not None)
    if label != "live" and (pid := t.restarting()) is not None:
        print(f"(agora up, pid {pid}, is starting its service again: this is what the logs "
              f"held; retry for the live schedule)")
    if label != "live" and any(i["state"] == "running" for r in rows for task in r["tasks"]
                               for i in task["instances"]):
        # a probe read "running" after agora down had stopped them
        print("(offline: \"running\" is what ran when the service stopped; agora up reports "
              "how each ended, and places again what did not finish)")
    return 0


def _ledger_view(t, client_id: str, keys: str | None):
    """(LedgerView, where it came from): live when serving, else from the logs on disk."""
    if t.serving():
        async def go(client):
            return await client.ledger()
        return run_live(t, go, client_id, keys), "live"
    if t.coordinator is None:
        raise t.not_running()
    from agora.coordinator.offline import offline_ledger

    view, how = offline_ledger(t.coordinator)
    return view, f"offline ({how})"


# ---- cancel --------------------------------------------------------------------------------
def cmd_cancel(a: argparse.Namespace) -> int:
    reason = checked_reason(a.reason)
    t = target(a.config)

    from agora.coordinator.client import CoordinatorError

    async def go(client):
        try:
            return await client.cancel_job(a.job, reason)
        except CoordinatorError as e:
            if e.result is None:
                raise
            return e.result      # the schedule refused it: the job's problem, not a fault

    res = run_live(t, go, a.client, a.keys)
    if res.rejections:           # (exit 2, as agora jobs --job and logs for a bad job)
        r = res.rejections[0]
        raise ValueError(f"{r.field}: {r.reason}")
    if a.json:
        print(json.dumps({"cancelled": a.job, "version": res.version}))
    else:
        print(f"cancelled {a.job} at version {res.version}; its running instances are "
              f"being killed")
    return 0

