"""The coordinator side of a cross-domain federation: a Flower ``ServerApp`` run by a
SuperLink (Flower's deployment engine; recipe in federation/RECIPE.md).

It runs Flower's FedAvg (``flwr.serverapp.strategy``, via ``federation.server``'s
``make_strategy``) over the real ``Grid`` the SuperLink hands it: one node per site's
SuperNode. Everything comes from the run config (``[tool.flwr.app.config]`` of
federation/app/pyproject.toml, overridable with ``flwr run --run-config``):

* ``num-server-rounds``, ``local-steps``, ``strategy``, ``min-fraction``, ``timeout-s``,
  ``seed``: the fields of ``FederationConfig``;
* ``min-nodes``: how many sites' SuperNodes must be connected before round 1 (Flower's
  strategies wait for them);
* ``initial-arrays``: path of an ``.npz`` (arrays ``arr_0``, ``arr_1``, ... in
  ``weight_names`` order) on the coordinator's machine, the model of round 0;
* ``final-arrays``: path where the final global arrays are written (``.npz``, same
  layout); empty: not written.

A value of the wrong kind or range is refused naming its run-config key. Flower's strategies
wait for ``min-nodes`` x ``min-fraction`` connected nodes before each round, once a second,
without end: a probe killed one of two SuperNodes under the default ``min-fraction`` 1.0 and
the run waited for good, naming no one. Here a wait longer than ``timeout-s`` ends the run
(``TooFewNodes``, one line saying how many are connected), ``final-arrays`` holding the model
of the last round that finished.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from agora.federation.server import FederationConfig, kept_model, make_strategy

app = ServerApp()

KEYS = {"num-server-rounds": ("rounds", int), "local-steps": ("local_steps", int),
        "strategy": ("strategy", str), "min-fraction": ("min_fraction", float),
        "timeout-s": ("timeout_s", float), "seed": ("seed", int),
        # (a review: the deployed app had no key for it, always 0.2, and "trimmed" with the
        # default 2 nodes was refused for good)
        "trim-beta": ("trim_beta", float)}
"""run-config key -> (``FederationConfig`` field, kind)"""
DEFAULTS = {"trim-beta": 0.2}


class TooFewNodes(RuntimeError):
    """Fewer nodes than a round needs stayed connected for longer than ``timeout-s``."""


def _value(rc: dict, key: str, kind: type):
    if key not in rc:
        if key in DEFAULTS:
            return DEFAULTS[key]
        raise ValueError(f"run config {key!r}: missing; expected it in [tool.flwr.app.config] "
                         f"of federation/app/pyproject.toml or in --run-config")
    v = rc[key]
    try:
        if kind is str:
            if not isinstance(v, str):
                raise TypeError
            return v
        if isinstance(v, bool) or (kind is int and isinstance(v, float)):
            raise TypeError
        return kind(v)
    except (TypeError, ValueError):
        what = {int: "a whole number", float: "a number", str: "text"}[kind]
        raise ValueError(f"run config {key!r}: {v!r}; expected {what}") from None


def _named(e: ValueError) -> ValueError:
    """``e`` (naming a ``FederationConfig`` field) naming the run-config key instead (a
    probe: "rounds: -1" for num-server-rounds)."""
    field, _, rest = str(e).partition(": ")
    key = next((k for k, (f, _) in KEYS.items() if f == field), None)
    return ValueError(f"run config {key!r}: {rest}") if key else e


def config_from(run_config: dict) -> FederationConfig:
    kw = {field: _value(run_config, key, kind) for key, (field, kind) in KEYS.items()}
    try:
        return FederationConfig(**kw)
    except ValueError as e:
        raise _named(e) from None


def min_nodes(run_config: dict) -> int:
    n = _value(run_config, "min-nodes", int)
    if n < 1:                              # a probe: 0 was taken, the run went on with one
        raise ValueError(f"run config 'min-nodes': {n}; expected the number of sites' "
                         f"SuperNodes a round is run with, >= 1")
    return n


class BoundedWait:
    """The SuperLink's grid, whose node list a round's ``need`` nodes may be missing from
    for at most ``wait_s`` seconds in a row: Flower's ``sample_nodes`` polls
    ``get_node_ids`` once a second until enough are connected, for good (module doc)."""

    def __init__(self, grid: Grid, need: int, wait_s: float, clock=time.monotonic) -> None:
        self._grid, self.need, self.wait_s, self._clock = grid, need, wait_s, clock
        self._short_since: float | None = None

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

    def get_node_ids(self):
        ids = list(self._grid.get_node_ids())
        if len(ids) >= self.need:
            self._short_since = None
            return ids
        now = self._clock()
        if self._short_since is None:
            self._short_since = now
        elif now - self._short_since > self.wait_s:
            raise TooFewNodes(f"{len(ids)} of the {self.need} nodes a round needs (run config "
                              f"'min-nodes' x 'min-fraction') connected for {self.wait_s:g} s "
                              f"('timeout-s'); expected the sites' SuperNodes running, or a "
                              f"smaller 'min-fraction' to go on without them")
        return ids


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    cfg = config_from(rc)
    print(f"agora federation: {cfg}", flush=True)
    path = str(rc.get("initial-arrays", ""))
    if not path or not Path(path).is_file():     # a probe: "" raised FileNotFoundError
        raise ValueError(f"run config 'initial-arrays': {path!r} is no file; expected the "
                         f"path of an .npz of the round-0 model on this machine "
                         f"(federation/RECIPE.md: --run-config \"initial-arrays='/tmp/init.npz'"
                         f"\")")
    with np.load(path) as f:
        initial = [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]
    try:
        strategy = make_strategy(cfg, min_nodes(rc))
    except ValueError as e:
        raise _named(e) from None
    random.seed(cfg.seed)                  # Flower samples nodes with the global ``random``
    out = str(rc.get("final-arrays", ""))
    try:
        result = strategy.start(
            grid=BoundedWait(grid, strategy.min_available_nodes, cfg.timeout_s),
            initial_arrays=ArrayRecord(initial), num_rounds=cfg.rounds, timeout=cfg.timeout_s,
            train_config=ConfigRecord({"local-steps": cfg.local_steps, "seed": cfg.seed}),
            evaluate_config=ConfigRecord({"seed": cfg.seed}))
    except TooFewNodes as e:
        _left_out(strategy)
        kept = strategy.latest.to_numpy_ndarrays() if strategy.latest is not None else initial
        if out:
            np.savez(out, *kept)
        print(f"agora federation: stopped: {e}" + (f"; {out} holds the model of the last "
                                                  f"round that finished" if out else ""),
              flush=True)
        raise
    result = kept_model(result, initial)
    _left_out(strategy)
    if out:
        np.savez(out, *result.arrays.to_numpy_ndarrays())


def _left_out(strategy) -> None:
    for rnd, node, why in strategy.refused:
        print(f"agora federation: round {rnd}: node {node} left out: {why}", flush=True)
