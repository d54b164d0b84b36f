"""bench/pareto.py: the front it reports is exactly the non-dominated points, and every
choice its search can make is a policy the simulator knows."""

from __future__ import annotations

import optuna
from hypothesis import given
from hypothesis import strategies as st

from agora.agents.baselines import BASELINES, make_policy
from bench.pareto import dominates, pareto_front, policy_of

value = st.floats(min_value=0, max_value=100, allow_nan=False)
point = st.builds(lambda j, e, u: {"jct_mean_s": j, "energy_kwh": e, "util_mean": u},
                  value, value, value)


@given(st.lists(point, min_size=1, max_size=12))
def test_the_front_is_the_points_nothing_dominates(points):
    front = pareto_front(points)
    assert front, "a non-empty set has a non-dominated point"
    for p in points:
        beaten = any(dominates(q, p) for q in points)
        assert any(p is f for f in front) == (not beaten)


def test_dominance_minimises_jct_and_energy_and_maximises_utilisation():
    base = {"jct_mean_s": 10, "energy_kwh": 10, "util_mean": 0.5}
    assert dominates({**base, "jct_mean_s": 9}, base)
    assert dominates({**base, "energy_kwh": 9}, base)
    assert dominates({**base, "util_mean": 0.6}, base)
    assert not dominates({**base, "util_mean": 0.4}, base)
    assert not dominates(base, base)
    assert not dominates({**base, "jct_mean_s": 9, "energy_kwh": 11}, base)


def test_every_search_choice_is_a_policy_the_simulator_knows():
    params = [{"policy": b} for b in BASELINES] + [
        {"policy": "srpt-cap", "cap": 1}, {"policy": "srpt-cap", "cap": 64},
        {"policy": "weighted-fair", "alpha": -2.0}, {"policy": "weighted-fair", "alpha": 2.0},
        {"policy": "energy-first", "wait": "never"},
        {"policy": "energy-first", "wait": "threshold", "theta": 0.01},
        {"policy": "energy-first", "wait": "threshold", "theta": 10.0}]
    for p in params:
        name = policy_of(optuna.trial.FixedTrial(p))
        assert make_policy(name).name == name, p
