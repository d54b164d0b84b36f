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
  layout); empty: not written;
* ``initial-checkpoint`` (instead of ``initial-arrays``): an Agora checkpoint, whose network
  the sites' ``federation.deployed_learner`` train; then ``final-checkpoint`` writes the
  final model as one (what ``agora evaluate`` and ``agora simulate --policy`` read);
* ``final-metrics``: path of a JSON-lines file of each round's aggregated train and
  evaluate metrics.

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
    initial, agents = _initial(rc)
    try:
        strategy = make_strategy(cfg, min_nodes(rc))
    except ValueError as e:
        raise _named(e) from None
    random.seed(cfg.seed)                  # Flower samples nodes with the global ``random``
    out = _outputs(rc, agents)
    try:
        result = strategy.start(
            grid=BoundedWait(grid, strategy.min_available_nodes, cfg.timeout_s),
            initial_arrays=ArrayRecord(initial), num_rounds=cfg.rounds, timeout=cfg.timeout_s,
            train_config=ConfigRecord({"local-steps": cfg.local_steps, "seed": cfg.seed}),
            evaluate_config=ConfigRecord({"seed": cfg.seed}))
    except TooFewNodes as e:
        _left_out(strategy)
        kept = strategy.latest.to_numpy_ndarrays() if strategy.latest is not None else initial
        written = _write(out, kept, agents, cfg, None)
        print(f"agora federation: stopped: {e}" + (f"; {', '.join(written)} hold the model of "
                                                  f"the last round that finished"
                                                  if written else ""), flush=True)
        raise
    result = kept_model(result, initial)
    _left_out(strategy)
    _write(out, result.arrays.to_numpy_ndarrays(), agents, cfg, result)


def _initial(rc: dict) -> tuple[list[np.ndarray], tuple | None]:
    """(round-0 arrays, None or, from ``initial-checkpoint``, its agents and what of it the
    final checkpoint keeps) from ``initial-arrays`` (an .npz) or ``initial-checkpoint`` (an
    Agora checkpoint; exactly one of them)."""
    arrays, agents = str(rc.get("initial-arrays", "")), str(rc.get("initial-checkpoint", ""))
    if bool(arrays) == bool(agents):
        raise ValueError("run config 'initial-arrays' / 'initial-checkpoint': "
                         + ("both given" if arrays else "neither given") + "; expected one: "
                         "the path of an .npz of the round-0 model, or of an Agora checkpoint "
                         "(agents/learn/checkpoints/learned-synE.pt trains Agora's agents), "
                         "on this machine (federation/RECIPE.md)")
    path = arrays or agents
    if not Path(path).is_file():                 # a probe: "" raised FileNotFoundError
        key = "initial-arrays" if arrays else "initial-checkpoint"
        raise ValueError(f"run config {key!r}: {path!r} is no file; expected the path of "
                         f"{'an .npz' if arrays else 'an Agora checkpoint'} of the round-0 "
                         f"model on this machine (federation/RECIPE.md: --run-config "
                         f"\"{key}='/tmp/init.{'npz' if arrays else 'pt'}'\")")
    if arrays:
        with np.load(path) as f:
            return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))], None
    from agora.agents.learn import checkpoint
    from agora.agents.learn.networks import get_weights

    loaded, blob = checkpoint.load_agents(path)
    # its training configuration goes on with the final checkpoint: without it a site's
    # learner (federation/deployed_learner.py) refused the result as its checkpoint
    kept = {"train_config": blob["train_config"]} if "train_config" in blob else {}
    return get_weights(loaded.modules), (loaded, kept)


def _outputs(rc: dict, agents) -> dict[str, str]:
    out = {k: str(rc.get(k, "")) for k in ("final-arrays", "final-checkpoint", "final-metrics")}
    if out["final-checkpoint"] and agents is None:
        raise ValueError(f"run config 'final-checkpoint': {out['final-checkpoint']!r} with "
                         f"'initial-arrays'; expected 'initial-checkpoint' (the checkpoint "
                         f"gives the network its configuration)")
    return {k: v for k, v in out.items() if v}


def _write(out: dict[str, str], arrays: list[np.ndarray], agents, cfg: FederationConfig,
           result) -> list[str]:
    """The final model as ``final-arrays`` (.npz) and ``final-checkpoint`` (an Agora
    checkpoint: ``agora evaluate --checkpoint``, ``agora simulate --policy``, ``agora up``'s
    ``policy``), and the rounds' aggregated metrics as ``final-metrics`` (JSON lines)."""
    written = []
    if "final-arrays" in out:
        np.savez(out["final-arrays"], *arrays)
        written.append(out["final-arrays"])
    if "final-checkpoint" in out:
        from dataclasses import asdict

        from agora.agents.learn import checkpoint
        from agora.agents.learn.networks import set_weights

        model, kept = agents
        set_weights(model.modules, arrays)
        checkpoint.save(out["final-checkpoint"], agents=model,
                        extra={**kept, "federation": {**asdict(cfg), "deployed": True}})
        written.append(out["final-checkpoint"])
    if "final-metrics" in out and result is not None:
        import json

        rounds = sorted({*result.train_metrics_clientapp, *result.evaluate_metrics_clientapp})
        with open(out["final-metrics"], "w") as f:
            for r in rounds:
                row = {"round": r, **{f"train/{k}": v for k, v in
                                      dict(result.train_metrics_clientapp.get(r, {})).items()},
                       **{k if k.startswith("eval/") else f"eval/{k}": v for k, v in
                          dict(result.evaluate_metrics_clientapp.get(r, {})).items()}}
                f.write(json.dumps(row) + "\n")
        written.append(out["final-metrics"])
    return written


def _left_out(strategy) -> None:
    for rnd, node, why in strategy.refused:
        print(f"agora federation: round {rnd}: node {node} left out: {why}", flush=True)
