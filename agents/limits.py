"""The documented upper bounds and name alphabets of every input Agora reads: cluster YAML,
jobs JSON Lines, traces, and jobs arriving over gRPC (``protos/convert.py``). A value past a
bound is refused naming the field (file and line, or the proto field), never read as
something else: a huge ``arrival`` gave JCT 0 s or inf/nan, a site name with ``/`` was read
by the coordinator as another site, a lone surrogate in an id failed later, far from the
input. docs/inputs.md lists them.
"""

from __future__ import annotations

import re

MAX_SECONDS = 1e9
"""a duration: at most 10^9 s (about 31 years)"""
MAX_TIME = 1e10
"""an instant (arrival, deadline): at most 10^10 s -- relative to a trace's start, or a
live system's Unix time (until the year 2286); float seconds there still resolve 2 us"""
MAX_CORES = 100_000.0
"""cores of one node or one task's demand"""
MAX_MEM_MIB = 2 ** 24
"""MiB of one node or one task's demand (16 TiB)"""
MAX_GPUS = 1024
"""gpus of one node or one task's demand"""
MAX_INSTANCES = 1_000_000
"""instances of one task"""
MAX_LIVE_JOB_INSTANCES = 1_000_000
"""instances of a job over its tasks, for a live Agora (each replica keeps a byte an instance:
``coordinator.schedule_rules.MAX_INSTANCES_PER_JOB``)"""
MAX_LIVE_JOB_TASKS = 1_000
"""tasks of a job for a live Agora (``coordinator.schedule_rules.MAX_TASKS_PER_JOB``)"""
MAX_NODES = 1_000_000
"""nodes of one cluster, all sites together (a short cluster YAML of many ``count`` entries
otherwise builds millions: 2,000,000 took 11 s and 370 MiB to read)"""
MAX_DATA_MB = 1e9
"""a task's input data, MB (1 PB)"""
MAX_WEIGHT = 1e6
"""a job's weight"""
MAX_LATENCY_MS = 1e6
"""one-way latency of a link between sites, milliseconds (1,000 s)"""
MIN_BANDWIDTH_MBPS, MAX_BANDWIDTH_MBPS = 1e-3, 1e9
"""bandwidth of a link, megabits per second (1 kbit/s to 1 Pbit/s)"""
MAX_WATTS = 1e7
"""a node's or a gpu's power draw, watts (10 MW)"""
MAX_PUE = 10.0
"""a site's power usage effectiveness (>= 1)"""
MAX_OVERRUN_FACTOR = 1000.0
"""how many times its duration an overrunning task may run"""
MAX_ATTEMPTS = 1000
"""attempts of one instance (a retry loop of millions never ends in practice)"""
MAX_REPLICAS = 100
"""coordinator replicas (n = 3f+1, so f <= 33): every replica talks to every other"""
MAX_CERT_DAYS = 36_500
"""days a certificate of ``agora certs`` is valid (100 years)"""
MAX_NAME = 128
"""characters of a name or id"""

MAX_SITE_NAME = 64
"""characters of a site's or a node's name (``SITE_NAME``)"""
SITE_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_SITE_NAME - 1}}}")
"""site and node names: letters, digits, '.', '_', '-'; 1-64 characters, starting with a
letter or digit (a node is named ``<site>/<node>``, so '/' cannot be part of either)"""
SITE_NAME_TEXT = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
ID_TEXT = (f"1-{MAX_NAME} printable characters without '/' or white space, and not '.' or "
           f"'..' (job and task ids name folders and agora logs JOB/TASK)")


def site_name_problem(value: str) -> str | None:
    """Why ``value`` is no site or node name (None when it is one)."""
    if len(value) > MAX_SITE_NAME:
        return f"{len(value)} characters"
    if SITE_NAME.fullmatch(value) is None:
        return f"name {value!r} has characters or a length outside the alphabet"
    return None


def id_problem(value: str) -> str | None:
    """Why ``value`` is no job or task id (None when it is one)."""
    if not value:
        return "empty"
    if len(value) > MAX_NAME:
        return f"{len(value)} characters"
    if "/" in value:
        return f"id {value!r} contains '/'"
    if value in (".", ".."):
        return f"id {value!r} names a folder's own or parent folder"
    if not value.isprintable() or any(c.isspace() for c in value):
        return f"id {value!r} has white space, control characters or lone surrogates"
    return None


MAX_ABS_WEIGHT = 1e4
"""the largest magnitude a policy's weight may have where weights cross sites or load from a
file: far above any trained here (the committed policies' largest is 0.5), far below what
takes a federated mean over (a member's 1e30 made the average its own, and the others,
training from it, diverged; ``federation/guard.py``)"""
