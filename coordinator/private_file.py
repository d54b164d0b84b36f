"""Writing secrets: a private file is readable by its owner only (mode 0600) from the moment
it exists, also when it replaces an older file of other permissions."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def write_private(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` (mode 0600) atomically: a temporary file beside it, made
    0600 before anything is written, then renamed over ``path``."""
    path = Path(path)
    if path.is_dir():          # else the rename fails naming the temporary file
        raise IsADirectoryError(errno.EISDIR, "a folder, not a file", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:     # named by ``path``, not the temporary file's (a probe)
        raise type(e)(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)   # O_CREAT's mode does not apply to an existing file
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path
