"""One run of an instance on a node: what to run (``RunRequest``, from the agent to the
node's runner), how it ended (``RunEnd``), its folder (``run_folder``: ``run.json``, ``pid``,
``stdout``, ``stderr``, ``end.json``), and the body of the Ray task that starts the command in
its own session, kills it at its timeout and records its end (``execute_run``). The runner
actor that schedules these is ``node_runner``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import quote

import ray

from agora.agents.cluster.run_account import (ENTER_FAILED, as_account, cannot_enter,
                                              cannot_start_as, run_account, run_environment,
                                              switches)
from agora.agents.cluster.run_groups import (kill_group, kill_strays, left_in_group,
                                            run_marker)
from agora.agents.process import (START_REPORT, bound_to_parent, cannot_start, holding,
                                  niced, nicer, start_failure)

MAX_LOG_BYTES = 16 << 30
"""bytes a run may write to its stdout and stderr together: past it (seen within a second,
``wait_fenced``) its process group is killed and it fails, saying so (a review: a run that
printed without end filled the disk its node shares with the replicas' logs)"""


@dataclass(frozen=True)
class RunRequest:
    """One instance to run (picklable; crosses from the agent to the runner)."""

    job: str
    task: str
    instance: int
    run_id: int
    """the committed version that placed it"""
    attempt: int
    """1 + the instance's failed attempts so far"""
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str | None
    timeout_s: float | None
    cpu: float
    """cores (Ray ``num_cpus``)"""
    mem_mib: int
    gpus: float
    site: str
    node: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.job, self.task, self.instance)


@dataclass
class RunEnd:
    """How a run ended, as the runner saw it."""

    job: str
    task: str
    instance: int
    run_id: int
    kind: str
    """completed | failed (exit code != 0, a timeout, a crash) | killed (asked to) | lost
    (the runner or its node went away under it)"""
    exit_code: int
    start: float
    end: float
    reason: str = ""
    ray_node: str = ""
    seq: int = 0
    """the runner's sequence number of this end (for ``ack``)"""

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.job, self.task, self.instance)


def run_folder(root: str | Path, node: str, job: str, task: str, instance: int,
               run_id: int) -> Path:
    """``<root>/<node>/<job>/<task>/<instance>-<run_id>`` with every name %-quoted (and
    '', '.' and '..', which no name or id may be, made folder names too: no name leaves its
    level; a quoted name longer than a file name may be is shortened, :func:`folder_name`)."""
    return (Path(root) / folder_name(node) / folder_name(job) / folder_name(task)
            / f"{instance}-{run_id}")


FOLDER_NAME_MAX = 200
"""Longest folder name a run's path uses, in bytes (file systems allow 255): a 128-character
id %-quotes to up to 1,152 bytes (a re-probe: a job id of 128 ':' never started; its start
failed "File name too long" and was sent again every second for good)."""


def folder_name(name: str) -> str:
    """``name`` %-quoted as one folder name. A quoted name over :data:`FOLDER_NAME_MAX` bytes
    is its first part and ``%~`` and the sha256 of ``name`` (``%~`` is no quoted text, so
    no other name gives it)."""
    q = quote(name, safe="")
    if q in ("", ".", ".."):
        return "%" + q.replace(".", "%2E")    # '%' alone is no quoted text: no collision
    if len(q) > FOLDER_NAME_MAX:
        head = q[:FOLDER_NAME_MAX - 66]
        cut = head.rfind("%", len(head) - 2)  # no escape cut in two
        head = head[:cut] if cut >= 0 else head
        return f"{head}%~{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()}"
    return q


def execute_run(req: RunRequest, folder: str, run_as: str | None = None,
                niceness: int = 0) -> dict:
    """The body of one run (a Ray task on the runner's node): start the command in its own
    session -- as user ``run_as`` when set (``run_account``) -- at ``niceness`` at least
    (``nicer``), wait for it (killing it at the timeout), and record its end in
    ``end.json``. The worker does not end with its raylet before the run is fenced
    (``process.holding``)."""
    with holding():
        return _execute_run(req, folder, run_as, niceness)


def _execute_run(req: RunRequest, folder: str, run_as: str | None, niceness: int = 0) -> dict:
    d = Path(folder)
    start = time.time()
    try:
        account = run_account(run_as)
    except ValueError as e:
        end = {"kind": "failed", "exit_code": 126, "start": start, "end": time.time(),
               "reason": str(e)}
        write_json(d / "end.json", end)
        return end
    env = run_environment(dict(os.environ), account)
    env.update(dict(req.env))
    env.update(AGORA_JOB=req.job, AGORA_TASK=req.task, AGORA_INSTANCE=str(req.instance),
               AGORA_SITE=req.site, AGORA_NODE=req.node, AGORA_ATTEMPT=str(req.attempt),
               AGORA_RUN=str(req.run_id),      # tells a run again after a restart (a probe)
               AGORA_RAY_NODE=ray.get_runtime_context().get_node_id(),
               AGORA_RUN_DIR=str(d.resolve()))
    if sys.platform.startswith("linux"):      # where the command starts from the launcher
        env[START_REPORT] = str(d / "start-failure")
    # every run writes in a folder of its own, ``work/``: the run folder holds the runner's
    # markers (``pid``, ``killed``, ``stopping``, ``end.json``), which a command writing
    # files of those names in its cwd forged (a review: a run that wrote ``killed`` ended
    # killed, reported lost and placed again for good)
    work = d / "work"
    work.mkdir(exist_ok=True)
    cwd = req.cwd or str(work)
    command, identity = bound_to_parent(req.argv), {"cwd": cwd}
    if switches(account):
        env.pop(START_REPORT, None)           # (the launcher's; not used here)
        # the run folder stays the runner's (its pid, end and kill markers are trusted)
        # and unlisted, its files the runner's alone (other runs run as the same user);
        # the run writes in a folder of its own, ``work/``, its user's
        d.chmod(0o711)
        for name in ("run.json", "stdout", "stderr"):
            (d / name).touch()
            (d / name).chmod(0o600)
        os.chown(work, account.uid, account.gid)
        command, identity = as_account(account, list(req.argv), cwd)
        why = cannot_enter(cwd, account)
        if why is not None:
            end = {"kind": "failed", "exit_code": ENTER_FAILED, "start": start,
                   "end": time.time(), "reason": f"cannot start in cwd {cwd!r}: {why}"}
            write_json(d / "end.json", end)
            return end
    kind, reason = "completed", ""
    with open(d / "stdout", "ab") as out, open(d / "stderr", "ab") as err:
        try:
            problem = (cannot_start_as(req.argv[0], env, cwd, account) if switches(account)
                       else cannot_start(req.argv[0], env, cwd))
            if problem is not None:
                raise problem
            started = niced(command, niceness)
            p = subprocess.Popen(started, env=env, stdout=out, stderr=err,
                                 stdin=subprocess.DEVNULL, start_new_session=True, **identity)
        except OSError as e:
            code = 127 if isinstance(e, FileNotFoundError) else 126
            end = {"kind": "failed", "exit_code": code, "start": start, "end": time.time(),
                   "reason": start_failure(req.argv[0], cwd, e)}
            write_json(d / "end.json", end)
            return end
        if started is command:       # no `nice` here: raised now (not with it: a second
            nicer(p.pid, niceness)   # raise, racing nice's own, gave 19 for 17)
        (d / "pid").write_text(str(p.pid))
        code, why = wait_fenced(p, req.timeout_s, over=lambda: (
            os.fstat(out.fileno()).st_size + os.fstat(err.fileno()).st_size > MAX_LOG_BYTES))
        if why == "timeout":
            kind, reason = "failed", f"timed out after {req.timeout_s:g} s"
        elif why == "output":
            kind, reason = "failed", (f"wrote more than {MAX_LOG_BYTES:,} bytes of output "
                                      f"(stdout and stderr)")
        elif why == "orphaned":   # its node's raylet died: the run was placed elsewhere
            return end_orphaned(d, code, start)
        if (d / "stopping").exists():         # the service stops (NodeRunner.shutdown):
            return {"kind": "lost", "exit_code": code, "start": start,   # no end: the
                    "end": time.time(), "reason": "the service stopped"}  # next start's
        # the exit, at once: this task dies with the runner that owns it, and the sweep
        # below takes milliseconds -- a runner killed then lost a completed run, which ran
        # again (a probe); a restarted runner ends the run from this record
        ended = {"kind": kind, "reason": reason, "exit_code": code, "start": start,
                 "end": time.time()}
        write_json(d / EXIT_RECORD, ended)
        # what the run left behind holds resources the schedule has given back: it ends
        # with the run -- in its process group (a review: a child with a cleaned
        # environment, ``env -i``, ran on), then in another session or group (``setsid``,
        # a daemon) by its ``AGORA_RUN_DIR``
        strays = left_in_group(p.pid)
        if strays:
            kill_group(p.pid)
        strays += kill_strays(run_marker(d))
    end = end_of(d, ended)
    if strays:
        end["strays_killed"] = strays
    write_json(d / "end.json", end)
    return end


FENCE_S = 1.0
"""how often a run's Ray worker looks whether its raylet (its parent) still lives"""


def wait_fenced(p: subprocess.Popen, timeout_s: float | None,
                parent: int | None = None, over=None) -> tuple[int, str | None]:
    """Wait for the run's command ``p``: (exit code, None), or -- its process group killed --
    (code, "timeout") past ``timeout_s``, or (code, "orphaned") once this process's parent
    (a Ray worker's: its raylet; ``parent``, default the parent now) is gone, or (code,
    "output") once ``over()`` (looked at every ``FENCE_S``) says it wrote too much. A probe: a
    node's raylet killed, Ray's workers on it lived on and so did their runs, which ran to
    the end beside the copies the schedule had placed elsewhere."""
    parent = os.getppid() if parent is None else parent
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        wait_s = FENCE_S if deadline is None else min(FENCE_S, deadline - time.monotonic())
        try:
            return p.wait(timeout=max(wait_s, 0.0)), None
        except subprocess.TimeoutExpired:
            pass
        why = ("timeout" if deadline is not None and time.monotonic() >= deadline else
               "orphaned" if os.getppid() != parent else
               "output" if over is not None and over() else None)
        if why is not None:
            kill_group(p.pid, leader=p)
            return p.wait(), why


def end_orphaned(d: Path, code: int, start: float) -> dict:
    """A run stopped because its node's raylet died (``wait_fenced``): what it started
    outside its process group is killed too (a re-probe: ``setsid`` helpers ran on to the end
    beside the copy placed elsewhere), and it is recorded lost."""
    end = {"kind": "lost", "exit_code": code, "start": start, "end": time.time(),
           "reason": "its node's raylet died under it; stopped here"}
    strays = kill_strays(run_marker(d))
    if strays:
        end["strays_killed"] = strays
    write_json(d / "end.json", end)
    return end


EXIT_RECORD = "exit.json"
"""a run's exit as soon as its command exited: kind and reason so far (completed, or failed
at its timeout), exit code, start and end times"""


def end_of(d: Path, ended: dict) -> dict:
    """The end of the run in folder ``d`` from its exit record ``ended``: killed by the
    runner (its ``killed`` file says why), failed by a non-zero exit code or a signal, or as
    the record says."""
    kind, reason, code = ended["kind"], ended["reason"], ended["exit_code"]
    try:                                      # the runner killed it (NodeRunner.kill)
        kind, reason = "killed", (d / "killed").read_text()
    except OSError:
        pass
    if kind == "completed" and code != 0:
        kind = "failed"
        reason = (f"killed by signal {-code} ({signal.Signals(-code).name})" if code < 0
                  else f"exit code {code}")
        if code in (126, 127):                # the launcher could not exec it: say why
            try:
                reason = (d / "start-failure").read_text()[:500] or reason
            except OSError:
                pass
    return {"kind": kind, "exit_code": code, "start": ended["start"], "end": ended["end"],
            "reason": reason}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def request_of(rec: dict) -> RunRequest:
    """The ``RunRequest`` recorded in a ``run.json``."""
    names = {f.name for f in fields(RunRequest)}
    kw = {k: v for k, v in rec.items() if k in names}
    kw["argv"] = tuple(kw["argv"])
    kw["env"] = tuple(tuple(x) for x in kw["env"])
    return RunRequest(**kw)
