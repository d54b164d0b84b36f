"""Secure aggregation as an option: Flower's SecAgg+ FedAvg over the same ``SiteGrid``.

SecAgg+ (Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead",
CCS 2020, arXiv 2020/704; after Bonawitz et al., CCS 2017) lets the server learn the sum of
the sites' vectors and nothing else. Flower implements it, and Agora only wires it:

* server side: ``flwr.server.workflow.DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``
  run with a ``LegacyContext`` that holds Flower's legacy ``flwr.server.strategy.FedAvg``.
  Each round's fit is four ``train`` messages per site, told apart by the ``"stage"`` of
  their ``"secaggplus_configs"`` ConfigRecord: ``setup`` (site replies with two public
  keys), ``share_keys`` (site replies with its key shares, encrypted for each neighbour),
  ``collect_masked_vectors`` (the legacy ``FitIns`` record ``fitins.parameters`` plus the
  forwarded shares; the site trains and replies with its masked vector only) and
  ``unmask`` (site replies with the shares that remove the masks: of active sites' private
  masks, of dropped sites' pairwise keys). The workflow sums the masked vectors, removes
  the masks and hands the one aggregate to ``FedAvg.aggregate_fit``. Evaluation is the
  DefaultWorkflow's plain legacy ``evaluate`` message.
* client side: ``ClientApp(client_fn=..., mods=[secaggplus_mod])`` over a ``NumPyClient``
  (Flower's compat layer turns the legacy ``fitins.*``/``evaluateins.*`` records into
  ``fit``/``evaluate`` calls). ``secaggplus_mod`` answers the protocol stages itself and, in
  ``collect_masked_vectors``, calls the client's ``fit`` and replaces its arrays with
  ``mask(quantise([n/max_weight, n/max_weight · weights]))`` (its ``fitres.parameters``
  record goes back empty).

What it costs: each site's contribution ``(n_i / max_weight) · w_i`` is clipped to
``[-clipping_range, clipping_range]`` and stochastically rounded to ``quantization_range``
levels over that range, and ``n_i / max_weight`` itself is rounded to a multiple of
``1 / quantization_range``. Per coordinate, with ``k`` sites, ``q_i = round(n_i ·
quantization_range / max_weight)`` and ``R`` the spread of the sites' values,

    |SecAgg+ FedAvg - FedAvg| < k · (2 · clipping_range + R / 2) / sum_i q_i

(the first term is the rounding of the weights, < one level ``2·clipping_range /
quantization_range`` per site; the second the rounding of the sample counts), provided no
value is clipped (``|w_i| · n_i / max_weight <= clipping_range``) and the sum does not wrap
(``k · quantization_range < modulus_range``). Keep ``n_i <= max_weight``.

Randomness: the server's draws (which sites to sample, the shuffle that picks neighbours)
use Python's global ``random``, seeded with ``cfg.seed``. The stochastic rounding draws
from numpy's global RNG inside ``secaggplus_mod``; each site seeds it with
``(cfg.seed, round, site)`` just before masking (see ``_seeded_rounding``). Key pairs and
mask seeds come from the OS's CSPRNG and are not seeded — by design: the masks cancel
exactly (arithmetic mod ``modulus_range``), so they never change the aggregate.

What the server can no longer do: check a site's weights (it never sees them). Each site
checks its own update before masking (count, shapes, finite values) and refuses the round
with an error instead; robust aggregation (median, trimmed mean) needs the individual
values and is not available with SecAgg+. Per-site metrics (e.g. local loss) and sample
counts still travel in the clear.
"""

from __future__ import annotations

import copy
import math
import random
import threading
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import Scalar, ndarrays_to_parameters
from flwr.compat.client.numpy_client import NumPyClient
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid
from flwr.serverapp.strategy.result import Result
from flwr.supercore.run import Run

from agora.federation.grid import SiteGrid
from agora.federation.learner import SiteLearner, check_weights
from agora.federation.server import FederationConfig


@dataclass(frozen=True)
class SecAggConfig:
    num_shares: int | float = 1.0
    """shares each site's secrets are split into (one per neighbour, itself included); a
    float is a fraction of the sampled sites (1.0: every site is every site's neighbour,
    right for a handful of sites; an int > 2 bounds the work for many)"""
    reconstruction_threshold: int | float = 0.67
    """shares needed to rebuild a secret (a float: fraction of ``num_shares``, at least 2).
    Higher: more sites must collude with the server to unmask one; lower: more drop-outs
    survived (a round survives while every site keeps >= threshold live neighbours)"""
    clipping_range: float = 8.0
    """each (n_i / max_weight) · weight is clipped to [-clipping_range, clipping_range]"""
    quantization_range: int = 2 ** 22
    """integer levels over [-clipping_range, clipping_range]; one level is the rounding
    error per site (2·8/2**22 ≈ 3.8e-6 before dividing by the total weight)"""
    modulus_range: int = 2 ** 32
    """masks are uniform in [0, modulus_range); a power of 2 > quantization_range · sites"""
    max_weight: float = 1000.0
    """the largest sample count a site may report in a round (larger risks overflow)"""

    def __post_init__(self) -> None:
        if self.modulus_range & (self.modulus_range - 1) or self.modulus_range > 2 ** 32:
            raise ValueError(f"modulus_range: {self.modulus_range}; expected a power of 2 "
                             f"<= 2**32 (Flower's masks are int64 sums mod it)")
        if not 0 < self.quantization_range < self.modulus_range:
            raise ValueError(f"quantization_range: {self.quantization_range}; expected in "
                             f"(0, modulus_range={self.modulus_range})")
        if not (self.clipping_range > 0 and self.max_weight > 0):
            raise ValueError(f"clipping_range ({self.clipping_range}) and max_weight "
                             f"({self.max_weight}) must be > 0")

    def bound(self, sample_counts: Sequence[int], spread: float) -> float:
        """The per-coordinate bound of ``|SecAgg+ FedAvg - FedAvg|`` derived in the module
        docstring, for these sites' sample counts and the spread (max - min over sites) of
        their values."""
        q = sum(round(n * self.quantization_range / self.max_weight) for n in sample_counts)
        return len(sample_counts) * (2 * self.clipping_range + spread / 2) / q


# -- client side ------------------------------------------------------------------------------

_ROUNDING_LOCK = threading.Lock()
_held = threading.local()


def _seeded_rounding(seed: int, server_round: int, site: str) -> None:
    """Seed numpy's global RNG for the stochastic rounding ``secaggplus_mod`` is about to
    do, and hold it until ``_release_rounding_mod`` (the outermost mod) returns: sites that
    share a process (the in-process grid) then draw in turn, not interleaved. Only the
    rounding is serialised, never training."""
    _ROUNDING_LOCK.acquire()
    _held.flag = True
    np.random.seed(np.random.SeedSequence([seed, server_round, zlib.crc32(site.encode())])
                   .generate_state(1)[0])


def _release_rounding_mod(msg: Message, context: Context, call_next) -> Message:
    try:
        return call_next(msg, context)
    finally:
        if getattr(_held, "flag", False):
            _held.flag = False
            _ROUNDING_LOCK.release()


class _SiteClient(NumPyClient):
    """A SiteLearner as a Flower ``NumPyClient`` (the legacy message format SecAgg+ uses)."""

    def __init__(self, learner: SiteLearner) -> None:
        self.learner = learner

    def _load(self, parameters: list[np.ndarray]) -> list[np.ndarray]:
        """Set the global model received; returns it in the site's own dtypes."""
        own = self.learner.get_weights()
        if len(parameters) == len(own):     # SecAgg+ unmasks to float64: the site's dtypes
            parameters = [np.asarray(p).astype(o.dtype, copy=False)
                          if np.asarray(p).dtype.kind == "f" else p
                          for p, o in zip(parameters, own)]
        check_weights(f"{self.learner.site} (global model received)",
                      self.learner.weight_names(), own, parameters)
        self.learner.set_weights(parameters)
        return parameters

    def get_parameters(self, config: dict[str, Scalar]) -> list[np.ndarray]:
        return self.learner.get_weights()

    def fit(self, parameters, config):
        # checked against the model as loaded (the site's dtypes), not as unmasked (float64
        # from the second round on): every update was refused and the model never moved
        # again, while the run said each round aggregated (a probe)
        received = self._load(parameters)
        n, metrics = self.learner.train(int(config.get("local-steps", 0)), dict(config))
        weights = self.learner.get_weights()
        # The server cannot check masked weights: the site checks its own update.
        check_weights(f"{self.learner.site} (own update)", self.learner.weight_names(),
                      received, weights)
        _seeded_rounding(int(config.get("seed", 0)), int(config.get("server-round", 0)),
                         self.learner.site)
        return weights, int(n), {k: float(v) for k, v in metrics.items()}

    def evaluate(self, parameters, config):
        self._load(parameters)
        n, metrics = self.learner.evaluate(dict(config))
        out = {k: float(v) for k, v in metrics.items()}
        return float(out.get("loss", 0.0)), int(n), out


def make_secagg_client_app(learner: SiteLearner) -> ClientApp:
    """A ClientApp that answers SecAgg+ FedAvg rounds for ``learner`` (mods:
    ``_release_rounding_mod``, then Flower's ``secaggplus_mod``)."""
    return ClientApp(client_fn=lambda context: _SiteClient(learner).to_client(),
                     mods=[_release_rounding_mod, secaggplus_mod])


# -- server side ------------------------------------------------------------------------------

class _WireGrid(Grid):
    """What a wire would do, for a grid whose sites share the server's process: every
    message carries its own copy of its content (the SecAgg+ workflow sends one RecordDict
    object to all sites and ``secaggplus_mod`` pops keys from it), and every
    ``send_and_receive`` has a timeout (the DefaultWorkflow's evaluate step passes none and
    would wait forever on a site that hangs)."""

    def __init__(self, grid: Grid, timeout: float) -> None:
        self.inner, self.timeout = grid, timeout

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, *args, **kwargs) -> Message:
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        own = [Message(copy.deepcopy(m.content), m.metadata.dst_node_id,
                       m.metadata.message_type, ttl=m.metadata.ttl,
                       group_id=m.metadata.group_id) for m in messages]
        return self.inner.send_and_receive(own, timeout=timeout or self.timeout)


def _weighted_metrics(results: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """Sample-weighted mean of the sites' reported metrics (not of weights: those are
    Flower's SecAgg+ FedAvg)."""
    total = sum(n for n, _ in results)
    keys = sorted({k for _, m in results for k in m})
    return {k: sum(n * float(m[k]) for n, m in results if k in m) / max(total, 1)
            for k in keys}


def _by_round(series: dict[str, list[tuple[int, Scalar]]]) -> dict[int, MetricRecord]:
    rounds: dict[int, dict[str, float]] = {}
    for name, values in series.items():
        for rnd, v in values:
            rounds.setdefault(int(rnd), {})[name] = float(v)
    return {r: MetricRecord(m) for r, m in sorted(rounds.items())}


def run_secagg_federation(grid: SiteGrid | Grid, initial: list[np.ndarray],
                          cfg: FederationConfig, secagg: SecAggConfig = SecAggConfig(), *,
                          evaluate_fn: Callable[[int, list[np.ndarray]], dict | None]
                          | None = None,
                          train_config: dict | None = None) -> Result:
    """``cfg.rounds`` rounds of SecAgg+ FedAvg (then a plain evaluate round) over every
    site of ``grid``, whose nodes run ``make_secagg_client_app``; returns Flower's
    ``Result`` like ``run_federation``. ``cfg.timeout_s`` bounds each protocol stage."""
    if cfg.strategy != "fedavg":
        raise ValueError(f"strategy: {cfg.strategy!r} cannot run under SecAgg+: the server "
                         f"only ever sees the sum of the sites' updates, so only 'fedavg' "
                         f"is possible (median and trimmed mean need each site's values)")
    n_sites = len(list(grid.get_node_ids()))
    least = max(2, math.ceil(cfg.min_fraction * n_sites))   # SecAgg+ needs >= 2 sites
    fit_config = {"local-steps": int(cfg.local_steps), "seed": int(cfg.seed),
                  **(train_config or {})}

    def central(rnd: int, arrays: list[np.ndarray], _config) -> tuple[float, dict] | None:
        out = evaluate_fn(rnd, arrays) if evaluate_fn else None
        if out is None:
            return None
        out = {k: float(v) for k, v in out.items()}
        return out.get("loss", 0.0), out

    strategy = LegacyFedAvg(
        fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=least,
        min_evaluate_clients=least, min_available_clients=least,
        initial_parameters=ndarrays_to_parameters([np.asarray(a) for a in initial]),
        on_fit_config_fn=lambda rnd: {**fit_config, "server-round": rnd},
        on_evaluate_config_fn=lambda rnd: {"seed": int(cfg.seed), "server-round": rnd},
        evaluate_fn=central if evaluate_fn else None,
        fit_metrics_aggregation_fn=_weighted_metrics,
        evaluate_metrics_aggregation_fn=_weighted_metrics)
    context = LegacyContext(
        Context(run_id=grid.run.run_id, node_id=0, node_config={}, state=RecordDict(),
                run_config={}),
        config=ServerConfig(num_rounds=cfg.rounds), strategy=strategy)
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
        num_shares=secagg.num_shares, reconstruction_threshold=secagg.reconstruction_threshold,
        max_weight=secagg.max_weight, clipping_range=secagg.clipping_range,
        quantization_range=secagg.quantization_range, modulus_range=secagg.modulus_range,
        timeout=cfg.timeout_s))

    random.seed(cfg.seed)   # Flower samples sites and shuffles neighbours with ``random``
    workflow(_WireGrid(grid, cfg.timeout_s), context)

    h = context.history
    return Result(
        arrays=ArrayRecord(context.state.array_records[MAIN_PARAMS_RECORD]
                           .to_numpy_ndarrays()),
        train_metrics_clientapp=_by_round(h.metrics_distributed_fit),
        evaluate_metrics_clientapp=_by_round(h.metrics_distributed),
        evaluate_metrics_serverapp=_by_round(h.metrics_centralized))
