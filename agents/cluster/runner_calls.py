"""How a site's Ray executor calls its nodes' runners (``RunnerCalls``, a part of
``RayExecutor``): a start or kill is followed to its answer -- a start that fails is sent
again while the run is still this site's, one the runner refuses is a failed attempt, a run
killed before its start landed ends here, a start landing after its kill is killed. See
``ray_executor`` for the whole story."""

from __future__ import annotations

import asyncio
import logging

from ray.exceptions import RayTaskError

from agora.agents.cluster.instance_run import RunRequest
from agora.agents.step.seams import Ended

log = logging.getLogger("agora.agents.cluster.ray_executor")

Key = tuple[str, str, int]


class RunnerCalls:
    """The runner-calling half of ``RayExecutor`` (it holds the state: ``runners``,
    ``_runs``, ``down``, ``_tasks`` ...; this class adds no state of its own)."""

    def _call(self, node: int, method: str, *args) -> None:
        """A runner call whose answer nothing waits for (its failure is logged; a dead
        runner is noticed by the poll). A start that fails is sent again, a second apart,
        while the run is still this site's to run there and the node is up: a start is
        idempotent at the runner (one run id runs once), and one that failed while the
        runner restarted was dropped -- the run stayed "running" for good (a re-probe of
        ``restart_grace_s``, which keeps the node up meanwhile). A start the runner refused
        (its method raised: ``RayTaskError``) is a failed attempt; sent again every second
        it never ran nor ended (a review: a folder name too long). A kill that fails is sent
        again while its run is held here unconfirmed (``_kill_answered``)."""
        if self.runners.get(node) is None:
            return

        async def go():
            while True:
                try:
                    answer = await asyncio.wait_for(
                        getattr(self.runners[node], method).remote(*args), self.call_timeout_s)
                    if method == "start":
                        self._start_answered(node, args[0])
                    elif method == "kill":
                        self._kill_answered(node, args[:3], args[3], answer)
                    return
                except asyncio.CancelledError:
                    raise
                except RayTaskError as e:
                    log.warning("site %s: runner of %s refused %s: %s", self.site_name,
                                self.own[node], method, e)
                    if method == "start" and self._still_runs(node, args[0]):
                        self._start_refused(node, args[0], e)
                    return
                except Exception as e:  # noqa: BLE001 - the poll takes the node down if dead
                    log.warning("site %s: runner of %s: %s failed: %s", self.site_name,
                                self.own[node], method, e)
                if not self._wanted(node, method, args):
                    if method == "start":     # it may land still (a timeout): kill it there
                        self._kill_dropped(node, args[0])
                    return
                await asyncio.sleep(1.0)
                if not self._wanted(node, method, args):    # killed or ended meanwhile
                    return
        self._tasks.append(asyncio.ensure_future(go()))
        self._tasks = [t for t in self._tasks if not t.done()]

    def _held(self, node: int, key: Key, run_id: int):
        """The run this executor holds for ``key`` if it is run ``run_id`` on ``node``."""
        r = self._runs.get(key)
        return r if r is not None and r.run_id == run_id and r.node == node else None

    def _start_answered(self, node: int, req: RunRequest) -> None:
        """The runner holds ``req`` (started, running or ended): its end will come. If it
        is no longer wanted here (a kill asked before the start landed), kill it."""
        r = self._held(node, req.key, req.run_id)
        if r is not None:
            r.confirmed = True        # a kill asked meanwhile is on its way, or ends it
        else:
            self._kill_dropped(node, req)

    def _kill_dropped(self, node: int, req: RunRequest) -> None:
        """A start given up that is no run of this executor any more: should it land after
        all (a call that timed out), it is killed there (unanswered, ``False``: harmless)."""
        if self._held(node, req.key, req.run_id) is None:
            self._call(node, "kill", *req.key, req.run_id, "stopped before it started")

    def _kill_answered(self, node: int, key: Key, run_id: int, killed) -> None:
        """A run the runner did not hold when killed, whose start never landed, ends here:
        no end will come for it (a review: it and its resources were held for good)."""
        r = self._held(node, key, run_id)
        if killed is False and r is not None and not r.confirmed:
            del self._runs[key]
            self._release(r)
            if r.report_kill:
                now = self.now()
                self.report_end(Ended(*key, kind="lost", start_s=now, end_s=now,
                                      reason="stopped before it started", run_id=run_id))

    def _wanted(self, node: int, method: str, args: tuple) -> bool:
        """Is a failed ``method`` call with ``args`` still worth sending again: a start of
        the run held here (not being killed), a kill of one being killed, the node up?"""
        if method == "start":
            return self._still_runs(node, args[0])
        r = self._held(node, args[:3], args[3]) if method == "kill" else None
        return node not in self.down and r is not None and r.report_kill is not None

    def _start_refused(self, node: int, req: RunRequest, e: Exception) -> None:
        r = self._runs.pop(req.key)
        self._release(r)
        now = self.now()
        cause = str(getattr(e, "cause", None) or e).strip().splitlines()
        self.report_end(Ended(*req.key, kind="failed", start_s=now, end_s=now, exit_code=-1,
                              reason=f"the runner of {self.own[node]} could not start it: "
                                     f"{(cause or ['?'])[-1][:300]}", run_id=req.run_id))

    def _still_runs(self, node: int, req: RunRequest) -> bool:
        """Is ``req`` still the run of its instance on ``node``, with ``node`` up?"""
        r = self._held(node, req.key, req.run_id)
        return node not in self.down and r is not None and r.report_kill is None
