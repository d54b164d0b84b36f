"""Counter-based random draws: a uniform number that is a pure function of its key.

Fault injection must hit the *same* instances whichever policy runs (otherwise two policies
are compared on different luck), so a draw is keyed by (fault seed, task key, instance,
attempt, purpose) rather than taken from a stream whose order follows the policy's choices.
SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) mixes the key; it is fast in pure Python and
its outputs pass BigCrush.
"""

from __future__ import annotations

_MASK = (1 << 64) - 1


def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def uniform(*key: int) -> float:
    """A float in [0, 1) determined by the integers in ``key``."""
    h = 0
    for k in key:
        h = _mix(h ^ (k & _MASK))
    return (h >> 11) * (1.0 / (1 << 53))


def task_key(job_id: str, task_id: str) -> int:
    """A stable 64-bit integer for a task, the same in every process and engine (draws are
    keyed by it rather than by an admission rank that differs between engines)."""
    import hashlib

    h = hashlib.blake2b(f"{job_id}\x00{task_id}".encode("utf-8", "surrogatepass"),
                        digest_size=8).digest()
    return int.from_bytes(h, "little")
