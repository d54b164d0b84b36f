"""The Python API's argument checks: what the ``agora`` commands' flags refuse, refused the
same way for ``agora.simulate(...)`` and the others -- a ``TypeError`` for a value of the
wrong type, a ``ValueError`` for one out of range, each naming the argument and what would
be right (a probe: ``seed=None`` ran unseeded, ``policy=None`` ended in an AttributeError
deep inside, ``seed=-1`` in numpy's own message)."""

from __future__ import annotations

import math
import os
from numbers import Integral, Real

MAX_SEED = 2 ** 63 - 1


class ArgTypeError(TypeError):
    """A value of the wrong type for the argument ``arg`` (the message names it): a
    ``TypeError`` to a Python caller, bad input to the ``agora`` commands (one line naming
    the flag, exit 2 -- a probe: ``agora schedule get --job ''`` ended in a traceback)."""

    def __init__(self, arg: str, message: str) -> None:
        super().__init__(message)
        self.arg = arg


class ArgValueError(ValueError):
    """A value of the right type that the argument ``arg`` cannot take (the message names
    it): a ``ValueError`` to a Python caller, one line naming the flag to ``agora``."""

    def __init__(self, arg: str, message: str) -> None:
        super().__init__(message)
        self.arg = arg


class ArgFileError(FileNotFoundError):
    """A file the argument ``arg`` names that is not there (the message names both): a
    ``FileNotFoundError`` to a Python caller, one line naming the flag to ``agora``."""

    def __init__(self, arg: str, message: str) -> None:
        super().__init__(message)
        self.arg = arg


def text(name: str, value, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ArgTypeError(name, f"{name}: got {value!r}; expected {what} (a non-empty "
                                 f"string)")
    return value


def path(name: str, value, what: str) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ArgTypeError(name, f"{name}: got {value!r}; expected {what} (a path)")
    return str(value)


def integer(name: str, value, lo: int, hi: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ArgTypeError(name, f"{name}: got {value!r}; expected a whole number{what}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: got {value}; expected a whole number >= {lo:,} and "
                         f"<= {hi:,}{what}")
    return int(value)


def number(name: str, value, *, gt: float | None = None, ge: float | None = None,
           le: float, what: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ArgTypeError(name, f"{name}: got {value!r}; expected a number{what}")
    v = float(value)
    low_ok = (gt is None or v > gt) and (ge is None or v >= ge)
    if not (math.isfinite(v) and low_ok and v <= le):
        low = f"> {gt:g}" if gt is not None else f">= {ge:g}"
        raise ValueError(f"{name}: got {value!r}; expected a number {low} and <= {le:g}{what}")
    return v


def optional(check, name: str, value, *args, **kw):
    return None if value is None else check(name, value, *args, **kw)


def choice(name: str, value, options) -> str:
    if not isinstance(value, str):          # a probe: split=["x"] was a ValueError
        raise ArgTypeError(name, f"{name}: got {value!r}; expected one of "
                                 f"{', '.join(options)} (a string)")
    if value not in options:
        raise ValueError(f"{name}: got {value!r}; expected one of {', '.join(options)}")
    return value


def policy(value) -> str:
    """A baseline's name, or a checkpoint file (as ``agora simulate --policy``)."""
    from agora.agents.baselines import FAMILIES, choices, is_baseline, make_policy
    from agora.agents.workloads.loader import file_problem

    if isinstance(value, os.PathLike):    # a checkpoint's path, as cluster and workload take
        value = os.fspath(value)            # (a probe: a Path was a TypeError)
    name = text("policy", value, f"a baseline ({choices()}) or a checkpoint file")
    if is_baseline(name) or file_problem(name) is None:
        return name
    if name.partition(":")[0] in FAMILIES:
        make_policy(name)                      # a known family with a bad value: says why
    raise ValueError(f"policy: {name!r} is neither a baseline ({choices()}) nor a "
                     f"checkpoint file")
