"""What a site agent's process holds (issue 11: an agent's memory at 64 sites): the figures
its ``info`` reports, and, with ``AGORA_MEMTRACE``, Python's own allocations by line.

What they showed (docs/benchmarks.md): in a 64-site, 10,000-task replay an agent's anonymous
pages grew by ~30 MiB while Python's allocations since the agent started stayed at 5-6 MiB;
neither glibc's ``malloc_trim`` every 15 s nor two malloc arenas lowered an agent's memory
in 64-site runs of 1,561 instances, so what grows is most likely live native memory (gRPC's
and Ray's C++ cores), not Python objects and not freed blocks malloc kept.
"""

from __future__ import annotations


def memory_mib() -> dict:
    """This process's memory now (MiB; Linux ``/proc/self/smaps_rollup``, else empty): ``pss``,
    its private pages plus its share of pages it shares with other processes (the libraries
    every agent on a node maps), so the PSS of a node's agents sums to what they cost it,
    where their RSS counts each shared library once per agent; ``anon``, the pages no file
    backs (Python's objects, malloc's arenas, thread stacks: what grows with a run)."""
    names = {"Pss": "pss", "Anonymous": "anon"}
    got = {}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                field, _, rest = line.partition(":")
                if field in names:
                    got[names[field]] = int(rest.split()[0]) / 1024
    except OSError:
        return {}
    return got


async def trim_every(seconds: float) -> None:
    """Hand malloc's free pages back to the system every ``seconds`` (glibc's
    ``malloc_trim(0)``, every arena): with ``AGORA_MALLOC_TRIM_S`` (a benchmark's question:
    does what grows in a long run sit in freed blocks of the native threads' arenas?)."""
    import asyncio
    import ctypes

    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except OSError:
        return
    while True:
        await asyncio.sleep(seconds)
        trim(0)


def traced_memory(top: int = 12) -> dict | None:
    """Python's own allocations by line when ``AGORA_MEMTRACE`` (1: every agent; else a comma-
    separated list of sites) started tracemalloc in this agent (a benchmark's question: what
    grows with a run), else None."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        return None
    now, peak = tracemalloc.get_traced_memory()
    stats = tracemalloc.take_snapshot().statistics("lineno")[:top]
    return {"mib": now / 2**20, "peak_mib": peak / 2**20,
            "top": [f"{s.size / 2**20:.2f} MiB {s.count} blocks {s.traceback[0]}"
                    for s in stats]}
