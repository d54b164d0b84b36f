"""Child processes that do not outlive their parent."""

from __future__ import annotations

import signal
from typing import Callable


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets SIGKILL when the thread that
    started it dies (``prctl(PR_SET_PDEATHSIG)``) -- an instance whose Ray worker or node went
    away, a replica whose ``agora up`` was killed, must not run on unwatched. Linux only;
    None (no preexec) elsewhere."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def set_pdeathsig() -> None:
        libc.prctl(1, signal.SIGKILL)              # PR_SET_PDEATHSIG = 1
    return set_pdeathsig
