"""``--json`` output that is JSON: Python's ``json.dumps`` writes ``NaN`` and ``Infinity``
for non-finite floats, which no strict JSON reader (``jq``, JavaScript's ``JSON.parse``)
accepts. A metric that is undefined for a run (e.g. a mean over no jobs) is written ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (also numpy's) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(finite(obj), allow_nan=False, **kw)
