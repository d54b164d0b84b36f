"""What a replica checks in a client's request before it lets PBFT order it.

These are the checks that need no state: the envelope parses, holds a signed request, its op
is the Command the RPC expects with every field in range, and a site client acts only for
its own site. A request that fails them is answered at once with a gRPC status (never
ordered): INVALID_ARGUMENT naming the field, UNAUTHENTICATED for a bad signature or a key
acting for another site, PERMISSION_DENIED for a client that may never send the command
(a site's vote, a replica's cancel). Checks that need the schedule's state (is the task
open? does the site have room? is the job the cancelling site's own?) stay in the state
machine, which reports them in its result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from agora.agents.market import PRICE_MAX
from agora.coordinator.pbft.auth import usable_public_key
from agora.coordinator.pbft.messages import MAX_TIMESTAMP
from agora.coordinator.schedule_codec import decode_known
from agora.agents.limits import ID_TEXT, MAX_NAME, SITE_NAME_TEXT, id_problem, site_name_problem
from agora.coordinator.schedule_rules import (END_KINDS, MAX_CANCEL_REASON, MAX_JOBS_PER_COMMAND,
                                         MAX_INSTANCES_PER_TASK, MAX_REASON_BYTES,
                                         MAX_TASKS_PER_JOB, OPERATOR,
                                         REPLICA_PREFIX,
                                         client_id_problem, instances_over_limit,
                                         part_over_limit, site_of_client)
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage, PbftRequest
from agora.coordinator.parsed_jobs import JOBS
from agora.protos.convert import ProtoError

AUDITOR_PREFIX = "auditor:"
"""Clients ``auditor:<name>`` read everything and may change nothing."""

RPC_KINDS = {
    "SubmitJobs": "submit_jobs",
    "SubmitRound": "site_round",
    "CloseRound": "close_round",
    "SiteLapsed": "site_lapsed",
    "CancelJob": "cancel_job",
    "AdmitSite": "admit_site",
    "RemoveSite": "remove_site",
    "GetSchedule": "query",
}
"""Each request RPC and the Command kind its op must hold."""


@dataclass(frozen=True)
class Refusal(Exception):
    """A request answered with ``code`` and ``message`` and never ordered; counted under
    ``kind`` in GetStatus."""

    code: grpc.StatusCode
    kind: str
    message: str

    def __post_init__(self) -> None:
        # gRPC carries a status's message in a header of at most 16 KiB: past it the client
        # got "received metadata size exceeds hard limit" and never the field's name
        if len(self.message) > MAX_REFUSAL_CHARS:
            object.__setattr__(self, "message", self.message[:MAX_REFUSAL_CHARS - 40]
                               + f"... ({len(self.message):,} characters in all)")


MAX_REFUSAL_CHARS = 2000
"""the longest refusal message sent (the field's name comes first)"""


def over_limit(field: str, count: int, limit: int, what: str, per: str = "request") -> Refusal:
    return Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "over_limit",
                   f"{field}: {count} {what}; the limit is {limit} per {per}")


def invalid(field: str, problem: str, expected: str) -> Refusal:
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument",
                   f"{field}: {problem}; expected {expected}")


def parse_request(data: bytes, rpc: str) -> tuple[PbftEnvelope, PbftRequest, pb.Command]:
    """The envelope, request and command of a ClientRequest's bytes for ``rpc``, every
    stateless check made (``parse_envelope`` then ``parse_command``; a replica checks the
    client's key and signature between the two, see ``service.CoordinatorService._admit``)."""
    env, req = parse_envelope(data, rpc)
    return env, req, parse_command(req, rpc)


def parse_envelope(data: bytes, rpc: str) -> tuple[PbftEnvelope, PbftRequest]:
    """The envelope and request of a ClientRequest's bytes for ``rpc``: what the client's
    key and signature are checked on, before anything of its command is decoded (a sender
    without a key must not make a replica parse thousands of jobs)."""
    try:
        env = decode_known(PbftEnvelope, data, "envelope")
        msg = decode_known(PbftMessage, env.payload, "envelope.payload")
    except ProtoError as e:
        raise invalid(e.field, e.problem, e.expected or "a valid message") from None
    if msg.WhichOneof("kind") != "request":
        raise invalid("envelope.payload.request", f"the payload holds "
                      f"{msg.WhichOneof('kind') or 'nothing'}", "a PbftRequest")
    if env.sender != -1:
        raise invalid("envelope.sender", f"{env.sender}", "-1 (a client)")
    req = msg.request
    bad = client_id_problem(req.client_id)
    if bad is not None:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument",
                      f"envelope.payload.request.client_id: {bad}")
    if not 1 <= req.timestamp <= MAX_TIMESTAMP:
        raise invalid("envelope.payload.request.timestamp", f"{req.timestamp}",
                      f"an integer in [1, {MAX_TIMESTAMP}] (2^63-1), larger than the client's "
                      f"last request's")
    if len(req.signature) != 64:
        raise Refusal(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated",
                      f"envelope.payload.request.signature: {len(req.signature)} bytes; "
                      f"expected a 64-byte Ed25519 signature by the client's key")
    return env, req


def parse_command(req: PbftRequest, rpc: str) -> pb.Command:
    """The command of an (authenticated) request for ``rpc``, its stateless checks made."""
    want = RPC_KINDS[rpc]
    if req.client_id.startswith(AUDITOR_PREFIX) and want != "query":
        raise Refusal(grpc.StatusCode.PERMISSION_DENIED, "auditor_write",
                      f"envelope.payload.request.client_id: {req.client_id!r} is an auditor; "
                      f"auditors read (GetSchedule, GetStatus, WatchSchedule) and never {rpc}")
    if req.read_only and want != "query":
        raise invalid("envelope.payload.request.read_only", "true",
                      f"false: {rpc} changes the schedule and must be ordered")
    at = "envelope.payload.request.op"
    try:
        cmd = decode_known(pb.Command, req.op, at)
    except ProtoError as e:
        raise invalid(e.field, e.problem, e.expected or "a Command") from None
    kind = cmd.WhichOneof("kind")
    if kind != want:
        raise invalid(f"{at}.{want}", f"the op holds {kind or 'no command'}",
                      f"a Command holding {want} for {rpc}")
    check_command(cmd, req.client_id, f"{at}.{kind}")
    return cmd


def reason_problem(text: str) -> tuple[str, str] | None:
    """(problem, expected) of a reason an operator or a site writes for others to read
    (cancel, remove): at most MAX_CANCEL_REASON printable characters; None when it is one.
    Control characters were taken, and an escape sequence in a site's cancel reason cleared
    the operator's screen in ``agora jobs`` and printed a made-up line there (a probe; the
    tables now escape them too)."""
    if len(text) > MAX_CANCEL_REASON:
        return f"{len(text)} characters", f"at most {MAX_CANCEL_REASON}"
    if not text.isprintable():
        bad = next(c for c in text if not c.isprintable())
        return f"holds the control character {bad!r}", "printable text on one line"
    return None


def _reason(text: str, at: str) -> None:
    why = reason_problem(text)
    if why is not None:
        raise invalid(at, *why)


def check_command(cmd: pb.Command, client_id: str, at: str) -> None:
    """Stateless field checks of ``cmd`` (whose kind is known to be set)."""
    kind = cmd.WhichOneof("kind")
    site = site_of_client(client_id)
    m = getattr(cmd, kind)
    if kind == "submit_jobs":
        if not m.jobs:
            raise invalid(f"{at}.jobs", "empty", "at least one job")
        if len(m.jobs) > MAX_JOBS_PER_COMMAND:
            raise over_limit(f"{at}.jobs", len(m.jobs), MAX_JOBS_PER_COMMAND, "jobs")
        over = instances_over_limit(m.jobs)    # before any job is parsed
        if over is not None:
            where, count, most = over
            if where == "jobs":
                raise over_limit(f"{at}.jobs", count, most, "instances over the jobs")
            i = int(where[len("jobs["):where.index("]")])
            big = next((k for k, t in enumerate(m.jobs[i].tasks)
                        if t.instances > MAX_INSTANCES_PER_TASK), None)
            if big is not None:        # the task alone (a probe: the field was the job's)
                raise over_limit(f"{at}.{where}[{big}].instances",
                                 m.jobs[i].tasks[big].instances, MAX_INSTANCES_PER_TASK,
                                 "instances", "task")
            raise over_limit(f"{at}.{where}", count, most, "instances over the job's tasks",
                             "job")
        for i, j in enumerate(m.jobs):
            if len(j.tasks) > MAX_TASKS_PER_JOB:      # before it is parsed, as instances
                raise over_limit(f"{at}.jobs[{i}].tasks", len(j.tasks), MAX_TASKS_PER_JOB,
                                 "tasks", "job")
            try:
                job = JOBS.check(j, f"{at}.jobs[{i}]")   # parsed once: kept
            except ProtoError as e:
                raise invalid(e.field, e.problem, e.expected or "a valid job") from None
            if site is not None and job.origin != site:
                raise Refusal(grpc.StatusCode.UNAUTHENTICATED, "wrong_site",
                              f"{at}.jobs[{i}].origin: client {client_id!r} may only submit "
                              f"jobs whose origin is {site!r}, not {job.origin!r}")
    elif kind == "site_round":
        _site_name(m.site, f"{at}.site")
        _own_site(m.site, site, client_id, f"{at}.site")
        over = part_over_limit(m)
        if over is not None:
            name, count, most = over
            raise over_limit(f"{at}.{name}", count, most, name)
        if m.round < 0:
            raise invalid(f"{at}.round", f"{m.round}", "the current round, >= 0")
        if m.seen_version < 0:
            raise invalid(f"{at}.seen_version", f"{m.seen_version}", "a version >= 0")
        if m.bids and not m.bidding:
            raise invalid(f"{at}.bidding", "false with bids", "true when bids are sent")
        for i, b in enumerate(m.bids):    # field names are formatted only for a refusal
            if not (0 < len(b.job_id) <= MAX_NAME and 0 < len(b.task_id) <= MAX_NAME
                    and b.instances >= 1 and 0 <= b.price <= PRICE_MAX):
                _bid_problem(b, f"{at}.bids[{i}]")
        for i, e in enumerate(m.ends):
            _ids(e, f"{at}.ends[{i}]")
            if e.instance < 0:
                raise invalid(f"{at}.ends[{i}].instance", f"{e.instance}", "an index >= 0")
            if e.run < 0:
                raise invalid(f"{at}.ends[{i}].run", f"{e.run}",
                              "the run's version (AGORA_RUN), or 0 (not said)")
            if e.kind not in END_KINDS:
                raise invalid(f"{at}.ends[{i}].kind", f"{e.kind}",
                              "END_COMPLETED, END_FAILED or END_LOST")
            if not (math.isfinite(e.start_s) and math.isfinite(e.end_s)
                    and 0 <= e.start_s <= e.end_s):
                raise invalid(f"{at}.ends[{i}].end_s", f"start {e.start_s!r}, end {e.end_s!r}",
                              "finite 0 <= start_s <= end_s")
            if len(e.reason.encode("utf-8", "surrogatepass")) > MAX_REASON_BYTES:
                raise invalid(f"{at}.ends[{i}].reason",
                              f"{len(e.reason.encode('utf-8', 'surrogatepass'))} bytes",
                              f"at most {MAX_REASON_BYTES}")
        for i, ns in enumerate(m.nodes):
            if not ns.node.startswith(f"{m.site}/") \
                    or site_name_problem(ns.node[len(m.site) + 1:]) is not None:
                shown = ns.node if len(ns.node) <= 80 else ns.node[:77] + "..."
                raise invalid(f"{at}.nodes[{i}].node", f"{shown!r}",
                              f"a node of site {m.site!r} ({m.site}/<node>, {SITE_NAME_TEXT})")
    elif kind in ("close_round", "site_lapsed"):
        if not client_id.startswith(REPLICA_PREFIX):
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, "not_a_replica",
                          f"{at}: client {client_id!r} may not vote; only the replicas "
                          f"({REPLICA_PREFIX}<i>) close rounds and lapse sites")
        if kind == "close_round" and m.round < 0:
            raise invalid(f"{at}.round", f"{m.round}", "the current round, >= 0")
        if kind == "site_lapsed":
            _site_name(m.site, f"{at}.site")
    elif kind == "cancel_job":
        if client_id != OPERATOR and site is None:
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, "not_allowed",
                          f"{at}: client {client_id!r} may not cancel jobs; only the operator "
                          f"({OPERATOR!r}) or a client of the job's origin site "
                          f"('site:<origin>') may")
        if id_problem(m.job_id):
            raise invalid(f"{at}.job_id", id_problem(m.job_id), f"the id of the job to "
                          f"cancel: {ID_TEXT}")
        _reason(m.reason, f"{at}.reason")
    elif kind in ("admit_site", "remove_site"):
        if client_id != OPERATOR:
            raise Refusal(grpc.StatusCode.PERMISSION_DENIED, "not_allowed",
                          f"{at}: client {client_id!r} may not change who is a member; only "
                          f"the operator ({OPERATOR!r}) admits and removes sites")
        _site_name(m.site, f"{at}.site")
        if kind == "admit_site" and not usable_public_key(m.verify_key):
            raise invalid(f"{at}.verify_key", f"{len(m.verify_key)} bytes that are not a "
                          f"usable key", "the site's 32-byte Ed25519 public key")
        if kind == "remove_site":
            _reason(m.reason, f"{at}.reason")
    elif kind == "query":
        q = m.WhichOneof("kind")
        if q is None:
            raise invalid(at, "no query set", "schedule, job_status or ledger")
        if q == "schedule" and m.schedule.WhichOneof("by") is None:
            raise invalid(f"{at}.schedule", "no selector set",
                          "all, site, job_id, task or since_version")
        by = m.schedule.WhichOneof("by") if q == "schedule" else None
        if by == "all" and not m.schedule.all:     # a probe: {all: false} read everything
            raise invalid(f"{at}.schedule.all", "false", "true, or another selector (site, "
                          "job_id, task or since_version)")
        if by == "since_version" and m.schedule.since_version < 0:
            raise invalid(f"{at}.schedule.since_version", f"{m.schedule.since_version}",
                          "a version >= 0")
        # ids are bounded here, before ordering: a query for a 4,000,000-character id was
        # ordered, logged by every replica and echoed whole in each reply (probe)
        if by == "site":
            _site_name(m.schedule.site, f"{at}.schedule.site")
        elif by == "job_id":
            _id(m.schedule.job_id, f"{at}.schedule.job_id")
        elif by == "task":
            _ids(m.schedule.task, f"{at}.schedule.task")
        elif q == "job_status":
            _id(m.job_status.job_id, f"{at}.job_status.job_id")


def _bid_problem(b: pb.Bid, at: str) -> None:
    _ids(b, at)
    if b.instances < 1:
        raise invalid(f"{at}.instances", f"{b.instances}", "an integer >= 1")
    raise invalid(f"{at}.price", f"{b.price}", f"an integer in [0, {PRICE_MAX}]")


def _ids(m, at: str) -> None:
    for name in ("job_id", "task_id"):
        _id(getattr(m, name), f"{at}.{name}")


def _id(value: str, field: str) -> None:
    if not value:
        raise invalid(field, "empty", "an id")
    if len(value) > MAX_NAME:      # never echoed whole: no job or task has such an id
        raise invalid(field, f"{len(value)} characters", ID_TEXT)


def _site_name(name: str, field: str) -> None:
    """A site name's form (its length first: a name is echoed in refusals only once it is
    short)."""
    if not name:
        raise invalid(field, "empty", "a site name")
    bad = site_name_problem(name)
    if bad is not None:
        raise invalid(field, bad, SITE_NAME_TEXT)


def _own_site(named: str, own: str | None, client_id: str, field: str) -> None:
    if not named:
        raise invalid(field, "empty", "the sending site's name")
    if own != named:
        raise Refusal(grpc.StatusCode.UNAUTHENTICATED, "wrong_site",
                      f"{field}: client {client_id!r} may not act for site {named!r}; only "
                      f"the key of client 'site:{named}' may")
