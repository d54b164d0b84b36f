"""Jobs in the replicated schedule: ``submit_jobs`` admits them (the operator's or a site's
own; a task that fits no node of the cluster, or has no ``run`` under ``require_run``,
rejects its job) and ``cancel_job`` stops one (the operator, or a client of the job's origin
site; never a replica): nothing more of it starts, its standing offers are dropped and its
running instances stop at once -- the commands of ``ScheduleState`` that clients send about
jobs (a mixin; the state's attributes are its own)."""

from __future__ import annotations

from agora.agents.domain import why_unschedulable
from agora.coordinator.compaction import unknown_job
from agora.coordinator.parsed_jobs import JOBS
from agora.coordinator.schedule_rules import (MAX_CANCEL_REASON, MAX_INSTANCES_PER_TASK,
                                              MAX_JOBS_PER_COMMAND, MAX_TASKS_PER_JOB, OPERATOR,
                                              REPLICA_PREFIX, SITE_PREFIX, Rejected,
                                              instances_over_limit, site_of_client)
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import ProtoError
from agora.protos.wire import length_delimited


class JobCommands:
    def _do_submit_jobs(self, client_id: str, msg: pb.SubmitJobs, seq: int,
                        res: pb.Result) -> None:
        where = "command.submit_jobs.jobs"
        if len(msg.jobs) > MAX_JOBS_PER_COMMAND:
            raise Rejected("submit.too_many", where, f"{len(msg.jobs)} jobs; expected at most "
                           f"{MAX_JOBS_PER_COMMAND} per command")
        own = site_of_client(client_id)
        if own is None and client_id != OPERATOR:
            # judged here too, not only by the replica that received the request: a faulty
            # primary may order what an auditor (or any other client) signed
            raise Rejected("submit.not_allowed", where, f"client {client_id!r} may not "
                           f"submit; expected the operator's client ({OPERATOR!r}) or a "
                           f"site's ({SITE_PREFIX}<site>)")
        over = instances_over_limit(msg.jobs)
        if over is not None and over[0] == "jobs":
            raise Rejected("submit.too_many", where, f"{over[1]} instances; expected at most "
                           f"{over[2]} per command")
        for i, jm in enumerate(msg.jobs):
            try:
                self._admit(jm, f"{where}[{i}]", own, seq)
                res.accepted += 1
            except Rejected as r:
                self._count(res, r)

    def _admit(self, jm, at: str, own: str | None, seq: int) -> None:
        if len(jm.tasks) > MAX_TASKS_PER_JOB:
            raise Rejected("submit.too_big", f"{at}.tasks",
                           f"{len(jm.tasks)} tasks; expected at most {MAX_TASKS_PER_JOB}")
        for k, t in enumerate(jm.tasks):
            if t.instances > MAX_INSTANCES_PER_TASK:
                raise Rejected("submit.too_big", f"{at}.tasks[{k}].instances",
                               f"{t.instances}; expected at most {MAX_INSTANCES_PER_TASK}")
        over = instances_over_limit([jm])
        if over is not None:
            raise Rejected("submit.too_big", f"{at}.tasks", f"{over[1]} instances over the "
                           f"job's tasks; expected at most {over[2]} a job")
        try:
            job, data = JOBS.take(jm, at)     # as the receiving replica parsed it
        except ProtoError as e:
            raise Rejected("submit.malformed", e.field, str(e)) from None
        if job.origin not in self.site_index:
            raise Rejected("submit.unknown_origin", f"{at}.origin", f"unknown site "
                           f"{job.origin!r}; expected one of {sorted(self.site_index)}")
        if own is not None and own != job.origin:
            raise Rejected("submit.wrong_site", f"{at}.origin", f"site {own!r} may only "
                           f"submit jobs with origin {own!r}, not {job.origin!r}")
        prefix, colon, _ = job.id.partition(":")
        if colon and prefix in self.site_index and prefix != job.origin:
            # '<site>:<name>' ids are that site's: no other site can take the ids it will
            # use (a review: ids are one namespace, and one site squatted another's)
            raise Rejected("submit.namespace", f"{at}.id",
                           f"job {job.id!r} is named in the namespace of site {prefix!r} "
                           f"('{prefix}:...') but its origin is {job.origin!r}; expected "
                           f"'{job.origin}:<name>', or an id not starting with another "
                           f"site's name and ':'")
        if job.id in self.ledger.jobs:
            raise Rejected("submit.duplicate_job", f"{at}.id", f"job {job.id!r} exists")
        origin = self.site_index[job.origin]
        if own is not None and self.max_unfinished_jobs_per_site:
            self._within_quota(origin, at)
        if self.require_run:
            for k, t in enumerate(job.tasks):
                if t.run is None:
                    raise Rejected("submit.no_run", f"{at}.tasks[{k}].run",
                                   f"task {t.id!r} has no run; this coordinator runs jobs "
                                   f"(require_run) and needs the command each instance "
                                   f"executes: run: {{argv: [...]}}")
                if not (t.demand.cpu or t.demand.mem):
                    raise Rejected("submit.no_demand", f"{at}.tasks[{k}].demand",
                                   f"task {t.id!r} asks for no cpu and no memory: every "
                                   f"instance would fit on one node at once; expected cpu "
                                   f"> 0 or mem > 0 (a process uses some)")
        for k, t in enumerate(job.tasks):
            why = why_unschedulable(t.demand, self.cluster)
            if why:
                raise Rejected("submit.unschedulable", f"{at}.tasks[{k}]",
                               f"task {t.id!r} fits no node: {why}")
        js = self.ledger.admit(job, origin, job.arrival)
        if origin in self.unfinished_bound:
            self.unfinished_bound[origin] += 1
        js.spec = length_delimited(1, data)    # the job as submitted is its snapshot record
        self.job_versions[job.id] = seq
        self._update.jobs.append(jm)

    def _within_quota(self, origin: int, at: str) -> None:
        """Rejected when site ``origin`` has ``max_unfinished_jobs_per_site`` unfinished
        jobs. Counted over the ledger only when the cached bound (``unfinished_bound``:
        exact when counted, one more per job admitted since) reaches the limit: the answer
        is the count's whatever the cache holds, so replicas that restored a snapshot (an
        empty cache) decide alike."""
        limit = self.max_unfinished_jobs_per_site
        bound = self.unfinished_bound.get(origin)
        if bound is None or bound >= limit:
            bound = self.unfinished_bound[origin] = sum(
                1 for js in self.ledger.jobs.values()
                if js.origin == origin and not js.finished)
        if bound >= limit:
            raise Rejected("submit.site_quota", f"{at}.origin",
                           f"site {self.site_names[origin]!r} has {bound:,} unfinished jobs; "
                           f"the limit is {limit:,} a site (max_unfinished_jobs_per_site): "
                           f"submit again once some have finished, or cancel some")

    def _do_cancel_job(self, client_id: str, msg: pb.CancelJob, seq: int,
                       res: pb.Result) -> None:
        where = "command.cancel_job"
        if client_id.startswith(REPLICA_PREFIX):
            raise Rejected("cancel.not_allowed", where, f"client {client_id!r} is a replica; "
                           f"expected the operator's client ({OPERATOR!r}) or a client of "
                           f"the job's origin site")
        if len(msg.reason) > MAX_CANCEL_REASON:
            raise Rejected("cancel.bad_reason", f"{where}.reason",
                           f"{len(msg.reason)} characters; expected at most "
                           f"{MAX_CANCEL_REASON}")
        js = self.ledger.jobs.get(msg.job_id)
        if js is None:
            raise Rejected("cancel.unknown_job", f"{where}.job_id",
                           unknown_job(self, msg.job_id))
        origin = js.job.origin
        if client_id != OPERATOR and site_of_client(client_id) != origin:
            raise Rejected("cancel.wrong_site", f"{where}.job_id",
                           f"client {client_id!r} may not cancel job {msg.job_id!r} (origin "
                           f"{origin!r}); expected the operator's client ({OPERATOR!r}) or "
                           f"a client of site {origin!r} ({SITE_PREFIX}{origin})")
        if not self.ledger.cancellable(js):
            raise Rejected("cancel.finished", f"{where}.job_id",
                           f"job {msg.job_id!r} is already {js.outcome} and has nothing left "
                           f"to run; expected a job with work pending or running")
        reason = msg.reason or f"cancelled by {client_id}"
        running = self.ledger.cancel(js, reason)
        self._update.cancelled.add(job_id=msg.job_id, reason=reason)
        for ts, inst in running:
            self._stop(ts, inst, "cancelled", 0.0, 0.0, 0, reason)
        self._drop_offers(msg.job_id)
        res.accepted = 1
        self._maybe_close(res)       # the sites that could hold only this job's work

    def _drop_offers(self, job_id: str) -> None:
        """Forget the round's standing offers for ``job_id``'s tasks (cancelled: none of them
        can be placed, and a snapshot must hold only offers its restore admits again)."""
        for part in self.parts.values():
            keep = [k for k, o in enumerate(part.offers) if o.job_id != job_id]
            if len(keep) < len(part.offers):
                part.offers = [part.offers[k] for k in keep]
                part.bids = [part.bids[k] for k in keep]
