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
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from agora.federation.server import FederationConfig, kept_model, make_strategy

app = ServerApp()


def config_from(run_config: dict) -> FederationConfig:
    return FederationConfig(rounds=int(run_config["num-server-rounds"]),
                            local_steps=int(run_config["local-steps"]),
                            strategy=str(run_config["strategy"]),
                            min_fraction=float(run_config["min-fraction"]),
                            timeout_s=float(run_config["timeout-s"]),
                            seed=int(run_config["seed"]),
                            # (a review: the deployed app had no key for it, always 0.2,
                            # and "trimmed" with the default 2 nodes was refused for good)
                            trim_beta=float(run_config.get("trim-beta", 0.2)))


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
    strategy = make_strategy(cfg, int(rc["min-nodes"]))
    random.seed(cfg.seed)                  # Flower samples nodes with the global ``random``
    result = strategy.start(
        grid=grid, initial_arrays=ArrayRecord(initial), num_rounds=cfg.rounds,
        timeout=cfg.timeout_s,
        train_config=ConfigRecord({"local-steps": cfg.local_steps, "seed": cfg.seed}),
        evaluate_config=ConfigRecord({"seed": cfg.seed}))
    result = kept_model(result, initial)
    for rnd, node, why in strategy.refused:
        print(f"agora federation: round {rnd}: node {node} left out: {why}", flush=True)
    if out := str(rc.get("final-arrays", "")):
        np.savez(out, *result.arrays.to_numpy_ndarrays())
