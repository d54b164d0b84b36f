"""GPU fragmentation, measured as Weng et al. (ATC 2023, "FGD") measure it: the pods of an
Alibaba openb list are shuffled and drawn (with replacement after the first pass) until
their gpu requests reach 1.3× the cluster's gpus; each is placed once, on arrival, with no
departures; a pod that fits nowhere fails. Reported: the unallocated share of the cluster's
gpus when the arrived requests reach 80%..130% of its capacity (lower is better; below 100%
a perfect placer leaves 1 − arrived), and the share of gpu requests that failed. Medians
over seeds; the seed draws the order.

    python -m bench.gpu_fragmentation [--traces ../shared/workloads] [--seeds 3]
        [--lists default,gpushare40,gpuspec33,multigpu50] [--policies random,best-fit,...]

Policies (node choice; a share goes best-fit onto a gpu of the node unless the policy says):
random (seeded), best-fit (Agora's rule, ``Capacity.best_fit`` over the whole cluster),
dot-product (Tetris' alignment of demand and free resources), first-fit (the lowest node and
gpu that fit), fgd (``agents.baselines.fgd``, the typical shapes of the list being replayed,
scored and tie-broken as the authors' simulator does), fgd-exact (the same fragmentation
growth compared exactly, ties to the lowest node: this module's FGD until 2026-12-01, kept
to show what the authors' quantised score is worth), learned (``agents.learn.placement``: for each list the
weights ``bench.placement_learning --per-list`` searched on that list alone, on one sixteenth
of the nodes and other arrival orders; else its all-list weights), and a
clairvoyant reference, offline-ffd:
every pod of the run known in advance, placed largest gpu request first (first-fit
decreasing, best-fit node): only its value once all pods arrived (130%) compares, as a
sketch of the room an online placer has. Writes bench/results/gpu-fragmentation.md and
.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from agora.agents.baselines.fgd import FragModel, candidates, fgd_choice, typical_shapes
from agora.agents.baselines.packing import alignment
from agora.agents.domain import MILLI, Demand
from agora.agents.learn.placement import LinearPlacer, arrivals, replay
from agora.agents.sim.capacity import Capacity
from agora.agents.workloads.alibaba import read_alibaba_nodes, read_alibaba_pod_demands
from bench.scenarios import DEFAULT_TRACES, REPO

MARKS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
POLICIES = ("random", "best-fit", "dot-product", "first-fit", "fgd-exact", "fgd", "learned",
            "offline-ffd")
FRAG_POLICIES = ("fgd-exact", "fgd", "learned")
WEIGHTS = REPO / "bench" / "results" / "placement-weights.json"


def chooser(policy: str, rng: np.random.Generator, frag: FragModel | None,
            learned: LinearPlacer | None = None):
    """``choose(cap, d, fit) -> (node, gpu)`` of one policy."""
    if policy == "fgd":
        return lambda cap, d, fit: fgd_choice(frag, cap, d, fit)
    if policy == "fgd-exact":
        return lambda cap, d, fit: least_growth(frag, cap, d, fit)
    if policy == "first-fit":
        return lambda cap, d, fit: first_fit(cap, d, fit)
    if policy == "learned":
        return lambda cap, d, fit: learned.choose(frag, cap, d, fit)
    return lambda cap, d, fit: choose(policy, cap, d, fit, rng)


def first_fit(cap: Capacity, d: Demand, fit: np.ndarray) -> tuple[int, int | None]:
    """The lowest node of ``fit`` and, for a share, its lowest gpu that holds it: the first
    of ``agents.baselines.fgd.candidates`` (what a zero-weight placer takes), without
    scoring the others."""
    node = int(np.flatnonzero(fit)[0])
    if 0 < d.gpu < MILLI:
        return node, next(g for g, f in enumerate(cap.gpu_free[node]) if f >= d.gpu)
    return node, None


def least_growth(frag: FragModel, cap: Capacity, d: Demand,
                 fit: np.ndarray) -> tuple[int, int | None]:
    """The place whose fragmentation grows least, compared exactly (first on ties)."""
    c = candidates(frag, cap, d, fit)
    return c.places[int(np.argmin(c.growth))]


def choose(policy: str, cap: Capacity, d: Demand, fit: np.ndarray,
           rng: np.random.Generator) -> tuple[int, int | None]:
    if policy == "random":
        return int(rng.choice(np.flatnonzero(fit))), None
    if policy in ("best-fit", "offline-ffd"):
        return cap.best_fit(d, 0, fit), None
    if policy == "dot-product":
        return int(np.argmax(np.where(fit, alignment(cap, d), -np.inf))), None
    raise ValueError(f"unknown policy {policy!r}")


def learned_weights(a: argparse.Namespace, name: str) -> list[float]:
    """The weights searched on list ``name`` alone if the report has them, else the
    all-list weights."""
    if a.per_list_weights.is_file():
        alone = json.loads(a.per_list_weights.read_text()).get(f"alone {name}")
        if alone:
            return alone["weights"]
    return json.loads(a.weights.read_text())["weights"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    p.add_argument("--nodes", default="openb_node_list_all_node.csv")
    p.add_argument("--lists", default="default,gpushare40,gpuspec33,multigpu50")
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--weights", type=Path, default=WEIGHTS,
                   help="the learned placer's weights (bench.placement_learning writes them)")
    p.add_argument("--per-list-weights", type=Path, default=WEIGHTS.with_name(
        "placement-learning.json"), help="per-list weights (placement_learning --per-list)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu-fragmentation")
    a = p.parse_args(argv)
    d = a.traces / "alibaba-openb-2023"
    cluster = read_alibaba_nodes(d / a.nodes, sites=1)
    policies = a.policies.split(",")
    for pol in policies:
        if pol not in POLICIES:
            p.error(f"--policies: unknown {pol!r}; choose from {', '.join(POLICIES)}")
    results: dict = {}
    for name in a.lists.split(","):
        pods = [x for _, x in read_alibaba_pod_demands(d / f"openb_pod_list_{name}.csv")]
        probe = Capacity(cluster)
        frag_shapes = typical_shapes(pods)
        results[name] = {}
        for pol in policies:
            runs = []
            for seed in range(a.seeds):
                rng = np.random.default_rng(seed)
                seq = arrivals(pods, int(probe.cap_gpu.sum()), rng)
                if pol == "offline-ffd":
                    seq = sorted(seq, key=lambda x: (-x.gpu, -x.cpu))
                cap = Capacity(cluster)
                frag = FragModel(frag_shapes, cap.models) if pol in FRAG_POLICIES else None
                learned = LinearPlacer(learned_weights(a, name)) if pol == "learned" else None
                t0 = time.perf_counter()
                r = replay(cap, seq, chooser(pol, np.random.default_rng(1000 + seed), frag,
                                             learned), MARKS)
                r["wall_s"] = time.perf_counter() - t0
                runs.append(r)
                print(f"  {name} {pol} seed {seed}: {r['wall_s']:.1f} s, "
                      f"unallocated at 130% {r['unallocated'].get('130%', float('nan')):.3f}",
                      file=sys.stderr, flush=True)
            if pol == "offline-ffd":             # arrival order changed: only 130% compares
                for r in runs:
                    r["unallocated"] = {m: v for m, v in r["unallocated"].items()
                                        if m == f"{MARKS[-1]:.0%}"}
            results[name][pol] = {
                "unallocated": {m: statistics.median(r["unallocated"][m] for r in runs)
                                for m in runs[0]["unallocated"]},
                "failed_gpu_share": statistics.median(r["failed_gpu_share"] for r in runs),
                "runs": runs}
    table = render(results, a.seeds, a.nodes)
    print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(table + "\n")
    a.out.with_suffix(".json").write_text(json.dumps(
        {"seeds": a.seeds, "nodes": a.nodes, "marks": [f"{m:.0%}" for m in MARKS],
         "results": results}, indent=1))
    return 0


def render(results: dict, seeds: int, nodes: str) -> str:
    lines = [f"Unallocated gpus (% of the cluster's {nodes}) as arrived gpu requests reach "
             f"80–130% of capacity; median of {seeds} seeds; lower is better.", ""]
    for name, by_pol in results.items():
        marks = [f"{m:.0%}" for m in MARKS]
        lines += [f"**{name}**", "",
                  "| policy | " + " | ".join(marks) + " | gpu asked that failed |",
                  "| --- |" + " --- |" * (len(marks) + 1)]
        for pol, r in by_pol.items():
            cells = " | ".join(f"{100 * r['unallocated'][m]:.1f}" if m in r["unallocated"]
                               else "–" for m in marks)
            lines.append(f"| {pol} | {cells} | {100 * r['failed_gpu_share']:.1f}% |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
