"""`agora up --config FILE` (deploy/up_config.py), property-based: any YAML mapping (mostly
valid values, sometimes anything) and any text either loads or is an UpConfigError naming the
file -- the loader never fails any other way. The worked cases are in test_up_config.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.deploy.up_config import (SPLITS, STRATEGIES, UpConfig, UpConfigError,
                                    load_up_config)

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                     st.sampled_from(["default", "auto", "synthetic", "synthetic:jobs=3",
                                      "fedavg", "live", "simulated", "stratified", "~", ".",
                                      "/", "x.yaml", "x.csv", "x.jsonl", "ck.pt", "0.0.0.0"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans()), inner,
                    max_size=3)), max_leaves=8)
def _mixed(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a valid value, sometimes anything."""
    return st.one_of(valid, valid, valid, _VALUES)


def _section(**valid: st.SearchStrategy) -> st.SearchStrategy:
    keys = {k: _mixed(v) for k, v in valid.items()}
    return _mixed(st.fixed_dictionaries({}, optional=keys))


_NEAR_VALID = {
    "seed": st.integers(0, 10**6), "cluster": st.just("default"), "sites": st.integers(1, 16),
    "split": st.sampled_from(SPLITS),
    "workload": st.sampled_from(["synthetic", "synthetic:jobs=5", "synthetic:jobs=5,dag=0.5"]),
    "load": st.one_of(st.none(), st.floats(0.1, 2)), "policy": st.just("ck.pt"),
    "replicas": st.sampled_from([4, 7, 10]),
    "coordinator": _section(batch_size=st.integers(1, 64),
                            checkpoint_interval=st.sampled_from([16, 32, 64]),
                            view_change_timeout_s=st.floats(0.1, 5),
                            sqlite_synchronous=st.sampled_from(["NORMAL", "FULL"]),
                            data_dir=st.just("db")),
    "speed": st.floats(0.5, 100),
    "episodes": st.integers(1, 5),
    "federation": _section(enabled=st.booleans(), rounds=st.integers(1, 3),
                           local_steps=st.integers(1, 1000),
                           strategy=st.sampled_from(STRATEGIES)),
    "ray": _section(address=st.sampled_from([None, "auto", "127.0.0.1:6379"]),
                    num_cpus=st.one_of(st.none(), st.integers(1, 8)),
                    agent_num_cpus=st.floats(0, 2), agent_max_restarts=st.integers(-1, 3),
                    agent_max_task_retries=st.integers(-1, 3), multi_node=st.booleans()),
    "metrics": _section(enabled=st.booleans(), host=st.sampled_from(["127.0.0.1", "0.0.0.0"])),
    "tls": _section(enabled=st.booleans(), certs_dir=st.sampled_from(["certs", "/tmp/c"])),
    "out": st.sampled_from(["o", "a/b", "/tmp/agora-out"]),
    "round_timeout_s": st.floats(0.01, 60),
}
_EXTRA = st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans()),
                         _VALUES, max_size=2)
_MAPPINGS = st.one_of(
    st.fixed_dictionaries({}, optional={k: _mixed(v) for k, v in _NEAR_VALID.items()}),
    st.tuples(st.fixed_dictionaries({}, optional={k: _mixed(v) for k, v in _NEAR_VALID.items()}),
              _EXTRA).map(lambda t: {**t[1], **t[0]}),
)


def _loads_or_refuses(text: str, folder: Path) -> None:
    p = folder / "up.yaml"
    p.write_text(text)
    try:
        cfg = load_up_config(p)
    except UpConfigError as e:
        assert e.path == str(p) and str(e).startswith(str(p))
    else:
        assert isinstance(cfg, UpConfig) and cfg.replicas % 3 == 1 and cfg.f >= 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_MAPPINGS)
def test_any_yaml_mapping_loads_or_raises_up_config_error(data):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "ck.pt").write_bytes(b"")
        _loads_or_refuses(yaml.safe_dump(data, allow_unicode=True), Path(d))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=st.sampled_from(list("seed:replicas 4\n-[]{},&*!|>'\"#%@`?~\t.0")),
                    max_size=60))
def test_any_text_loads_or_raises_up_config_error(text):
    with tempfile.TemporaryDirectory() as d:
        _loads_or_refuses(text, Path(d))
