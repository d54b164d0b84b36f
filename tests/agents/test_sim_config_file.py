"""The simulation YAML (``agents/sim/config.py``, ``agora ... --config``): read with the
line-aware loader of ``agents/workloads/yamlmarks.py`` (duplicate keys refused, anchors and
aliases bounded), every field checked, a bad one an ``InputError`` naming file, line and field.
Whatever text it is given, it returns a valid SimConfig or raises InputError, nothing else."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.sim.config import (Malleability, Objective, SimConfig, load_sim_config,
                                     read_sim_config)
from agora.agents.workloads.errors import InputError


def write(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "sim.yaml"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def test_a_full_file_is_read_with_the_line_of_each_key(tmp_path):
    p = write(tmp_path, "# settings\nobjective:\n  w_util: 1\n  w_qos: 0\n  w_energy: 0.5\n"
                        "  slowdown_bound_s: 30\nseed: 12\ncheck_invariants: true\n"
                        "record_attempts: false\nmalleable: {contention: 0.1, warmup_s: 4}\n")
    cfg, lines = read_sim_config(p)
    assert cfg == SimConfig(objective=Objective(w_util=1.0, w_qos=0.0, w_energy=0.5,
                                                slowdown_bound_s=30.0),
                            seed=12, check_invariants=True, record_attempts=False,
                            malleable=Malleability(contention=0.1, warmup_s=4.0))
    assert lines == {"objective": 2, "seed": 7, "check_invariants": 8, "record_attempts": 9,
                     "malleable": 10}
    assert load_sim_config(p, seed=3).seed == 3 and load_sim_config(None) == SimConfig()


@pytest.mark.parametrize("text", ["", "# nothing set\n", "null\n", "objective:\nmalleable:\n"])
def test_an_empty_file_or_section_gives_the_defaults(tmp_path, text):
    assert load_sim_config(write(tmp_path, text)) == SimConfig()


@pytest.mark.parametrize("text, line, field, found, expected", [
    ("objective:\n  w_util: .nan\n", 2, "objective.w_util", "found NaN",
     "a finite number >= 0"),
    ("objective:\n  w_energy: -.inf\n", 2, "objective.w_energy", "found -Infinity",
     "a finite number >= 0"),
    ("objective:\n  w_util: '0.5'\n", 2, "objective.w_util", "found '0.5'", "a finite number"),
    ("objective:\n  w_util: 10000001\n", 2, "objective.w_util", "found 10000001",
     "<= 1,000,000"),
    ("objective:\n  slowdown_bound_s: 0\n", 2, "objective.slowdown_bound_s", "found 0",
     "a finite number > 0"),
    ("objective:\n  slowdown_bound_s: -3\n", 2, "objective.slowdown_bound_s", "found -3",
     "a finite number > 0"),
    ("objective: {w_util: 0, w_qos: 0, w_energy: 0}\n", 1, "objective", "every weight is 0",
     "at least one of w_util, w_qos, w_energy > 0"),
    ("objective:\n  w_utl: 1\n", 2, "objective.w_utl", "unknown key 'w_utl'",
     "only w_util, w_qos, w_energy, slowdown_bound_s"),
    ("objective: 5\n", 1, "objective", "found 5", "a mapping with keys w_util"),
    ("objective: abc\n", 1, "objective", "found 'abc'", "a mapping with keys w_util"),
    ("seed: -1\n", 1, "seed", "found -1 (negative)", "a whole number >= 0"),
    ("seed: abc\n", 1, "seed", "found 'abc'", "a whole number >= 0"),
    ("seed: 7.0\n", 1, "seed", "found 7.0", "a whole number >= 0 and < 2^63"),
    ("seed: 9223372036854775808\n", 1, "seed", "found 9223372036854775808", "< 2^63"),
    ("seed: true\n", 1, "seed", "found true", "a whole number"),
    ("seed: 2001-01-01\n", 1, "seed", "found datetime.date(2001, 1, 1)", "a whole number"),
    ("check_invariants: 'no'\n", 1, "check_invariants", "found 'no'", "true or false"),
    ("check_invariants: 1\n", 1, "check_invariants", "found 1", "true or false"),
    ("record_attempts: null\n", 1, "record_attempts", "found null", "true or false"),
    ("malleable: {contention: -1}\n", 1, "malleable.contention", "found -1",
     "a finite number >= 0"),
    ("malleable:\n  warmup_s: .nan\n", 2, "malleable.warmup_s", "found NaN",
     "a finite number >= 0"),
    ("malleable: {speedup: 2}\n", 1, "malleable.speedup", "unknown key 'speedup'",
     "only contention, warmup_s"),
    ("malleable: [1]\n", 1, "malleable", "found a list", "a mapping with keys contention"),
    ("seed: 1\nobjectiv: {}\n", 2, "objectiv", "unknown key 'objectiv'",
     "only objective, seed, check_invariants, record_attempts, malleable"),
    ("objective: {w_util: 1}\nseed: 3\nobjective: {w_qos: 1}\n", 3, "objective",
     "key 'objective' appears twice in one mapping (first on line 1)", "each key once"),
])
def test_each_bad_field_names_file_line_and_field(tmp_path, text, line, field, found, expected):
    p = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_sim_config(p)
    err = e.value
    assert (err.path, err.line, err.field) == (str(p), line, field), str(err)
    assert found in err.problem and expected in err.expected, str(err)
    assert str(err).startswith(f"{p}:{line}: field '{field}': ")


@pytest.mark.parametrize("text, line, problem", [
    ("objective:\n  w_util: [\n", 3, "not valid YAML"),
    ("seed: 1\n---\nseed: 2\n", 2, "expected a single document"),
    ("? [a]\n: 1\n", 1, "a mapping key is a list or mapping"),
    ("- seed\n", 1, "found a list"),
    ("just text\n", 1, "found 'just text'"),
    ("seed: 2001-13-45\n", 1, "cannot read value '2001-13-45'"),
    (b"seed: 1\n\xf1\n", 2, "byte 0xf1 is not UTF-8 text"),
    ("\ufeff\ufeffseed: 1\n".encode("utf-16"), 1, "the file is UTF-16 text"),
    (b"seed: 1\n\xff\xfe", 2, "byte 0xff is not UTF-8 text"),   # no BOM at the start
])
def test_a_file_that_is_no_mapping_is_named_with_its_line(tmp_path, text, line, problem):
    p = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_sim_config(p)
    assert e.value.path == str(p) and e.value.line == line and problem in e.value.problem


def test_a_missing_file_or_a_folder_is_named(tmp_path):
    for p in (tmp_path / "missing.yaml", tmp_path):
        with pytest.raises(InputError, match="cannot read the file|not a regular file") as e:
            load_sim_config(p)
        assert e.value.path == str(p)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    # 9 levels of 10 aliases: 10^9 values once expanded, from a file of ~350 bytes.
    levels = ["&l0 [" + ", ".join(["x"] * 10) + "]"]
    levels += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    p = write(tmp_path, "seed: [" + ", ".join(levels) + "]\n")
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="anchors and aliases expand to more than"):
        load_sim_config(p)
    assert time.perf_counter() - t0 < 10
    # A smaller one (10^5 values) is built without expanding and refused by the seed check.
    p = write(tmp_path, "seed: [" + ", ".join(levels[:5]) + "]\n")
    with pytest.raises(InputError, match="field 'seed': found a list"):
        load_sim_config(p)


def test_the_dataclasses_refuse_what_would_crash_a_run():
    # slowdown_bound_s 0 divided by zero after a whole run; NaN weights gave score NaN.
    for kw in ({"slowdown_bound_s": 0.0}, {"w_util": math.nan}, {"w_qos": -1.0},
               {"w_energy": math.inf}, {"slowdown_bound_s": math.inf}):
        with pytest.raises(ValueError, match="objective"):
            Objective(**kw)


# -- property: any text gives a valid SimConfig or an InputError ----------------------------

TOKENS = ["objective:", "w_util:", "w_qos:", "w_energy:", "slowdown_bound_s:", "seed:",
          "check_invariants:", "record_attempts:", "malleable:", "contention:", "warmup_s:",
          "\n", "\n  ", "  ", " ", "0", "1", "-1", "0.5", "7.0", "1e3", "1.0e3", ".nan", ".inf",
          "-.inf", "true", "no", "null", "~", "[", "]", "{", "}", ",", ":", "-", "? ", "&a ",
          "*a", "<<: ", "---", "...", "'x'", '"', "#", "\t", "!!python/object/apply:os.system ",
          "!!binary ", "!!set ", "!!float ", "2001-13-45", "2001-01-01", "0x1F", "010", "1:30",
          "1_000", "99999999999999999999", "\x00", "é", "\ufeff", "%YAML 1.1\n", "|\n", ">\n"]

yamlish = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=30).map("".join),
    st.text(max_size=60),
)


def valid(cfg: SimConfig) -> None:
    o, m = cfg.objective, cfg.malleable
    for v in (o.w_util, o.w_qos, o.w_energy):
        assert type(v) is float and math.isfinite(v) and v >= 0
    assert any((o.w_util, o.w_qos, o.w_energy))
    assert type(o.slowdown_bound_s) is float and 0 < o.slowdown_bound_s < math.inf
    assert type(cfg.seed) is int and 0 <= cfg.seed < 2 ** 63
    assert type(cfg.check_invariants) is bool and type(cfg.record_attempts) is bool
    for v in (m.contention, m.warmup_s):
        assert math.isfinite(v) and v >= 0


_DIR = tempfile.TemporaryDirectory(prefix="agora-simcfg-")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yamlish)
def test_any_text_gives_a_valid_config_or_an_input_error(text):
    p = Path(_DIR.name) / "sim.yaml"
    try:
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
    except UnicodeEncodeError:
        return
    try:
        cfg = load_sim_config(p)
    except InputError as e:
        assert e.path == str(p) and str(e).startswith(str(p))
        return
    valid(cfg)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=80))
def test_any_bytes_give_a_valid_config_or_an_input_error(data):
    p = Path(_DIR.name) / "sim-bytes.yaml"
    p.write_bytes(data)
    try:
        cfg = load_sim_config(p)
    except InputError as e:
        assert e.path == str(p)
        return
    valid(cfg)
