"""The replicated schedule's rules that both the pre-ordering checks (``validate.py``) and the
state machine (``schedule_state.py``) apply: who a client acts for, the limits on a command,
and the ``Rejected`` a refused command (or part of one) is reported with."""

from __future__ import annotations

from agora.agents.limits import MAX_INSTANCES, MAX_LIVE_JOB_INSTANCES, MAX_LIVE_JOB_TASKS
from agora.protos.agora.v1 import coordinator_pb2 as pb

SITE_PREFIX = "site:"
"""Client ids of site agents: ``site:<site name>`` (or ``site:<site name>/<k>``)."""
REPLICA_PREFIX = "replica:"
"""Client ids the replicas vote with: ``replica:<index>``."""
OPERATOR = "operator"
"""The operator's client id: may cancel any job (a site's clients only their own jobs)."""

MAX_CLIENT_ID = 256
"""Characters of a client id (``site:<64-character name>/<k>`` fits many times over)."""


def client_id_problem(client_id: str) -> str | None:
    """Why ``client_id`` cannot be any client's id, checked before it is looked up or
    echoed: an id of 100,000 characters echoed in a refusal's details passed gRPC's 16 KiB
    limit on them, and the sender saw only "Stream removed" (None: it may be one)."""
    if not client_id:
        return "empty; expected the client's id"
    if len(client_id) > MAX_CLIENT_ID:
        return (f"{len(client_id)} characters; expected at most {MAX_CLIENT_ID} (operator, "
                f"site:<name>, replica:<i> or auditor:<name>)")
    return None


MAX_JOBS_PER_COMMAND = 10_000
MAX_TASKS_PER_JOB = MAX_LIVE_JOB_TASKS
MAX_INSTANCES_PER_TASK = MAX_INSTANCES
MAX_INSTANCES_PER_JOB = MAX_LIVE_JOB_INSTANCES
MAX_INSTANCES_PER_COMMAND = 1_000_000
"""Instances of a job (over its tasks), and of one ``submit_jobs`` command. Every replica
keeps a byte per instance and walks them when a task opens or is given up: one job of 1,000
tasks x 1,000,000 instances (28 KB on the wire) took 42 s and a GB on each replica before
these bounds (review)."""
MAX_REASON_BYTES = 1024
LISTED_REJECTIONS = MAX_JOBS_PER_COMMAND + 16
"""Rejections one result lists: every job of a submission (a client maps them back to its
jobs) ..."""
LISTED_PART_REJECTIONS = 256
"""... and the first of a site's part; the rest are counted in one more rejection (a review:
a part of 65,536 invalid ends and 4,096 invalid bids, within the limits, drew an 8.5 MB
reply of 69,631 rejections from every replica, kept in each reply table)."""
MAX_BIDS_PER_PART = 4096
"""Bids in one site's part of a round. A site holds one part per round (a newer one replaces
the older), so this also bounds what a site bids in a round. Agents bid on a window of a
few dozen candidates; the bound only stops a flood (a site's 200,000 bids in one request
held every other client up to 8.5 s)."""
MAX_ENDS_PER_PART = 65_536
"""End reports in one site part."""
MAX_NODES_PER_PART = 4096
"""Node states in one site part."""
MAX_CANCEL_REASON = 200
"""characters of a CancelJob's reason"""
END_KINDS = {pb.END_COMPLETED: "completed", pb.END_FAILED: "failed", pb.END_LOST: "lost"}


class Rejected(Exception):
    """A command (or part of one) refused: counted under ``kind``, reported as field+reason."""

    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.kind, self.field, self.reason = kind, field, reason


def part_over_limit(msg: pb.SiteRound) -> tuple[str, int, int] | None:
    """(field, count, limit) of the first list of a site part over its limit, else None:
    checked before ordering (``coordinator/validate.py``) and again by the state machine,
    for what a faulty primary orders anyway."""
    for name, most in (("bids", MAX_BIDS_PER_PART), ("ends", MAX_ENDS_PER_PART),
                       ("nodes", MAX_NODES_PER_PART)):
        count = len(getattr(msg, name))
        if count > most:
            return name, count, most
    return None


def site_of_client(client_id: str) -> str | None:
    """The site a client acts for: ``site:<name>`` or ``site:<name>/<k>`` (one site may run
    several clients, each with its own key, for concurrent requests); None for others."""
    if not client_id.startswith(SITE_PREFIX):
        return None
    return client_id[len(SITE_PREFIX):].split("/", 1)[0]


def replica_of_client(client_id: str, n: int) -> int | None:
    """The replica index of a client ``replica:<i>`` (0 <= i < n, ASCII decimal, as the
    replicas write it); None for others (``replica:²`` passed ``isdigit`` and made ``int``
    raise out of a command's execution: a review)."""
    if not client_id.startswith(REPLICA_PREFIX):
        return None
    tail = client_id[len(REPLICA_PREFIX):]
    if not (tail.isascii() and tail.isdigit()) or str(int(tail)) != tail or \
            not 0 <= int(tail) < n:
        return None
    return int(tail)


def job_instances(job) -> int:
    """Instances over a job's tasks (a ``workload_pb2.Job`` or a domain ``Job``)."""
    return sum(max(int(t.instances), 0) for t in job.tasks)


def instances_over_limit(jobs) -> tuple[str, int, int] | None:
    """(where, count, limit) of the first instance budget that ``jobs`` (messages or domain
    jobs: each with ``tasks`` that have ``instances``) break -- a job's
    (``jobs[i].tasks``) or the command's (``jobs``) -- or None."""
    total = 0
    for i, j in enumerate(jobs):
        n = job_instances(j)
        if n > MAX_INSTANCES_PER_JOB:
            return f"jobs[{i}].tasks", n, MAX_INSTANCES_PER_JOB
        total += n
    if total > MAX_INSTANCES_PER_COMMAND:
        return "jobs", total, MAX_INSTANCES_PER_COMMAND
    return None


def submission_chunks(jobs: list, most_jobs: int = 1000, sizes: list[int] | None = None,
                      most_bytes: int | None = None) -> list[list]:
    """``jobs`` in consecutive chunks that one ``submit_jobs`` command takes: at most
    ``most_jobs`` jobs and ``MAX_INSTANCES_PER_COMMAND`` instances each (a job over its own
    budget goes alone, to be refused by name), and with ``sizes`` (each job's encoded bytes)
    at most ``most_bytes`` of jobs (a probe: a valid file of 6 MB was one request, past the
    replicas' 4 MiB, and refused whole)."""
    chunks: list[list] = []
    chunk: list = []
    count = size = 0
    for k, j in enumerate(jobs):
        n = job_instances(j)
        b = sizes[k] if sizes is not None else 0
        if chunk and (len(chunk) >= most_jobs or count + n > MAX_INSTANCES_PER_COMMAND
                      or (most_bytes is not None and size + b > most_bytes)):
            chunks.append(chunk)
            chunk, count, size = [], 0, 0
        chunk.append(j)
        count += n
        size += b
    if chunk:
        chunks.append(chunk)
    return chunks
