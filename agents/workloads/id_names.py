"""Ids from names that are none (``limits.id_problem``): a trace's task named after a file
(``MAKE_FASTA__rsem/S.cerevisiae.fa__ID05``) or longer than an id may be. Deterministic: the
same names give the same ids at every read."""

from __future__ import annotations

import hashlib
import re

from agora.agents.limits import MAX_NAME, id_problem

_HASHED = 16
"""hex digits of sha256 that end an id made from a text too long for one"""


def as_id(text: str) -> str:
    """A job or task id for a WfCommons name or id (``limits.id_problem``): as written when
    it is one; else white space, '/' and other unprintable characters made '_', '.' and '..'
    prefixed '_', and one still past ``MAX_NAME`` characters cut to leave room for '~' and
    16 hex digits of the text's sha256. Real Nextflow ids name files (a probe:
    ``MAKE_TRANSCRIPTS_FASTA__rsem/Saccharomyces_cerevisiae...`` and 216-character ids
    refused the whole workflow)."""
    if id_problem(text) is None:
        return text
    out = "".join("_" if c.isspace() or not c.isprintable() else c
                  for c in re.sub(r"[\s/]+", "_", text))
    if out in (".", ".."):
        out = "_" + out
    if len(out) > MAX_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASHED]
        out = f"{out[:MAX_NAME - _HASHED - 1]}~{digest}"
    return out


def task_ids(raw: list[str]) -> dict[str, str]:
    """Each distinct raw task id -> its task id (``as_id``), distinct: a raw id that is an
    id keeps it; one made that another already has (``a/b`` beside ``a_b``) gets '~2',
    '~3', ... (cut to fit)."""
    out = {r: r for r in raw if id_problem(r) is None}
    taken = set(out)
    for r in raw:
        if r not in out:
            out[r] = unused(as_id(r), taken)
            taken.add(out[r])
    return out


def unused(base: str, taken: set[str]) -> str:
    """``base`` (an id), or the first of ``base~2``, ``base~3``, ... not in ``taken``, cut
    to stay an id (two long names alike made one of 130 characters: a review)."""
    t, n = base, 2
    while t in taken:
        suffix = f"~{n}"
        t, n = base[:MAX_NAME - len(suffix)] + suffix, n + 1
    return t
