"""The table of ``agora jobs`` (and the web view's jobs): per job and task the outcome, the
instances' states, where they run or ran and how they ended (from the runs' folders on this
machine), and why work waits (``deploy/waiting.py``)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

STATE_NAMES = {0: "waiting", 1: "open", 2: "running", 3: "done", 4: "gave up"}


def exit_said(code) -> str:
    """An exit code as a person reads it: a negative one is the signal that ended the
    process (a probe: cancelled and timed-out runs read "exit code -15")."""
    if isinstance(code, int) and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exit code {code}"


def shown(text: str) -> str:
    """``text`` (a reason a site or a user wrote) as a terminal shows it harmlessly: control
    characters written as escapes -- a cancel reason holding an escape sequence cleared the
    operator's screen and printed a made-up line (a probe)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def padded(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` terminal columns: a wide character (CJK) takes two,
    and ``:<20`` counted it as one (a probe: the jobs table went out of line)."""
    import unicodedata

    cols = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - cols)


def job_rows(view, nodes: list[str], out: Path | None, only: str | None = None,
             files: dict | None = None, reader_site: str | None = None,
             cluster=None) -> list[dict]:
    """Per job, per task: outcome, instance states, where they run; per instance too.
    ``files``: a cache, kept by the caller between calls (the web view), of what was read
    from run folders that will not change -- a run's start, a finished run's end.
    ``reader_site``: a site's client reads: the run folders on this machine fill in its own
    jobs only (another site's job shows what the coordinator lets a site see -- never where
    an instance ran or how it ended; a probe saw them merged in from local folders).
    ``cluster``: the nodes' sizes, for why open instances wait (``deploy/waiting.py``)."""
    from agora.agents.ledger_codec import FOREIGN_NODE
    from agora.deploy.run_folders import TaskEnds, run_started
    from agora.protos.convert import job_from_proto

    def cached(key, read):
        if files is None:
            return read()
        if key not in files:
            found = read()
            if not found:
                return found                   # not written yet: look again next time
            if len(files) > 200_000:
                files.clear()
            files[key] = found
        return files[key]

    from agora.deploy.waiting import NodeRoom, why_waiting

    room = None
    rows = []
    for rec in view.jobs:
        if only is not None and rec.job.id != only:
            continue
        job = job_from_proto(rec.job, "job")
        folders = out if reader_site is None or job.origin == reader_site else None
        tasks = []
        outcomes = {t.id: tr.outcome for t, tr in zip(job.tasks, rec.tasks)}
        for t, tr in zip(job.tasks, rec.tasks):
            waits = None
            if tr.outcome == "waiting":
                waits = why_waiting(t.after, outcomes)
            elif tr.outcome == "open" and cluster is not None and 1 in tr.states:
                room = room or NodeRoom(view, cluster)
                waits = room.why_open(t.demand)
            place = {p.instance: p for p in tr.running}
            fails = dict(zip(tr.failed_instance, tr.failed_attempts))
            last_end = TaskEnds(folders, job.id, t.id, files)
            inst = []
            for i, s in enumerate(tr.states):
                row = {"instance": i, "state": STATE_NAMES.get(s, str(s)),
                       "failed_attempts": fails.get(i, 0)}
                if i in place and place[i].node == FOREIGN_NODE:   # a site's view
                    row.update(node="(another site)", site="", run=place[i].version)
                elif i in place:
                    p = place[i]
                    row.update(node=nodes[p.node], site=nodes[p.node].split("/")[0],
                               run=p.version)
                    started = cached(("start", p.node, job.id, t.id, i, p.version),
                                     lambda: run_started(folders, nodes[p.node], job.id,
                                                         t.id, i, p.version))
                    if started is not None:
                        row["since"] = started
                if s in (3, 4) or fails.get(i):
                    row.update(last_end(i))
                inst.append(row)
            tasks.append({"task": t.id, "outcome": tr.outcome,
                          "state": task_state(tr.outcome, inst), "reason": tr.reason,
                          "instances": inst, **({"waits": waits} if waits else {})})
        # ``state``: the outcome, or "running" while a pending job or a task has a run
        # (a probe: --json said "pending" / "open" where the table says running)
        rows.append({"job": job.id, "origin": job.origin, "outcome": rec.outcome,
                     "state": "running" if rec.outcome == "pending" and any(
                         t["state"] == "running" for t in tasks) else rec.outcome,
                     "reason": rec.reason, "tasks": tasks, **_deadline(job, rec)})
    return rows


def _deadline(job, rec) -> dict:
    """A job's deadline and how late it is (a probe: a missed deadline showed nowhere):
    ``late_s`` past it -- at its completion, or now while it is pending."""
    if job.deadline is None:
        return {}
    done = rec.completion if rec.HasField("completion") else None
    at = done if done is not None else (time.time() if rec.outcome == "pending" else None)
    late = None if at is None or at <= job.deadline else at - job.deadline
    return {"deadline": job.deadline, **({"late_s": round(late, 3)} if late else {})}


def task_state(outcome: str, instances: list[dict]) -> str:
    """What the table says of a task: its outcome, or "running" while an instance of it
    runs -- also once it failed or was cancelled with the job (its running instances finish;
    the outcome is said on the line below: a probe read "cancelled" beside "2 running")."""
    return "running" if any(i["state"] == "running" for i in instances) else outcome


def print_jobs(rows: list[dict], *, per_instance: bool) -> None:
    print(f"{'JOB':<20} {'TASK':<14} {'STATE':<13} {'INSTANCES':<30} WHERE")
    for r in rows:
        for t in r["tasks"]:
            counts: dict[str, int] = {}
            where: dict[str, int] = {}
            for i in t["instances"]:
                counts[i["state"]] = counts.get(i["state"], 0) + 1
                node = i["node"] if i["state"] == "running" else i.get("ran_on")
                if node:
                    where[node] = where.get(node, 0) + 1
            summary = ", ".join(f"{n} {s}" for s, n in counts.items())
            place = ", ".join(f"{n} x{k}" if k > 1 else n for n, k in where.items())
            state = t.get("state") or task_state(t["outcome"], t["instances"])
            print(f"{padded(r['job'], 20)} {padded(t['task'], 14)} {state:<13} {summary:<30} "
                  f"{place}")
            why = t.get("reason") or ""
            if t["outcome"] in ("failed", "unschedulable", "cancelled") and why \
                    and why not in (r["reason"] or ""):
                print(f"{'':<20} {'':<14} -> {t['outcome']}: {shown(why)}")   # e.g. the job failed
            if t.get("waits"):
                print(f"{'':<20} {'':<14} -> {t['waits']}")
            if per_instance:
                for i in t["instances"]:
                    extra = ""
                    if i["state"] == "running":
                        since = (time.strftime("%H:%M:%S", time.localtime(i["since"]))
                                 if "since" in i else f"run {i['run']}")
                        extra = f"on {i['node']} since {since}"
                    elif "ran_on" in i:
                        took = (f", {i['last_end'] - i['last_start']:.1f} s"
                                if "last_start" in i and "last_end" in i else "")
                        extra = f"on {i['ran_on']}, {exit_said(i['exit_code'])}{took}"
                        reason = i.get("last_reason")
                        # the reason where it says more than the exit code (a probe: "exit
                        # code 7, 0.0 s (exit code 7)")
                        if reason and reason.strip() not in (f"exit code {i['exit_code']}",
                                                             exit_said(i["exit_code"])):
                            extra += f" ({shown(reason)})"
                    if i["failed_attempts"]:
                        extra += f" failed attempts {i['failed_attempts']}"
                    print(f"{'':<20} {'':<14}   [{i['instance']}] {i['state']:<9} {extra}")
        if r.get("late_s"):
            when = "completed" if r["outcome"] == "completed" else "is"
            print(f"{'':<20} -> {when} {r['late_s']:,.1f} s past its deadline")
        if r["outcome"] not in ("pending", "completed") and r["reason"]:
            left = sum(i["state"] == "running" for t in r["tasks"] for i in t["instances"])
            more = (f" ({left} instance(s) still running, to finish: agora cancel {r['job']} "
                    f"stops them)" if left and r["outcome"] == "failed" else "")
            print(f"{'':<20} -> {r['outcome']}: {shown(r['reason'])}{more}")
