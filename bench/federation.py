"""Federated training against its two references, on both federation setups (issue 5):

(i)   **local**: every organisation trains alone on its own episodes;
(ii)  **federated**: Flower FedAvg rounds over the organisations (``federation/train.py``);
(iii) **central**: one learner on episodes drawn from every organisation in turn (what a
      federation approximates without moving data; it needs every site's trajectories, the
      privacy-violating upper reference).

Same initial weights (``torch.manual_seed(seed)``), same per-site seeds, the same SRPT warm
start per organisation (central: all of them) and the same environment steps: R rounds × K
steps per site for (i) and (ii), and R × K × sites for (iii). Every approach's final weights
are evaluated greedily on each organisation's **test** episodes (validation-split episodes
``TEST_FIRST`` .. ``TEST_FIRST + N - 1``: seeds ``VAL_SEED_BASE + 100 + i``, never used for
training, and no approach selects weights on them), beside SJF and the SRPT-market reference on
the same episodes. Also:

(iv)  round overhead: 16 sites holding the real network's weights, no local training (steps
      = 0): time of a round (train messages out and back through the ``SiteGrid`` + Flower's
      aggregation + evaluate messages), median over rounds, and bytes per round;
(v)   a Byzantine organisation (the global weights scaled, or noise; its step count
      claimed) added to the synthetic setup, under FedAvg, FedMedian and FedTrimmedAvg.

    python -m bench.federation [--rounds 8 --local-steps 500] [--setups synthetic-noniid,alibaba-by-type]
    python -m bench.federation --only byzantine      # rerun one section, keep the others

Writes ``bench/results/federation.md``, ``federation.json`` and ``federation-<setup>.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from agora.agents.learn.evaluate import run_srpt
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.loop import VAL_SEED_BASE, MixedSource, TrainConfig, run_episode, validate
from agora.agents.learn.networks import get_weights, set_weights
from agora.agents.sim.report import markdown_table, mean_ci
from agora.agents.sim.runner import run_one
from agora.federation.domains import DEFAULT_TRACES, load_setup
from agora.federation.ppo_learner import TRAIN_KEYS, PPOSiteLearner
from agora.federation.train import (FedTrainConfig, build_learners, initial_weights, site_seed,
                                    train_federated)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
TEST_FIRST = 100
KEEP = "<!-- hand-written below this line: kept when bench/federation.py rewrites the tables -->"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


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


def summarise(res: dict) -> dict:
    """Per site and averaged: mean test JCT/score per approach, and the target ratios."""
    sites = list(res["test"]["local"])
    mean = lambda xs: float(np.mean(xs))
    out = {"sites": {}, "targets": {}}
    for s in sites:
        m = {a: {k: mean(res["test"][a][s][k]) for k in ("jct_mean_s", "score")}
             for a in ("local", "federated", "central")}
        m.update({a: {k: mean(v[k]) for k in v} for a, v in res["references"][s].items()})
        m["fed_vs_local"] = {"score": m["federated"]["score"] / m["local"]["score"] - 1,
                             "jct": 1 - m["federated"]["jct_mean_s"] / m["local"]["jct_mean_s"]}
        m["fed_vs_central"] = {"score": m["federated"]["score"] / m["central"]["score"] - 1,
                               "jct": 1 - m["federated"]["jct_mean_s"] / m["central"]["jct_mean_s"]}
        out["sites"][s] = m
    avg = lambda key, k: mean([out["sites"][s][key][k] for s in sites])
    out["average"] = {a: {k: avg(a, k) for k in ("jct_mean_s", "score")}
                      for a in ("local", "federated", "central", "SJF", "SRPT-market")}
    for key in ("fed_vs_local", "fed_vs_central"):
        out["average"][key] = {k: avg(key, k) for k in ("score", "jct")}
    fl, fc = out["average"]["fed_vs_local"], out["average"]["fed_vs_central"]
    out["targets"] = {
        "federated >= 5% better than local (score)": fl["score"] >= 0.05,
        "federated >= 5% better than local (mean JCT)": fl["jct"] >= 0.05,
        "federated within 3% of central (score)": fc["score"] >= -0.03,
        "federated within 3% of central (mean JCT)": fc["jct"] >= -0.03}
    return out


def quality_md(name: str, res: dict, summ: dict, n_test: int) -> str:
    rows = []
    for s, m in list(summ["sites"].items()) + [("**average**", summ["average"])]:
        cells = [s]
        for a in ("local", "federated", "central", "SRPT-market", "SJF"):
            if s == "**average**":
                cells.append(f"{m[a]['jct_mean_s']:.1f} / {m[a]['score']:.4f}")
            else:
                src = res["test"][a][s] if a in res["test"] else res["references"][s][a]
                j, jh = mean_ci(src["jct_mean_s"])
                sc, sh = mean_ci(src["score"])
                cells.append(f"{j:.1f} ± {jh:.1f} / {sc:.4f} ± {sh:.4f}")
        cells += [f"{m['fed_vs_local']['jct']:+.2%} / {m['fed_vs_local']['score']:+.2%}",
                  f"{m['fed_vs_central']['jct']:+.2%} / {m['fed_vs_central']['score']:+.2%}"]
        rows.append(cells)
    t = markdown_table(["site", "local JCT s / score", "federated", "central", "SRPT-market",
                        "SJF", "fed vs local (JCT / score)", "fed vs central (JCT / score)"], rows)
    tg = "; ".join(f"{k}: {'met' if v else '**not met**'}" for k, v in summ["targets"].items())
    steps = res["steps"]
    return (f"### {name}\n\n{t}\n\nTest episodes per site: {n_test} (mean ± 95% interval over "
            f"episodes; the average row is the mean over sites, its ratios the mean of the "
            f"per-site ratios; JCT gain = 1 − fed/ref, score gain = fed/ref − 1). Steps used: "
            f"local {steps['local']}, federated {steps['federated']}, central "
            f"{steps['central']}. Wall: " + ", ".join(f"{a} {w:.0f} s" for a, w in
                                                      res["wall_s"].items())
            + f".\n\nTargets: {tg}.\n")


def plot_curves(name: str, res: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sites = list(res["curves"]["local"])
    fig, ax = plt.subplots(2, len(sites), figsize=(3.4 * len(sites), 6), squeeze=False)
    for j, s in enumerate(sites):
        for a, style in (("local", "o-"), ("federated", "s-"), ("central", "^--")):
            pts = res["curves"][a][s]
            x = [p[0] for p in pts]
            ax[0][j].plot(x, [p[1] for p in pts], style, ms=3, label=a)
            ax[1][j].plot(x, [p[2] for p in pts], style, ms=3, label=a)
        ax[0][j].set_title(f"{s}: validation mean JCT, s")
        ax[1][j].set_title(f"{s}: validation score")
        ax[1][j].set_xlabel("steps per site")
    ax[0][0].legend(fontsize=8)
    fig.suptitle(f"{name}: local vs federated (FedAvg) vs central")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


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
    a = Agents(AgentConfig(), 4, 212)          # the setups' shapes, default network
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


SECTIONS = ("compare", "overhead", "byzantine")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="sections to (re)run; the others are kept from federation.json")
    p.add_argument("--setups", default="synthetic-noniid,alibaba-by-type")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--local-steps", type=int, default=500, help="steps per site per round")
    p.add_argument("--train-jobs", type=int, default=100)
    p.add_argument("--bc-episodes", type=int, default=2, help="per organisation")
    p.add_argument("--val-episodes", type=int, default=2, help="per site, for the curves")
    p.add_argument("--test-episodes", type=int, default=6, help="per site, for the tables")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--traces", default=str(DEFAULT_TRACES))
    p.add_argument("--overhead-sites", type=int, default=16)
    p.add_argument("--overhead-rounds", type=int, default=12)
    p.add_argument("--byz-rounds", type=int, default=3)
    p.add_argument("--byz-attacks", default="scaled:-4,random:1",
                   help="ATTACK:SCALE,...: weights x SCALE, or N(0, SCALE) noise")
    p.add_argument("--work", default="out/bench-federation", help="scratch runs")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    work, res_dir = Path(a.work), Path(a.out)
    res_dir.mkdir(parents=True, exist_ok=True)
    site = TrainConfig(train_jobs=a.train_jobs, bc_episodes=a.bc_episodes,
                       val_episodes=a.val_episodes)
    cfg = FedTrainConfig(rounds=a.rounds, local_steps=a.local_steps, seed=a.seed, site=site)
    only = a.only.split(",")
    jpath = res_dir / "federation.json"
    report = json.loads(jpath.read_text()) if set(only) != set(SECTIONS) and jpath.exists() \
        else {"runs": [], "md": {}, "setups": {}}
    run = {"command": "python -m bench.federation " + " ".join(sys.argv[1:] if argv is None
                                                               else argv),
           "sections": only, "config": cfg.to_dict(), "test_first": TEST_FIRST,
           "test_episodes": a.test_episodes, "loadavg_start": loadavg(), "cpus": os.cpu_count()}
    t_all = time.perf_counter()
    if "compare" in only:
        for name in a.setups.split(","):
            setup = load_setup(name, traces=a.traces, cache=work / "setups")
            la = loadavg()
            res = compare(setup, cfg, work / name, a.test_episodes, log)
            summ = summarise(res)
            plot_curves(name, res, res_dir / f"federation-{name}.png")
            report["setups"][name] = {"setup": setup.to_dict(), "summary": summ, "raw": res,
                                      "loadavg": [la, loadavg()]}
            report["md"][name] = (quality_md(name, res, summ, a.test_episodes)
                                  + f"\nLoad average (1, 5, 15 min) before / after: {la} / "
                                    f"{loadavg()}. Curves: `bench/results/federation-{name}.png`.\n")
            print(report["md"][name], flush=True)
    if "overhead" in only:
        la = loadavg()
        report["overhead"] = rows = overhead(a.overhead_sites, a.overhead_rounds, log)
        ov = markdown_table(
            ["strategy", "sites", "rounds", "round ms (median)", "Grid trips ms",
             "aggregation ms", "bytes / round"],
            [[r["strategy"], str(r["sites"]), str(r["rounds"]), f"{r['round_s_median'] * 1e3:.1f}",
              f"{r['grid_trips_s_median'] * 1e3:.1f}", f"{r['aggregation_s_median'] * 1e3:.1f}",
              "-" if r["bytes_per_round"] is None else f"{r['bytes_per_round']:,}"] for r in rows])
        report["md"]["overhead"] = (
            f"### Round overhead (no local training)\n\n{ov}\n\nThe network: "
            f"{rows[0]['params']:,} parameters, {rows[0]['model_bytes']:,} bytes as float32; a "
            f"round sends it to every site twice (train, evaluate) and receives it once per "
            f"site. Load average before / after: {la} / {loadavg()}.\n")
        print(report["md"]["overhead"], flush=True)
    if "byzantine" in only:
        setup = load_setup("synthetic-noniid")
        attacks = [(x.split(":")[0], float(x.split(":")[1])) for x in a.byz_attacks.split(",")]
        la = loadavg()
        rows = byzantine(setup, replace(cfg, rounds=a.byz_rounds), work / "byzantine",
                         a.test_episodes, attacks, log)
        report["byzantine"] = rows
        t = markdown_table(["strategy", "Byzantine site", "JCT s (honest sites' mean)", "score"],
                           [[r["strategy"], r["attack"], f"{r['jct_mean_s']:.1f}",
                             f"{r['score']:.4f}"] for r in rows])
        report["md"]["byzantine"] = (
            f"### A Byzantine organisation (synthetic-noniid + 1; {a.byz_rounds} rounds × "
            f"{a.local_steps} steps)\n\n{t}\n\n'scaled -4': it sends the global weights × −4; "
            f"'random 1': N(0, 1) noise; either way it claims the full step count. "
            f"Load average before / after: {la} / {loadavg()}.\n")
        print(report["md"]["byzantine"], flush=True)
    run["wall_s"] = round(time.perf_counter() - t_all, 1)
    run["loadavg_end"] = loadavg()
    report["runs"].append(run)
    jpath.write_text(json.dumps(report, indent=1, default=str))
    head = "## Federated training benchmark\n\n" + "".join(
        f"- `{r['command']}` ({', '.join(r['sections'])}): {r['wall_s']:.0f} s wall on "
        f"{r['cpus']} cores (shared), load average at start {r['loadavg_start']}, at end "
        f"{r['loadavg_end']}\n" for r in report["runs"])
    c = cfg
    head += (f"\nBudget: {c.rounds} rounds × {c.local_steps} environment steps per site "
             f"(central: × sites), {c.site.train_jobs} jobs per episode, SRPT warm start on "
             f"{c.site.bc_episodes} episodes per organisation, seed {c.seed}.\n\n")
    order = [k for k in report["md"] if k not in ("overhead", "byzantine")] + \
        [k for k in ("overhead", "byzantine") if k in report["md"]]
    md_path = res_dir / "federation.md"
    kept = ""
    if md_path.exists() and KEEP in md_path.read_text():
        kept = md_path.read_text().split(KEEP, 1)[1]
    md_path.write_text(head + "\n".join(report["md"][k] for k in order) + f"\n{KEEP}" + kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
