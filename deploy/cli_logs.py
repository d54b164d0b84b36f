"""``agora logs JOB/TASK[/INSTANCE] [--follow] [--stderr]`` (wired in by ``cli_jobs``): the
output of each instance's latest run, read from the runs' folders an ``agora up`` keeps on
this machine (``run_folders``); ``--follow`` goes on until the runs end, and waits for a
task not started yet while its job is pending."""

from __future__ import annotations

import argparse
import json
import sys
import time

from agora.deploy.job_table import shown
from agora.deploy.service_client import OPERATOR, target


def cmd_logs(a: argparse.Namespace) -> int:
    # shown clipped: a probe's 100,000-character argument was echoed back whole
    said = (repr(a.what) if len(a.what) <= 80
            else f"{a.what[:60]!r}... ({len(a.what):,} characters)")
    parts = a.what.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"{said}; expected JOB/TASK or JOB/TASK/INSTANCE")
    job, task = parts[0], parts[1]
    from agora.agents.limits import ID_TEXT, id_problem

    for what, value in (("job", job), ("task", task)):
        if id_problem(value):      # '..' and the like would name other folders of runs/
            raise ValueError(f"{said}: {what} {id_problem(value)}; expected {ID_TEXT}")
    inst = None
    if len(parts) == 3:
        if not (parts[2].isascii() and parts[2].isdigit()):
            raise ValueError(f"{said}: instance {parts[2][:20]!r}; expected a number (0, 1, "
                             f"...)")
        inst = int(parts[2])
    if a.client != OPERATOR:      # a probe: --client was accepted and ignored
        raise ValueError(f"--client {a.client}: agora logs reads the runs' folders on this "
                         f"machine, as whoever may read them, not through the coordinator; "
                         f"expected no --client (a site reads its runs' logs on its own "
                         f"nodes)")
    t = target(a.config)
    if t.out is None:
        raise ValueError("agora logs reads the runs' folders of an agora up: pass its config "
                         "(--config), not a coordinator YAML")
    stream = "stderr" if a.stderr else "stdout"
    from agora.deploy.run_folders import latest_runs

    runs = latest_runs(t.out / "runs", job, task, inst)
    if not runs and a.follow and t.running():
        runs = _wait_for_a_run(t, job, task, inst, a.what)
    if not runs:
        why, bad = _why_no_run(t, job, task, inst) or (
            "not started yet, another job/task name, or its folders were removed: each node "
            "keeps its last keep_runs ended runs", True)
        said = f"no run of {a.what} under {t.out / 'runs'} ({why})"
        if bad:          # no such job, task or instance: bad input, exit 2
            raise ValueError(said)
        # a task that exists and never ran here (its job failed or was cancelled first), or
        # whose runs were removed: nothing to show, not bad input (a probe: exit 2)
        print(f"agora logs: {said}", file=sys.stderr)
        return 1
    readers = {k: _LogReader(f / stream) for k, f in runs.items()}
    seen = dict(runs)       # every run followed: a retry's replaces its instance's in runs
    checked = 0.0
    restarting = False
    last: list = [None]       # the run whose output was written last (its header said)
    while True:
        _show(readers, seen, runs, job, task, a.json, last=last)
        if not a.follow or all((f / "end.json").exists() for f in runs.values()):
            offsets = {k: r.offset for k, r in readers.items()}
            _say_why_silent(runs, offsets, stream, f"{job}/{task}")
            if a.follow:       # followed to their end: how it went (a probe: a job cancelled
                return _say_how_ended(runs, offsets, f"{job}/{task}")   # mid-run: exit 0)
            return 0
        if time.monotonic() - checked >= SERVING_CHECK_S:
            # a probe: after agora down, the runs it cut short never get an end, and
            # --follow waited for one for good
            checked = time.monotonic()
            serving = t.serving()               # read once (its files, its keeper's pid)
            if not serving and t.running():
                # its keeper starts it again (a probe: --follow ended at a restart): the
                # runs it cut short run again, as new runs followed below
                if not restarting:
                    print("agora logs: the service is starting again; following on (the "
                          "runs it cut short run again)", file=sys.stderr, flush=True)
                restarting = True
            elif not serving:
                _show(readers, seen, runs, job, task, a.json, final=True, last=last)
                _say_why_silent(runs, {k: r.offset for k, r in readers.items()}, stream,
                                f"{job}/{task}")
                open_runs = sum(not (f / "end.json").exists() for f in runs.values())
                if not open_runs:          # they ended meanwhile (a review: "0 run(s)")
                    return 0
                print(f"agora logs: no agora up is running: {open_runs} run(s) of {job}/{task} "
                      f"have no end (cut short if it stopped while they ran: agora up "
                      f"reports them lost, and runs them again if their job goes on)",
                      file=sys.stderr)
                return 1
            else:
                restarting = False
        time.sleep(0.5)
        runs = latest_runs(t.out / "runs", job, task, inst) or runs
        if any(k not in readers for k in runs):
            # what the runs a retry replaced wrote last, before the retry's notice (a probe:
            # the notice came before the first run's last line)
            _show(readers, seen, runs, job, task, a.json, last=last)
        for k, f in runs.items():
            if k in readers:
                continue
            if any(i == k[0] for i, _run in readers):
                # a retry, or a run again after a restart (a probe: following a task that
                # failed once and was retried crashed on the first run's folder)
                print(f"agora logs: {job}/{task}/{k[0]} runs again (run {k[1]}); its output "
                      f"follows", file=sys.stderr, flush=True)
            readers[k], seen[k] = _LogReader(f / stream), f


SERVING_CHECK_S = 3.0
"""``agora logs --follow`` looks this often whether the service still runs"""


def _show(readers: dict, seen: dict, runs: dict, job: str, task: str, as_json: bool,
          final: bool = False, last: list | None = None) -> None:
    """What each run of ``seen`` wrote since the last look (``final``: all of it, a character
    cut at the end too, as for an ended run, or one a later run of its instance replaced:
    not in ``runs``, the latest of each instance). With more than one run, a header names
    the run before its output, when it is not the one written last (``last[0]``)."""
    last = last if last is not None else [None]
    for (i, run), reader in sorted(readers.items()):
        folder = seen[(i, run)]
        done = final or (i, run) not in runs or (folder / "end.json").exists()
        for text in reader.chunks(final=done):
            if len(seen) > 1 and not as_json and last[0] != (i, run):
                sys.stdout.write(f"==> {job}/{task}/{i} (run {run}) <==\n")
            last[0] = (i, run)
            if as_json:
                print(json.dumps({"instance": i, "run": run, "text": _shown(text)}))
            else:
                _write_exact(text)
            sys.stdout.flush()


def _why_no_run(t, job: str, task: str, inst: int | None) -> tuple[str, bool] | None:
    """Why ``job/task[/inst]`` has no run, as the schedule says (a probe: one vague line for
    a task that never will run, no such task, and an instance past the task's), and whether
    that is bad input (no such job, task or instance); None when the schedule cannot be
    read or says nothing more."""
    from agora.deploy import cli_jobs

    try:
        view, _label = cli_jobs._ledger_view(t, OPERATOR, None)
    except Exception:  # noqa: BLE001 - the generic reason stands
        return None
    rec = next((r for r in view.jobs if r.job.id == job), None)
    if rec is None:
        return f"the schedule has no job {job!r}", True
    pt = next((x for x in rec.job.tasks if x.id == task), None)
    if pt is None:
        names = ", ".join(x.id for x in rec.job.tasks[:12])
        return f"job {job!r} has no task {task!r}; its tasks: {names}", True
    if inst is not None and inst >= pt.instances:
        return (f"task {job}/{task} has {pt.instances} instance(s): 0..{pt.instances - 1}",
                True)
    if rec.outcome == "completed":
        return ("the job completed; its runs' folders were removed (each node keeps its "
                "last keep_runs ended runs) or are on another machine", False)
    if rec.outcome not in ("pending", ""):
        return (f"the job {rec.outcome}" + (f" ({shown(rec.reason)})" if rec.reason else "")
                + ": this task never ran here", False)
    return None


def _wait_for_a_run(t, job: str, task: str, inst: int | None, what: str,
                    poll_s: float = 0.5, check_s: float = 3.0) -> dict:
    """``agora logs --follow`` of a task that has not started: wait for its first run while
    its job is pending and the service serves (a probe: it exited 2 at once, and following
    a downstream task meant polling by hand); {} when it will not run (the job ended, no such
    job or task) or the service stopped."""
    from agora.coordinator.client import CoordinatorError
    from agora.deploy import cli_jobs
    from agora.deploy.run_folders import latest_runs
    from agora.deploy.service_client import NotRunning

    print(f"agora logs: waiting for {what} to start (agora jobs --job {job} says why it "
          f"waits; Ctrl-C stops)", file=sys.stderr, flush=True)
    checked = 0.0
    while True:
        runs = latest_runs(t.out / "runs", job, task, inst)
        if runs:
            return runs
        if time.monotonic() - checked >= check_s:
            checked = time.monotonic()
            if not t.running():       # stopped, not starting again
                return {}
            try:
                view, _label = cli_jobs._ledger_view(t, OPERATOR, None)
            except (CoordinatorError, NotRunning):   # replicas restarting: look again
                time.sleep(poll_s)
                continue
            rec = next((r for r in view.jobs if r.job.id == job), None)
            if rec is None or rec.outcome != "pending" or all(
                    pt.id != task for pt in rec.job.tasks):
                return latest_runs(t.out / "runs", job, task, inst)   # one last look
        time.sleep(poll_s)


def _write_exact(text: str) -> None:
    """The bytes the run wrote (a probe: bytes that are no UTF-8 came out as U+FFFD)."""
    data = text.encode("utf-8", "surrogateescape")
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(data.decode("utf-8", "replace"))
        return
    sys.stdout.flush()
    out.write(data)
    out.flush()


def _shown(text: str) -> str:
    """``text`` for JSON: bytes that are no UTF-8 as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _LogReader:
    """A run's output read on from where it was, in chunks of at most ``CHUNK`` bytes (a
    probe: a 50 MB log was read whole, 240 MB of memory), decoded as UTF-8 across chunk
    ends (a character split between two reads of ``--follow`` printed as two U+FFFD);
    bytes that are no UTF-8 are kept (``surrogateescape``) and written back as they were."""

    CHUNK = 1 << 20

    def __init__(self, path) -> None:
        import codecs

        self.path, self.offset = path, 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")

    def chunks(self, final: bool):
        """The text written since the last call; ``final``: the run ended (what is left of
        a split character is shown as U+FFFD)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                while True:
                    data = f.read(self.CHUNK)
                    self.offset += len(data)
                    end = final and len(data) < self.CHUNK
                    text = self.decoder.decode(data, final=end)
                    if text:
                        yield text
                    if len(data) < self.CHUNK:
                        return
        except FileNotFoundError:
            return


def _say_how_ended(runs: dict, offsets: dict, what: str) -> int:
    """After ``--follow``: each run that wrote something and did not complete, on stderr
    with how it ended (the silent ones were said already); 1 if any did not complete."""
    from agora.deploy.run_folders import read_end

    ok = True
    for (i, run), folder in sorted(runs.items()):
        end = read_end(folder) or {}
        if end.get("kind") == "completed":
            continue
        ok = False
        if offsets.get((i, run)):
            how = shown(str(end.get("reason") or end.get("kind") or "no end recorded"))
            print(f"agora logs: {what}/{i} (run {run}) ended: {how}", file=sys.stderr)
    return 0 if ok else 1


def _say_why_silent(runs: dict, offsets: dict, stream: str, what: str) -> None:
    """A run that wrote nothing to ``stream``: why, on stderr -- a failed run's reason (a
    program that could not start, a bad ``cwd``), else that it completed or has not ended
    (a probe: a failed run said so, a completed or unended one printed nothing, exit 0)."""
    from agora.deploy.run_folders import read_end

    for (i, run), folder in sorted(runs.items()):
        if offsets.get((i, run)):
            continue
        end = read_end(folder)
        if end is None:
            how = "it has no end yet"
        elif end.get("kind") != "completed" and end.get("reason"):
            how = f"it ended: {shown(end['reason'])}"
        else:
            how = f"it ended: {shown(str(end.get('kind', 'no kind recorded')))}"
        print(f"agora logs: {what}/{i} (run {run}) wrote nothing to {stream}; {how}",
              file=sys.stderr)
