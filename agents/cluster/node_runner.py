"""The per-node runner: where a site's allocated instances really run.

One detached Ray actor per Agora node (``agora-runner:<node>``), placed on the Ray node that
carries that Agora node (the custom resource ``agora-node-<node>``). It runs each instance as
a Ray task pinned to its own Ray node (hard node affinity) with Ray resources from the
instance's demand (``num_cpus``, ``memory``, ``num_gpus``, shares included); the task starts
the instance's command as a process in its own session, its stdout and stderr going to files
in the run's folder, and kills it at ``timeout_s``.

Why a runner and not the site agent itself: Ray ties what an actor submits to that actor
(its owner), so work the agent submitted would die with a restarted agent. The runner is
detached and owns the work; the agent only asks it to start, kill and report, and a restarted
agent finds its work still running (``snapshot``).

Every run has an identity, ``(job, task, instance, run_id)`` where ``run_id`` is the committed
version that placed it: a start is idempotent, and an end is kept (``ends``) until the agent
acknowledges it (``ack``) once the committed schedule has it, so an agent that dies between an
end and its report finds the end again. A run's folder holds ``run.json`` (the request),
``pid`` (its process group), ``stdout``, ``stderr`` and ``end.json``; a runner that restarts
(its process died) kills what its predecessor left running and reports it ``lost``. A node
keeps the folders of its last ``keep_runs`` acknowledged runs (``KEEP_RUNS``, the ``agora up``
config's ``keep_runs``); older ones are removed with their logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray
from ray.exceptions import (LocalRayletDiedError, NodeDiedError, ObjectLostError,
                            RaySystemError, WorkerCrashedError)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agora.agents.process import exit_with_parent, in_ray_worker
from agora.agents.cluster.instance_run import (EXIT_RECORD, RunEnd, RunRequest, end_of,
                                              execute_run, folder_name, request_of,
                                              run_folder, write_json)
from agora.agents.cluster.run_groups import kill_group, read_pid, stop_run

log = logging.getLogger(__name__)

KEEP_RUNS = 10_000
"""Ended runs' folders a node keeps by default once their ends are committed."""
INFRASTRUCTURE_ERRORS = (NodeDiedError, LocalRayletDiedError, WorkerCrashedError,
                         ObjectLostError, RaySystemError)
"""a run's Ray task ending so: its node, raylet or worker went away under it -- the run is
lost, not failed (its command's outcome is unknown; it is placed again)"""
RUNNER_PREFIX = "agora-runner:"
NODE_RESOURCE_PREFIX = "agora-node-"


def node_resource(node: str) -> str:
    """The Ray custom resource that marks the Ray node carrying Agora node ``node``."""
    return NODE_RESOURCE_PREFIX + node


def runner_name(node: str) -> str:
    return RUNNER_PREFIX + node


execute_instance = ray.remote(max_retries=0)(execute_run)


@ray.remote(num_cpus=0, max_retries=0)
def _warm_up(seconds: float) -> None:
    """Holds a Ray worker for a moment: started together, they leave the node with warm
    workers (a cold one takes seconds to start on a busy machine)."""
    time.sleep(seconds)


@dataclass
class _Live:
    req: RunRequest
    folder: Path
    start: float
    ref: object = None
    killed: str | None = None
    waiter: asyncio.Task | None = field(default=None, repr=False)


class NodeRunner:
    """Wrapped by ``ray.remote`` as ``RayNodeRunner`` (detached, restarted by Ray; see the
    module docstring). ``log_root``: where run folders go on this node."""

    def __init__(self, node: str, log_root: str, warm: int = 1,
                 run_as: str | None = None, keep_runs: int = KEEP_RUNS,
                 niceness: int = 0) -> None:
        if in_ray_worker():
            exit_with_parent()          # an actor: its raylet gone, it ends (its runs too)
        self.node = node
        self.keep_runs = keep_runs
        """ended runs whose folders this node keeps once their ends are committed (oldest
        acknowledged removed first, ``_trim``); 0: every one"""
        self._acked: OrderedDict[Path, tuple | None] = OrderedDict()
        """folders of acknowledged runs, oldest acknowledged first -> the run's identity in
        ``finished`` (None: acknowledged before this incarnation)"""
        self.run_as = run_as
        """the user every run starts as (``run_account``); None: the runner's own"""
        self.niceness = niceness
        """the niceness every run's command is raised to as it starts"""
        self.root = Path(log_root)
        self.ray_node = ray.get_runtime_context().get_node_id()
        self.incarnation = uuid.uuid4().hex
        """changes when the runner restarts (its end sequence numbers start again)"""
        self.live: dict[tuple[str, str, int, int], _Live] = {}
        self._claimed: set[tuple[str, str, int, int]] = set()
        """runs whose start waits for an older run of their instance to be killed"""
        self.ended: dict[int, RunEnd] = {}
        """unacknowledged ends by seq"""
        self.finished: set[tuple[str, str, int, int]] = set()
        """every run that ended in this incarnation (a start of it again does nothing)"""
        self.seq = 0
        self.stopping = False
        """the service is stopping (``shutdown``): runs that end now are left without an end"""
        self._news = asyncio.Event()
        self.totals = next((n["Resources"] for n in ray.nodes()
                            if n["NodeID"] == self.ray_node), {})
        """the Ray node's resources: a demand beyond them is clamped (else Ray would hold
        the run forever), and said so in ``run.json``"""
        self._recover()
        pin = NodeAffinitySchedulingStrategy(node_id=self.ray_node, soft=False)
        self._warm = [_warm_up.options(scheduling_strategy=pin).remote(1.0)
                      for _ in range(max(0, warm))]

    # ---- the agent's calls ---------------------------------------------------------------
    async def start(self, req: RunRequest) -> str:
        """Run ``req`` unless it runs or ran here: returns started | running | ended."""
        ident = (*req.key, req.run_id)
        if ident in self.live or ident in self._claimed:
            return "running"
        if ident in self.finished:
            return "ended"
        older = [k for k in self.live if k[:3] == req.key]
        if older:
            # claimed while the older run is killed (seconds): a start sent again meanwhile
            # ran it twice (a review)
            self._claimed.add(ident)
            try:
                for other in older:
                    await self.kill(*other, reason="placed again")     # an older run of it
            finally:
                self._claimed.discard(ident)
        folder = run_folder(self.root, self.node, req.job, req.task, req.instance, req.run_id)
        if (folder / "end.json").exists():
            self.finished.add(ident)
            return "ended"
        folder.mkdir(parents=True, exist_ok=True)
        opts, clamped = self._resources(req)
        write_json(folder / "run.json", {**asdict(req), "ray_resources": opts,
                                          "clamped": clamped})
        live = _Live(req, folder, time.time())
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=self.ray_node,
                                                                     soft=False)
        live.ref = execute_instance.options(**opts).remote(req, str(folder), self.run_as,
                                                                  self.niceness)
        self.live[ident] = live       # once submitted: a start that raised held no run
        live.waiter = asyncio.ensure_future(self._wait(ident, live))
        return "started"

    def _resources(self, req: RunRequest) -> tuple[dict, list[str]]:
        """Ray resources of ``req``'s task: its demand, clamped to the Ray node's totals."""
        want = {"num_cpus": req.cpu, "num_gpus": req.gpus,
                "memory": req.mem_mib * 2 ** 20}
        have = {"num_cpus": self.totals.get("CPU", 0.0), "num_gpus": self.totals.get("GPU", 0.0),
                "memory": self.totals.get("memory", 0.0)}
        opts, clamped = {}, []
        for k, v in want.items():
            if v > have[k]:
                clamped.append(f"{k} {v:g} > the Ray node's {have[k]:g}")
                v = have[k]
            if v or k != "memory":
                opts[k] = v
        return opts, clamped

    async def kill(self, job: str, task: str, instance: int, run_id: int,
                   reason: str = "") -> bool:
        """Kill a run (its end is ``killed`` with ``reason``); False if it does not run."""
        live = self.live.get((job, task, instance, run_id))
        if live is None:
            return False
        live.killed = reason or "killed"
        (live.folder / "killed").write_text(live.killed)  # end.json says so (execute_run)
        loop = asyncio.get_running_loop()
        pid = read_pid(live.folder)
        if pid is None:
            ray.cancel(live.ref, force=True)      # not started yet: drop the task
            await asyncio.sleep(0.5)              # (or it was just starting its process)
            pid = read_pid(live.folder)
        if pid is not None:
            await loop.run_in_executor(None, kill_group, pid)
        return True

    async def snapshot(self) -> dict:
        """What runs here and the ends not yet acknowledged."""
        return {"running": [(live.req, live.start) for live in self.live.values()],
                "ended": sorted(self.ended.values(), key=lambda e: e.seq),
                "ray_node": self.ray_node, "incarnation": self.incarnation}

    async def ends(self, after: int, timeout_s: float = 5.0) -> tuple[str, list[RunEnd]]:
        """(incarnation, ends with seq > ``after`` not yet acknowledged); waits up to
        ``timeout_s`` for one. A caller that sees another incarnation asks again from 0."""
        if not any(s > after for s in self.ended):
            self._news.clear()
            try:
                await asyncio.wait_for(self._news.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
        return self.incarnation, sorted((e for s, e in self.ended.items() if s > after),
                                        key=lambda e: e.seq)

    async def ack(self, seqs: list) -> None:
        """The committed schedule has these ends: forget them (on disk too); the oldest
        acknowledged runs' folders beyond ``keep_runs`` are removed. Each is ``(seq, job,
        task, instance, run_id)``, acknowledged only if the end of that seq is of that run:
        an acknowledgement meant for this runner's predecessor (whose seqs began at 1 too)
        forgot an end never reported (a review); a bare seq is taken as it is."""
        for item in seqs:
            pair = isinstance(item, (tuple, list))
            s, run = (item[0], tuple(item[1:])) if pair else (item, None)
            end = self.ended.get(s)
            if end is None or run not in (None, (end.job, end.task, end.instance, end.run_id)):
                continue
            del self.ended[s]
            folder = run_folder(self.root, self.node, end.job, end.task, end.instance,
                                end.run_id)
            (folder / "acked").touch()
            self._acked[folder] = (end.job, end.task, end.instance, end.run_id)
        self._trim()

    def _trim(self) -> None:
        """Remove the folders of the oldest acknowledged runs beyond ``keep_runs`` (their
        logs go with them), and the task's and job's folders once empty: a node running for
        months keeps a bounded number of folders, and a restarted runner reads only those
        (``_recover``). An acknowledged run is in the committed schedule; its agent starts
        it no more."""
        if self.keep_runs <= 0:
            return
        top = self.root / folder_name(self.node)
        while len(self._acked) > self.keep_runs:
            folder, ident = self._acked.popitem(last=False)
            shutil.rmtree(folder, ignore_errors=True)
            if ident is not None:
                self.finished.discard(ident)
            for parent in (folder.parent, folder.parent.parent):    # task, job
                if parent == top:
                    break
                try:
                    parent.rmdir()
                except OSError:        # not empty (other runs), or gone
                    break

    async def ping(self) -> str:
        return self.ray_node

    async def shutdown(self, grace_s: float = 2.0) -> int:
        """The service stops (``agora down``): every live run's processes are killed -- its
        process group, and whatever else carries its ``AGORA_RUN_DIR`` (a run's grandchildren
        outlived their Ray worker before: only its direct child gets ``PDEATHSIG``) -- and its
        run is left without an end, so the next start's runner reports it lost and it is
        placed again, as when a node goes away (no failed attempt is counted). Returns how
        many runs there were."""
        self.stopping = True
        lives = list(self.live.values())
        for live in lives:
            (live.folder / "stopping").touch()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, stop_run, live.folder, grace_s)
                               for live in lives))
        return len(lives)

    async def read_log(self, job: str, task: str, instance: int, run_id: int,
                       stream: str = "stdout", offset: int = 0,
                       limit: int = 1 << 20) -> tuple[bytes, bool]:
        """(bytes of the run's ``stream`` from ``offset``, has the run ended)."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream {stream!r}; expected stdout or stderr")
        folder = run_folder(self.root, self.node, job, task, instance, run_id)
        try:
            with open(folder / stream, "rb") as f:
                f.seek(offset)
                data = f.read(limit)
        except FileNotFoundError:
            data = b""
        return data, (folder / "end.json").exists()

    # ---- inside -----------------------------------------------------------------------------
    async def _wait(self, ident, live: _Live) -> None:
        req = live.req
        try:
            end = await live.ref
            if self.stopping:
                return
            kind, code, reason = end["kind"], end["exit_code"], end["reason"]
            start, stop = end["start"], end["end"]
        except Exception as e:  # noqa: BLE001 - a crashed worker, a cancelled task
            if self.stopping:
                return
            # nothing of it may run on (a run as another user has no launcher whose
            # parent-death signal would end it with the worker)
            await asyncio.get_running_loop().run_in_executor(None, stop_run, live.folder,
                                                             1.0)
            # the machinery failed, not the command: lost (placed again, no attempt counted)
            # -- a probe: runs cut short when agora up's service died were counted failed
            # attempts ("NodeDiedError"), and restarts could fail a job that never failed
            kind = "lost" if isinstance(e, INFRASTRUCTURE_ERRORS) else "failed"
            code, start, stop = -1, live.start, time.time()
            reason = f"the run's Ray worker failed: {type(e).__name__}: {str(e)[:300]}"
            write_json(live.folder / "end.json", {"kind": kind, "exit_code": code,
                                                   "start": start, "end": stop,
                                                   "reason": reason})
        if live.killed is not None:
            kind, reason = "killed", live.killed
        self.live.pop(ident, None)
        self.finished.add(ident)
        self._ended(RunEnd(req.job, req.task, req.instance, req.run_id, kind, code, start,
                           stop, reason, self.ray_node))

    def _ended(self, end: RunEnd) -> None:
        self.seq += 1
        end.seq = self.seq
        self.ended[end.seq] = end
        self._news.set()

    def _ended_as(self, req: RunRequest, end: dict) -> None:
        """``req``'s run ended as ``end`` (an ``end.json``'s fields)."""
        self._ended(RunEnd(req.job, req.task, req.instance, req.run_id, end["kind"],
                           end["exit_code"], end["start"], end["end"], end["reason"],
                           self.ray_node))

    def _recover(self) -> None:
        """What a previous incarnation left: ends not acknowledged are reported again; runs
        without an end are killed if anything of them still runs, and reported as their exit
        record says (the command had exited) or else lost (their Ray tasks died with the
        runner that owned them)."""
        top = self.root / folder_name(self.node)
        if not top.is_dir():
            return
        acked = []
        for run_json in sorted(top.glob("*/*/*/run.json")):
            folder = run_json.parent
            try:
                acked.append(((folder / "acked").stat().st_mtime, str(folder)))
                continue
            except OSError:
                pass
            try:
                req = request_of(json.loads(run_json.read_text()))
            except (ValueError, TypeError, KeyError):
                continue
            self.finished.add((*req.key, req.run_id))
            try:
                self._ended_as(req, json.loads((folder / "end.json").read_text()))
                continue
            except (FileNotFoundError, ValueError, KeyError):
                pass
            before = (folder / EXIT_RECORD).exists()
            stop_run(folder, grace_s=1.0)   # its group, and what left it (a setsid child)
            try:                            # its command had exited: that is its end
                record = json.loads((folder / EXIT_RECORD).read_text())
                # one written as this kill ended it (its predecessor's task still lived) is
                # no end of the command's own: lost, no attempt counted (a review)
                if before or record.get("exit_code") not in (-signal.SIGTERM,
                                                             -signal.SIGKILL):
                    end = end_of(folder, record)
                    write_json(folder / "end.json", end)
                    self._ended_as(req, end)
                    continue
            except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
                pass
            now = time.time()
            try:                          # when its command started (the pid file's write)
                began = min((folder / "pid").stat().st_mtime, now)
            except OSError:               # it never started: when it was asked for
                began = min(run_json.stat().st_mtime, now)
            reason = "the node's runner restarted under it"
            try:                          # agora down stopped it (``shutdown``): say so,
                now = max(began, min((folder / "stopping").stat().st_mtime, now))
                reason = "the service was stopped (agora down) while it ran"
            except OSError:               # ... and when (a probe: "restarted under it",
                pass                      # ended when the next start saw it)
            end = {"kind": "lost", "exit_code": -1, "start": began, "end": now,
                   "reason": reason}
            write_json(folder / "end.json", end)
            self._ended_as(req, end)
        for _, folder in sorted(acked):
            self._acked[Path(folder)] = None
        self._trim()


RayNodeRunner = ray.remote(NodeRunner)
"""``NodeRunner`` as a Ray actor class; ``runner_fleet.start_runners`` sets its options."""
