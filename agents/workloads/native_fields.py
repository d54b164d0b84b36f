"""What the native readers share: names and ids checked against ``agents/limits.py``, and
numbers written back as they were read (``agents/workloads/native.py``,
``native_cluster.py``)."""

from __future__ import annotations

from typing import Any

from agora.agents.domain import MILLI
from agora.agents.limits import ID_TEXT, SITE_NAME_TEXT, id_problem, site_name_problem
from agora.agents.workloads.yamlmarks import Where, get_str


def named(w: Where, v: Any, problem, alphabet: str) -> str:
    """A string ``problem`` (``agents/limits.py``) finds nothing wrong with."""
    name = get_str(w, v)
    bad = problem(name)
    if bad:
        raise w.error(bad, alphabet)
    return name


def site_name(w: Where, v: Any) -> str:
    """A site or node name (``limits.site_name_problem``)."""
    return named(w, v, site_name_problem, SITE_NAME_TEXT)


def ident(w: Where, v: Any) -> str:
    """A job or task id (``limits.id_problem``)."""
    return named(w, v, id_problem, ID_TEXT)


def num(x: float) -> int | float:
    """A number as the file would write it: an int when whole."""
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) < 2**53 else x


def units(milli: int) -> int | float:
    """millicores -> cores, milli-gpus -> gpus (an int when whole)."""
    return milli // MILLI if milli % MILLI == 0 else milli / MILLI
