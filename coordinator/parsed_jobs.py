"""A job is parsed once per replica: the replica that receives a submission checks its jobs
before ordering (``validate.py``) and keeps what it parsed here; the state machine takes it
back when it executes the command (``schedule_state.py``), instead of parsing it again.

Keyed by the job message's deterministic bytes, so it is a pure cache: whatever it holds,
``take`` returns what ``job_from_proto`` would (a replica that did not receive the request,
or whose entry was evicted, parses then). Bounded: at most ``MAX_ENTRIES`` jobs and
``MAX_BYTES`` of job bytes, oldest evicted first (requests checked but never ordered do not
pile up). The bytes are returned too: the state keeps them as the job's encoding in its
snapshot (``JobEntry.spec``).
"""

from __future__ import annotations

from collections import OrderedDict

from agora.agents.domain import Job
from agora.protos.agora.v1 import workload_pb2
from agora.protos.convert import job_from_proto

MAX_ENTRIES = 20_000
MAX_BYTES = 32 * 1024 * 1024


class ParsedJobs:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._jobs: OrderedDict[bytes, Job] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def check(self, jm: workload_pb2.Job, at: str) -> Job:
        """Parse ``jm`` (ProtoError naming ``at`` if it is not a valid job) and keep it."""
        data = jm.SerializeToString(deterministic=True)
        job = self._jobs.get(data)
        if job is None:
            job = job_from_proto(jm, at)
            self._jobs[data] = job
            self._bytes += len(data)
            while len(self._jobs) > self.max_entries or self._bytes > self.max_bytes:
                old, _ = self._jobs.popitem(last=False)
                self._bytes -= len(old)
        return job

    def take(self, jm: workload_pb2.Job, at: str) -> tuple[Job, bytes]:
        """(the job, its deterministic bytes): the kept parse if any (forgotten then), else
        ``job_from_proto`` (ProtoError naming ``at``)."""
        data = jm.SerializeToString(deterministic=True)
        job = self._jobs.pop(data, None)
        if job is None:
            self.misses += 1
            return job_from_proto(jm, at), data
        self.hits += 1
        self._bytes -= len(data)
        return job, data


JOBS = ParsedJobs()
"""This process's cache (one replica per process)."""
