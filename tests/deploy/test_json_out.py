"""``--json`` output is strict JSON: a non-finite float (an undefined metric) is ``null``,
never Python's ``NaN`` / ``Infinity``, which jq and JSON.parse refuse."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from agora.deploy import json_out

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=20)


def _strict(text: str):
    def refuse(c):
        raise AssertionError(f"non-standard JSON constant {c}")
    return json.loads(text, parse_constant=refuse)


@given(values)
def test_any_value_dumps_as_strict_json_keeping_finite_numbers(v):
    back = _strict(json_out.dumps(v))
    if isinstance(v, float):
        assert back == (v if math.isfinite(v) else None)


def test_numpy_floats_and_metrics_rows():
    row = {"jct_mean_s": np.float64("nan"), "energy_kwh": np.float64(1.5),
           "score": float("inf"), "per_seed": [1.0, float("-inf")]}
    assert _strict(json_out.dumps(row)) == {"jct_mean_s": None, "energy_kwh": 1.5,
                                            "score": None, "per_seed": [1.0, None]}
