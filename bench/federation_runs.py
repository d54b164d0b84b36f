"""The runs of ``python -m bench.federation`` (bench/federation.py says what they compare):
(i) local, (ii) federated and (iii) central training on one setup, each approach's final
weights evaluated on every organisation's test episodes beside SJF and the SRPT-market
reference (``compare``); (iv) a round's overhead with 16 sites holding the real network's
weights and training nothing (``overhead``); (v) a Byzantine organisation under FedAvg,
FedMedian and FedTrimmedAvg (``byzantine``)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from agora.agents.learn.evaluate import run_srpt
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.loop import VAL_SEED_BASE, MixedSource, run_episode, validate
from agora.agents.learn.networks import get_weights, set_weights
from agora.agents.sim.runner import run_one
from agora.federation.ppo_learner import TRAIN_KEYS, PPOSiteLearner
from agora.federation.train import (FedTrainConfig, build_learners, initial_weights, site_seed,
                                    train_federated)

TEST_FIRST = 100


def evaluate_test(agents: Agents, src, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"jct_mean_s": [], "score": []}
    for i in range(TEST_FIRST, TEST_FIRST + n):
        cl, wl = src.episode(i, validation=True)
        res, _, _ = run_episode(agents, cl, wl, seed=VAL_SEED_BASE + i, record=False)
        for k in out:
            out[k].append(float(res.metrics[k]))
    return out


def references(src, n: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for i in range(TEST_FIRST, TEST_FIRST + n):
        cl, wl = src.episode(i, validation=True)
        for name, r in (("SJF", run_one(cl, wl, "sjf", seed=VAL_SEED_BASE + i)),
                        ("SRPT-market", run_srpt(cl, wl, seed=VAL_SEED_BASE + i))):
            for k in ("jct_mean_s", "score"):
                out.setdefault(name, {}).setdefault(k, []).append(float(r.metrics[k]))
    return out


def with_weights(template: Agents, w: list[np.ndarray]) -> Agents:
    a = Agents(template.cfg)
    set_weights(a.modules, w)
    return a


def compare(setup, cfg: FedTrainConfig, out: Path, n_test: int, log) -> dict:
    """(i), (ii), (iii) on one setup; returns per-approach, per-site test metrics + curves."""
    R, K = cfg.rounds, cfg.local_steps
    learners = build_learners(setup, cfg)
    init = initial_weights(learners[0], cfg.seed)
    template = learners[0].loop.agents
    sources = {l.site: l.loop.src for l in learners}
    res: dict = {"test": {}, "curves": {}, "wall_s": {}, "steps": {}}

    log(f"[{setup.name}] local: {len(learners)} sites x {R} x {K} steps")
    t0 = time.perf_counter()
    final = {}
    for l in learners:
        l.set_weights(init)
        for r in range(1, R + 1):
            l.train(K, {})
            _, ev = l.evaluate({})
            res["curves"].setdefault("local", {}).setdefault(l.site, []).append(
                (l.loop.progress["step"], ev["eval/jct_mean_s"], ev["eval/score"]))
        final[l.site] = l.get_weights()
        res["steps"].setdefault("local", {})[l.site] = l.loop.progress["step"]
        log(f"  {l.site}: {l.loop.progress['step']} steps")
    res["wall_s"]["local"] = time.perf_counter() - t0
    res["test"]["local"] = {s: evaluate_test(with_weights(template, final[s]), sources[s], n_test)
                            for s in sources}

    log(f"[{setup.name}] federated fedavg: {R} rounds x {K} steps")
    t0 = time.perf_counter()
    summ = train_federated(setup, cfg, out / "federated", progress=True, log=lambda *_: None)
    res["wall_s"]["federated"] = time.perf_counter() - t0
    res["steps"]["federated"] = summ["steps"]
    from agora.agents.learn import checkpoint
    fed_w = get_weights(checkpoint.load_agents(out / "federated" / "last.pt")[0].modules)
    res["test"]["federated"] = {s: evaluate_test(with_weights(template, fed_w), sources[s], n_test)
                                for s in sources}
    rows = [json.loads(x) for x in (out / "federated" / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        if r["site"] in sources:
            res["curves"].setdefault("federated", {}).setdefault(r["site"], []).append(
                (r["step"], r["eval/jct_mean_s"], r["eval/score"]))

    n = len(learners)
    log(f"[{setup.name}] central: {R} x {n * K} steps on episodes of all sites")
    t0 = time.perf_counter()
    ccfg = replace(learners[0].loop.cfg, seed=site_seed(cfg.seed, 999),
                   bc_episodes=cfg.site.bc_episodes * n)
    central = PPOSiteLearner("central", ccfg, source=MixedSource(list(sources.values())))
    central.set_weights(init)
    for r in range(1, R + 1):
        central.train(n * K, {})
        for s, src in sources.items():
            v = validate(central.loop.agents, src, cfg.site.val_episodes)
            res["curves"].setdefault("central", {}).setdefault(s, []).append(
                (central.loop.progress["step"] / n, v["eval/jct_mean_s"], v["eval/score"]))
    res["wall_s"]["central"] = time.perf_counter() - t0
    res["steps"]["central"] = central.loop.progress["step"]
    res["test"]["central"] = {s: evaluate_test(central.loop.agents, sources[s], n_test)
                              for s in sources}
    res["references"] = {s: references(sources[s], n_test) for s in sources}
    return res


# -- (iv) round overhead ----------------------------------------------------------------------

class _Holder:
    """A site holding the real network's weights that trains for 0 steps (overhead only)."""

    def __init__(self, site: str, names: list[str], weights: list[np.ndarray]) -> None:
        self.site, self._names, self.w = site, names, [w.copy() for w in weights]

    def weight_names(self):
        return self._names

    def get_weights(self):
        return self.w

    def set_weights(self, ws):
        self.w = [np.asarray(x) for x in ws]

    def train(self, steps, config):
        return 1, {}

    def evaluate(self, config):
        return 1, {}


def overhead(n_sites: int, rounds: int, log) -> list[dict]:
    from agora.federation.client_app import make_client_app
    from agora.federation.grid import FIRST_NODE_ID, SiteGrid, client_app_node
    from agora.federation.secagg import SecAggConfig, make_secagg_client_app, run_secagg_federation
    from agora.federation.server import FederationConfig, run_federation

    torch.manual_seed(0)
    a = Agents(AgentConfig())                  # the default network
    names = [f"{type(m).__name__}.{n}" for m in a.modules for n in m.state_dict()]
    w = get_weights(a.modules)
    out = []
    for strategy, secagg, R in (("fedavg", False, rounds), ("median", False, rounds),
                                ("trimmed", False, rounds), ("fedavg", True, max(2, rounds // 4))):
        sites = [_Holder(f"s{i}", names, w) for i in range(n_sites)]
        make = make_secagg_client_app if secagg else make_client_app

        class TimedGrid(SiteGrid):
            def send_and_receive(self, messages, *, timeout=None):
                t = time.perf_counter()
                r = super().send_and_receive(messages, timeout=timeout)
                self.trips.append(time.perf_counter() - t)
                return r

        grid = TimedGrid({FIRST_NODE_ID + i: client_app_node(s.site, FIRST_NODE_ID + i, make(s), 1,
                                                             names) for i, s in enumerate(sites)})
        grid.trips = []
        stamps = []
        cfg = FederationConfig(rounds=R, local_steps=0, strategy=strategy, timeout_s=600)
        fn = lambda rnd, arrays: stamps.append(time.perf_counter()) or None
        t0 = time.perf_counter()
        if secagg:
            run_secagg_federation(grid, w, cfg, SecAggConfig(max_weight=10.0), evaluate_fn=fn)
        else:
            run_federation(grid, w, cfg, evaluate_fn=fn)
        total = time.perf_counter() - t0
        grid.close()
        per_round = np.diff(stamps)
        trips = len(grid.trips) // R
        trip_per_round = [sum(grid.trips[i * trips:(i + 1) * trips]) for i in range(R)]
        row = {"strategy": strategy + (" + SecAgg+" if secagg else ""), "sites": n_sites,
               "rounds": R, "round_s_median": float(np.median(per_round)),
               "grid_trips_s_median": float(np.median(trip_per_round)),
               "aggregation_s_median": float(np.median(per_round - np.array(trip_per_round))),
               "bytes_per_round": None if secagg else (grid.bytes_in + grid.bytes_out) // R,
               "params": int(sum(x.size for x in w)),
               "model_bytes": int(sum(x.nbytes for x in w)), "wall_s": total}
        log(f"  overhead {row['strategy']}: round {row['round_s_median'] * 1000:.1f} ms")
        out.append(row)
    return out


# -- (v) Byzantine ----------------------------------------------------------------------------

class Byzantine(PPOSiteLearner):
    """Trains nothing; sends the weights it received scaled by ``scale`` (``attack`` =
    'scaled') or Gaussian noise of standard deviation ``scale`` ('random'), and claims the
    round's step budget as its sample count (so FedAvg weighs it like an honest site)."""
    attack, scale = "scaled", -4.0

    def train(self, steps, config):
        self.calls = getattr(self, "calls", 0) + 1
        return int(steps), {k: 0.0 for k in TRAIN_KEYS}

    def get_weights(self):
        w = super().get_weights()
        if self.attack == "scaled":
            return [self.scale * x for x in w]
        rng = np.random.default_rng([self.loop.cfg.seed, getattr(self, "calls", 0)])
        return [rng.normal(0.0, abs(self.scale), x.shape).astype(x.dtype) for x in w]


def byzantine(setup, cfg: FedTrainConfig, out: Path, n_test: int, attacks: list[tuple[str, float]],
              log) -> list[dict]:
    from agora.agents.learn import checkpoint
    from agora.federation.domains import FederationSite, Setup

    mal = FederationSite("mallory", setup.sites[-1].scenario, "Byzantine")
    bad = Setup(setup.name + "+byzantine", setup.sites + (mal,), setup.source)
    rows = []
    runs = [("fedavg", None)] + [(st, at) for at in attacks for st in ("fedavg", "median", "trimmed")]
    for strategy, attack in runs:
        c = replace(cfg, strategy=strategy)
        learners, s = build_learners(setup, c), setup
        if attack is not None:
            b = Byzantine("mallory", replace(learners[-1].loop.cfg, seed=site_seed(c.seed, 77)))
            b.attack, b.scale = attack
            learners, s = learners + [b], bad
        t0 = time.perf_counter()
        d = out / f"{strategy}-{'none' if attack is None else '%s%g' % attack}"
        train_federated(s, c, d, progress=False, log=lambda *_: None, learners=learners)
        w = get_weights(checkpoint.load_agents(d / "last.pt")[0].modules)
        honest = learners[:len(setup.sites)]
        ev = {l.site: evaluate_test(with_weights(honest[0].loop.agents, w), l.loop.src, n_test)
              for l in honest}
        rows.append({"strategy": strategy,
                     "attack": "none" if attack is None else f"{attack[0]} {attack[1]:g}",
                     "jct_mean_s": float(np.mean([np.mean(v["jct_mean_s"]) for v in ev.values()])),
                     "score": float(np.mean([np.mean(v["score"]) for v in ev.values()])),
                     "per_site": {k: {m: float(np.mean(x)) for m, x in v.items()}
                                  for k, v in ev.items()},
                     "wall_s": time.perf_counter() - t0})
        log(f"  byzantine {strategy} {rows[-1]['attack']}: JCT {rows[-1]['jct_mean_s']:.1f} "
            f"score {rows[-1]['score']:.4f}")
    return rows
