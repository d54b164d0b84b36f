"""Shared assertion for reader tests: an InputError names the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agora.agents.workloads.errors import InputError


def check(e: InputError, path: Path | str, line: int | None, field: str | None,
          *words: str) -> None:
    """The error names the file, line and field, and says the given words."""
    s = str(e)
    assert e.path == str(path) and s.startswith(str(path)), s
    assert e.line == line, s
    if line is not None:
        assert f"{path}:{line}:" in s, s
    assert e.field == field, s
    if field:
        assert f"field '{field}'" in s, s
    for w in words:
        assert w in s, s


def fails(reader, path: Path, text: str | bytes, *args, **kw) -> InputError:
    """Write ``text`` to ``path`` and return the InputError ``reader(path, ...)`` raises."""
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as ei:
        reader(str(path), *args, **kw)
    return ei.value
