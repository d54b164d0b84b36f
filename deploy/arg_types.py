"""Argparse ``type``s for numbers, checked when the command line is parsed (exit 2 naming the
option). Imports argparse and math only, so that any command -- also a replica's, which must
start light -- can use them (``cli_args`` re-exports them for the simulation commands)."""

from __future__ import annotations

import argparse
import math


def _number(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
            unit: str = ""):
    """An argparse ``type``: a finite number within the bounds."""
    parts = [f">= {ge:g}" if ge is not None else "", f"> {gt:g}" if gt is not None else "",
             f"<= {le:,.0f}" if le is not None and le >= 1e4 else
             f"<= {le:g}" if le is not None else ""]
    expected = "a finite number " + " and ".join(p for p in parts if p) + \
        (f" ({unit})" if unit else "")

    def number(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"found {text!r}; expected {expected}") from None
        if not (math.isfinite(x) and (ge is None or x >= ge) and (gt is None or x > gt)
                and (le is None or x <= le)):
            raise argparse.ArgumentTypeError(f"found {text}; expected {expected}")
        return x

    return number


def _whole(*, ge: int, le: int | None = None, text: str = ""):
    """An argparse ``type``: a whole number within the bounds."""
    expected = text or (f"a whole number >= {ge}" + (f" and <= {le:,}" if le is not None
                                                     else ""))

    def whole(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"found {value!r}; expected {expected}") from None
        if n < ge or (le is not None and n > le):
            raise argparse.ArgumentTypeError(f"found {value}; expected {expected}")
        return n

    return whole


def check_replicas(n: int) -> None:
    """A group of ``n`` replicas is 3f+1 (``agora keys``, ``agora certs``): a ValueError
    naming ``--replicas`` otherwise."""
    if n < 1 or (n - 1) % 3:
        raise ValueError(f"--replicas: got {n}; expected 3f+1 (1, 4, 7, 10, ...)")
