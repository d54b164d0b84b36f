"""One error type for every bad input Agora reads: it names the file, the line, the field,
what was found, and what would be right, so a person can fix the input without reading code."""

from __future__ import annotations

import re

_NEWLINES = re.compile(r"\s*[\r\n]+\s*")

class InputError(ValueError):
    """A workload or cluster file that cannot be used as it is.

    ``line`` is 1-based (None when the problem is not tied to one line, e.g. an empty file).
    ``field`` is a dotted path into the record (``tasks[2].demand.cpu``), or None."""

    def __init__(self, *, path: str, line: int | None, field: str | None, problem: str,
                 expected: str | None = None) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
        self.expected = expected
        super().__init__(str(self))

    def __reduce__(self):
        # Keyword-only constructor: rebuild from fields so it survives pickling (Ray, gRPC).
        return (_rebuild, (self.path, self.line, self.field, self.problem, self.expected))

    def __str__(self) -> str:
        # one line, whatever a library's message held (a person reads it in a terminal)
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"field '{self.field}': {self.problem}" if self.field else self.problem
        tail = f"; expected {self.expected}" if self.expected else ""
        return _NEWLINES.sub(" ", f"{where}: {what}{tail}")


def origin_sites(cluster, path: str) -> tuple[str, ...]:
    """The site names a trace's jobs are given origins among: refused, naming ``path``, when
    the cluster has none (the trace readers hash or number jobs onto them)."""
    sites = cluster.site_names
    if not sites:
        raise InputError(path=path, line=None, field=None, problem="the cluster has no sites",
                         expected="a cluster with at least one site")
    return sites


def skipped_line(source: str, skipped: dict[str, tuple[str, ...]], reasons: dict[str, str],
                 noun: str, why: str, shown: int = 3) -> str | None:
    """One line naming what a trace reader skipped, by reason (a key of ``reasons``) -> names
    in reading order, e.g. ``x.csv: skipped 2 jobs the trace cannot replay whole: 2 with a
    task not Terminated (j_3, j_4)``; None when nothing was skipped. ``noun``: what was
    skipped (pluralised with an s); ``why``: the words after it."""
    n = sum(len(v) for v in skipped.values())
    if not n:
        return None
    parts = []
    for reason, names in skipped.items():
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        parts.append(f"{len(names)} with {reasons[reason]} ({', '.join(names[:shown])}{more})")
    return f"{source}: skipped {n} {noun}{'s' if n > 1 else ''} {why}: {'; '.join(parts)}"


def _rebuild(path, line, field, problem, expected) -> InputError:
    return InputError(path=path, line=line, field=field, problem=problem, expected=expected)
