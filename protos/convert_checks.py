"""The checks every reader in ``protos/convert.py`` shares: :class:`ProtoError` (a ValueError
naming the field path, what was found and what would be right), :func:`decode` (bytes to a
message, or ProtoError), and the guards a reader applies to each field it reads -- no unknown
fields, required children set, integers and finite numbers within bounds, non-empty names,
valid ids, unique names. ``convert.py`` re-exports ``ProtoError`` and ``decode``; import them
from there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from agora.agents.limits import ID_TEXT, id_problem

M = TypeVar("M", bound=Message)


class ProtoError(ValueError):
    """A message that cannot be used as it is. ``field`` is the dotted path to the culprit
    (``workload.jobs[2].tasks[0].demand.resources.cpu_milli``)."""

    def __init__(self, field: str, problem: str, expected: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.expected = expected
        tail = f"; expected {expected}" if expected else ""
        super().__init__(f"{field}: {problem}{tail}")

    def __reduce__(self):  # pickle (Ray ships errors between processes) rebuilds from these
        return type(self), (self.field, self.problem, self.expected)


def decode(message_type: type[M], data: bytes, where: str = "message") -> M:
    """Parse ``data`` as ``message_type``, raising ProtoError on bytes that are not one."""
    try:
        return message_type.FromString(data)
    except DecodeError as e:
        raise ProtoError(where, f"cannot be parsed ({e})",
                         f"the bytes of an {message_type.DESCRIPTOR.full_name}") from None


# ---- checks shared by every reader ----

def _known(msg: Message, where: str) -> None:
    unknown = sorted({f.field_number for f in UnknownFieldSet(msg)})
    if unknown:
        raise ProtoError(where, f"unknown field number(s) {unknown}",
                         f"only the fields of {msg.DESCRIPTOR.full_name} this reader knows "
                         f"(upgrade the reader before writers use newer fields)")


def _child(msg: Message, name: str, where: str, *, required: bool) -> Message | None:
    if not msg.HasField(name):
        if required:
            raise ProtoError(f"{where}.{name}", "missing", "a value (this field is required)")
        return None
    child = getattr(msg, name)
    _known(child, f"{where}.{name}")
    return child


def _at_least(value: int, lowest: int, where: str) -> int:
    if value < lowest:
        raise ProtoError(where, f"{value} is too small", f"an integer >= {lowest}")
    return value


def _number(value: float, where: str, *, lowest: float = 0.0, above: bool = False,
            highest: float = math.inf) -> float:
    """A finite float in [lowest, highest] (or (lowest, highest] with ``above``)."""
    if not math.isfinite(value) or value < lowest or (above and value == lowest) \
            or value > highest:
        top = f" and <= {highest!r}" if highest < math.inf else ""
        raise ProtoError(where, f"{value!r} is out of range",
                         f"a finite number {'>' if above else '>='} {lowest!r}{top}")
    return value


MAX_NAME_FIELD = 200
"""characters of a name field (a site, ``site/node``, a gpu model): a 100 KB origin was
echoed whole in the ordered refusal"""


def _name(value: str, where: str) -> str:
    if not value:
        raise ProtoError(where, "empty", "a name")
    if len(value) > MAX_NAME_FIELD or not value.isprintable():
        shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
        raise ProtoError(where, f"{shown} ({len(value):,} characters)",
                         f"a name of 1-{MAX_NAME_FIELD} printable characters")
    return value


def _id(value: str, where: str) -> str:
    """A job or task id (``agents/limits.py``: no '/', white space or lone surrogates)."""
    bad = id_problem(value)
    if bad:
        raise ProtoError(where, bad, ID_TEXT)
    return value


def _at_most(value: int, highest: int, where: str) -> int:
    if value > highest:
        raise ProtoError(where, f"{value} is too large", f"an integer <= {highest}")
    return value


def _unique(names: Iterable[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ProtoError(f"{where}[{i}]", f"{what} {n!r} appears twice", f"unique {what}s")
        seen.add(n)


def _no_empty(value: str | None, where: str, meaning: str) -> str:
    if value == "":
        raise ProtoError(where, "empty string cannot be sent (an empty field means "
                         f"{meaning})", f"None for {meaning}, or a non-empty name")
    return value or ""
