"""Sending a file's jobs to the coordinator (``agora submit``, ``agora.submit``): which jobs
a request can carry (``sendable``: a site client's own origin, within the request's bytes),
the requests (``submit_chunks``: within the jobs, instances and bytes one command takes), the
refusals each names (``rejected_indices``), and what was admitted when a submission was cut
short (``SubmissionCut``) or refused part-way (``SubmissionRefused``)."""

from __future__ import annotations

import asyncio

from agora.deploy.service_client import NotRunning


def rejected_indices(res, n: int) -> dict[int, str]:
    """{index in the submitted chunk of ``n`` jobs: 'field: reason'} of a submission's
    refusals. A refusal of the whole command (no ``jobs[i]`` in its field: a client that may
    not submit, a chunk over a limit) refuses every job; so does a result that admitted fewer
    jobs than it refused none of (nothing is counted accepted that the replicas did not)."""
    import re

    out: dict[int, str] = {}
    whole = []
    for r in res.rejections:
        m = re.search(r"jobs\[(\d+)\]", r.field)
        if m is not None and int(m.group(1)) < n:
            out.setdefault(int(m.group(1)), f"{r.field}: {r.reason}")
        else:
            whole.append(f"{r.field or 'command'}: {r.reason}")
    if not whole and res.accepted != n - len(out):
        whole.append(f"the coordinator admitted {res.accepted} of the {n} jobs it was sent "
                     f"and named {len(out)} refused; none is counted as submitted")
    if whole:
        return {i: out.get(i, "; ".join(whole)) for i in range(n)}
    return out


class SubmissionCut(NotRunning):
    """The coordinator stopped answering while jobs were submitted: which of them are
    admitted (they run), which are not (to submit again), which could not be told."""

    def __init__(self, accepted: list[str], missing: list[str], unknown: list[str],
                 rejected: list[tuple[str, str]], cause: str) -> None:
        self.accepted, self.missing, self.unknown = accepted, missing, unknown
        self.rejected, self.cause = rejected, cause
        parts = [f"too few replicas answered while the jobs were submitted ({cause}); "
                 f"admitted (they run): {_some(accepted)}; not admitted (submit them again): "
                 f"{_some(missing)}"]
        if unknown:
            parts.append(f"not known (check with agora jobs --job ID before submitting "
                         f"again): {_some(unknown)}")
        super().__init__("; ".join(parts))


class SubmissionRefused(ValueError):
    """A request of a submission refused whole after other jobs were admitted, or beside
    jobs refused by name (a probe: "the coordinator refused", exit 1, the jobs admitted
    before unsaid): which are admitted (they run), which are not (mend, then submit them
    again), and ``rejected``, those refused by name."""

    def __init__(self, accepted: list[str], missing: list[str],
                 rejected: list[tuple[str, str]], cause: str) -> None:
        self.accepted, self.missing, self.unknown = accepted, missing, []
        self.rejected, self.cause = rejected, cause
        super().__init__(f"the coordinator refused a part of the submission ({cause}); "
                         f"admitted (they run): {_some(accepted)}; not admitted (mend, then "
                         f"submit them again): {_some(missing)}"
                         + (f"; refused by name: {_some([j for j, _ in rejected])}"
                            if rejected else ""))


def _some(ids: list[str], k: int = 10) -> str:
    if not ids:
        return "none"
    more = f" and {len(ids) - k} more" if len(ids) > k else ""
    return ", ".join(ids[:k]) + more


async def _exist(client, ids: list[str], at_once: int = 16) -> dict[str, bool | None]:
    """Does each job of ``ids`` exist (as f+1 replicas answer; None: no answer)? Once
    ``at_once`` questions went unanswered the group is taken to be away and the rest are
    not asked (each would wait out the client's timeout: minutes for a chunk of 1,000)."""
    from agora.coordinator.client import CoordinatorError

    gate = asyncio.Semaphore(at_once)
    unanswered = 0

    async def one(j: str) -> tuple[str, bool | None]:
        nonlocal unanswered
        async with gate:
            if unanswered >= at_once:
                return j, None
            try:
                return j, (await client.job_status(j)).HasField("job_status")
            except CoordinatorError:
                unanswered += 1
                return j, None
    return dict(await asyncio.gather(*(one(j) for j in ids)))


REQUEST_MARGIN = 64 * 1024
"""bytes of a submission's request besides its jobs' encodings (envelope, signature,
command): a job may take the coordinator's ``max_request_bytes`` less this"""
def request_margin(max_request_bytes: int) -> int:
    """``REQUEST_MARGIN``, or an eighth of a smaller limit (a request's own bytes are ~400,
    and ~4 a job: a review found every job refused under a max_request_bytes of 64 KiB)."""
    return min(REQUEST_MARGIN, max_request_bytes // 8)


CHUNK_BYTES = 1024 * 1024
"""bytes of jobs one submission request holds at most (a larger job goes alone): on this
2-core machine, under load, requests of 4 MiB of jobs outlasted the replicas' request timers
(view changes, and "too few replicas answered" for 200 of 1,000 jobs of 10 KB)"""


def sendable(jobs: list, client_id: str, max_request_bytes: int
             ) -> tuple[list, list[int], list[tuple[str, str]]]:
    """The jobs a submission of ``client_id`` can send, their encoded sizes, and (id, reason)
    for each it cannot, refused by name as the coordinator would refuse it: a job whose
    origin is not a site client's own site (the coordinator refuses the whole request for
    one: a probe's file lost its other jobs, exit 1, no line named), and a job larger than
    one request takes."""
    from agora.coordinator.schedule_rules import site_of_client
    from agora.protos.convert import job_to_proto

    site = site_of_client(client_id)
    room = max_request_bytes - request_margin(max_request_bytes)
    kept, sizes, refused = [], [], []
    for j in jobs:
        if site is not None and j.origin != site:
            refused.append((j.id, f"field 'origin': client {client_id!r} may only submit "
                                  f"jobs whose origin is {site!r}, not {j.origin!r}; "
                                  f"expected origin {site!r}, or the job submitted by its "
                                  f"own site's client or the operator"))
            continue
        size = job_to_proto(j).ByteSize()
        if size > room:
            refused.append((j.id, f"the job is {size:,} bytes encoded, and one request to "
                                  f"the coordinator holds {room:,} bytes of jobs (its "
                                  f"max_request_bytes, {max_request_bytes:,}, less "
                                  f"{max_request_bytes - room:,} around them); expected a "
                                  f"smaller "
                                  f"job: shorter run argv or env, or its tasks in several "
                                  f"jobs"))
            continue
        kept.append(j)
        sizes.append(size)
    return kept, sizes, refused


async def submit_chunks(client, jobs: list) -> tuple[list[str], list[tuple[str, str]]]:
    """Submit what ``sendable`` lets through in chunks of at most 1,000 jobs, the instances
    one command takes and ``CHUNK_BYTES`` (``schedule_rules.submission_chunks``); (accepted ids,
    [(refused id, reason)]). When too few replicas answer a chunk -- it may have been
    ordered all the same -- the replicas are asked which of its jobs exist, and
    ``SubmissionCut`` says which are admitted and which are to be submitted again (a probe:
    under load, a submission that had been admitted said only "retry", and a retry was
    refused as "job exists"); a chunk refused whole after others were admitted says the
    same (a probe: "the coordinator refused", and the 1,000 jobs admitted before went
    unsaid)."""
    import grpc

    from agora.coordinator.client import CoordinatorError
    from agora.coordinator.schedule_rules import submission_chunks

    most = client.config.max_request_bytes
    jobs, sizes, rejected = sendable(jobs, client.client_id, most)
    accepted: list[str] = []
    chunks = list(submission_chunks(jobs, sizes=sizes,
                                    most_bytes=min(most - request_margin(most), CHUNK_BYTES)))
    for k, chunk in enumerate(chunks):
        try:
            res = await client.submit_jobs(chunk)
        except CoordinatorError as e:
            later = [j.id for c in chunks[k + 1:] for j in c]
            if e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                if not (accepted or rejected):
                    raise
                # the refusal's own words (a replica down answered UNAVAILABLE first)
                raise SubmissionRefused(accepted, [j.id for j in chunk] + later, rejected,
                                        e.message) from None
            found = await _exist(client, [j.id for j in chunk])
            raise SubmissionCut(accepted + [j for j, f in found.items() if f],
                                [j for j, f in found.items() if f is False] + later,
                                [j for j, f in found.items() if f is None], rejected,
                                next(iter(e.errors.values()), e.message)) from None
        bad = rejected_indices(res, len(chunk))
        for i, job in enumerate(chunk):
            (rejected.append((job.id, bad[i])) if i in bad else accepted.append(job.id))
    return accepted, rejected
