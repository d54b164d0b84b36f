"""Writing secrets: a private file is readable by its owner only (mode 0600) from the moment
it exists, also when it replaces an older file of other permissions."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path


def check_private(path: str | Path, what: str, remedy: str) -> None:
    """ValueError naming ``path`` when private file ``path`` (``what``, for the message) is
    open to anyone but its owner (mode beyond 0600: its secret may have leaked), or belongs
    to another user than this process's (that user could replace it at any time: a key
    planted by someone else is not ours). ``remedy`` says what to do; the file is left as
    it is."""
    path = Path(path)
    st = path.stat()
    mode = st.st_mode & 0o777
    if mode & 0o077:
        raise ValueError(f"{path}: mode {mode:03o}; {what} must be readable by its owner only "
                         f"(0600). It may have leaked: {remedy}")
    me = os.geteuid()
    if st.st_uid != me:
        raise ValueError(f"{path}: owned by user id {st.st_uid}, not by this process's user "
                         f"({me}); {what} must belong to the user that uses it (its owner "
                         f"could replace it): {remedy}")


def write_public(path: str | Path, data: str | bytes) -> Path:
    """``write_private``'s way, mode 0644 whatever the umask (a certificate: under umask
    000 one came out 0666, and anyone could replace the CA certificate every process
    trusts -- a review)."""
    return write_private(path, data, mode=0o644)


def write_private(path: str | Path, data: str | bytes, *, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` (``mode``, 0600) atomically: a temporary file beside it,
    made 0600 before anything is written, then renamed over ``path``. The temporary file has a
    random name and is created, never opened: a link planted at a predictable name made a
    key be written through it onto the link's target (a review)."""
    path = Path(path)
    if path.is_dir():          # else the rename fails naming the temporary file
        raise IsADirectoryError(errno.EISDIR, "a folder, not a file", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as e:     # named by ``path``, not the temporary file's (a probe)
        raise type(e)(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)    # whatever the umask
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path
