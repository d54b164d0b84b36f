"""Text files read whole, for every reader of Agora's inputs (JSON Lines, SWF, CSV, YAML,
WfCommons JSON): ``read_text`` refuses what is not a regular file (a FIFO would block the
reader, a device never end), a file over ``MAX_TEXT_BYTES`` and bytes that are not UTF-8, each
naming the file (and the line of a bad byte); ``split_lines`` numbers lines as editors do and
refuses classic-Mac line endings."""

from __future__ import annotations

import os
import stat

from agora.agents.workloads.errors import InputError

MAX_TEXT_BYTES = 2 ** 30
"""the largest file read whole (a bigger one is refused before it is read: its parsed form
would not fit a machine's memory anyway)"""


def _too_big(path: str, expected: str, found: str) -> InputError:
    return InputError(path=path, line=None, field=None,
                      problem=f"{found} the limit of {MAX_TEXT_BYTES // 2 ** 20:,} MiB",
                      expected=f"{expected}, at most {MAX_TEXT_BYTES:,} bytes")


def read_text(path: str, expected: str) -> str:
    """The whole file as text (UTF-8, an optional BOM dropped); InputError if it cannot be
    read, is not a regular file (a FIFO would block the reader, a device never end), is over
    ``MAX_TEXT_BYTES`` or is not UTF-8 (naming the line of the first bad byte)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(path=path, line=None, field=None,
                             problem="not a regular file (a folder, pipe or device)",
                             expected=expected)
        if st.st_size > MAX_TEXT_BYTES:
            raise _too_big(path, expected, f"{st.st_size:,} bytes, over")
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
    except OSError as e:
        raise InputError(path=path, line=None, field=None,
                         problem=f"cannot read the file ({e.strerror or e})",
                         expected=expected) from None
    except MemoryError:
        raise InputError(path=path, line=None, field=None,
                         problem="not enough memory to read the file",
                         expected=f"{expected} that fits in memory") from None
    if len(data) > MAX_TEXT_BYTES:                     # it grew while we read it
        raise _too_big(path, expected, "over")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise InputError(path=path, line=1, field=None,
                             problem="the file is UTF-16 text (it starts with a UTF-16 "
                                     "byte-order mark)",
                             expected=f"UTF-8 text: {expected} (convert it, e.g. iconv -f "
                                      f"UTF-16 -t UTF-8)") from None
        if data[:2] == b"\x1f\x8b":         # a probe: said only "byte 0x8b"
            raise InputError(path=path, line=1, field=None,
                             problem="the file is gzip-compressed (it starts with gzip's "
                                     "magic bytes)",
                             expected=f"UTF-8 text: {expected} (decompress it first, e.g. "
                                      f"gunzip -k)") from None
        line = data[:e.start].count(b"\n") + 1
        raise InputError(path=path, line=line, field=None,
                         problem=f"byte 0x{data[e.start]:02x} is not UTF-8 text",
                         expected=expected) from None


def split_lines(text: str, path: str | None = None) -> list[str]:
    """Lines split on '\\n' only (so numbers match editors), a trailing '\\r' dropped. With
    ``path``: a file whose lines end in a lone '\\r' (classic Mac) is refused, naming it,
    instead of read as one long line."""
    if path is not None and "\n" not in text and "\r" in text.rstrip("\r"):
        raise InputError(path=path, line=1, field=None,
                         problem="its lines end in a carriage return alone (CR, classic Mac "
                                 "line endings), so it reads as one line",
                         expected="lines ending in LF or CRLF (convert it, e.g. "
                                  "tr '\\r' '\\n' < FILE)")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
