"""Issue 13, item 5, first step: does an actor that sees every peer's exact state beat one
that hears nothing? ``comm: "global"`` (``agents/learn/global_state.py``) is perfect, free
communication: if it does not beat ``comm: "none"``, no message can on this problem.

Each arm is trained with the recipe of docs/benchmarks.md "Learned site agents" (synthetic DAG,
high load; 40,000 steps, 150-job episodes, 6 SRPT imitation episodes), the same training seed,
only ``comm`` differing; then the arms' best.pt, the SRPT-market reference and SJF run on the
same held-out seeds 0..N-1 (training draws seeds >= 10,000), paired per seed:

    python -m bench.global_state [--arms none,global,trigger] [--train-seeds 1] [--seeds 5]

The arm ``graph`` is no communication with the graph encoder (``AgentConfig.encoder``,
Decima's message passing over each candidate's job DAG: issue 13, item 3); with
``--md graph-encoder.md`` its table and runs are kept apart from the communication arms'.

Resumable: an arm whose run finished (OUT/<arm>-s<seed>/summary.json) is not retrained, one
cut short resumes from its last.pt, and evaluated (arm, seed) pairs are read back from the
JSON beside the table (bench/results/global-state.json for the default ``--md``). Runs go
to out/global-state/ (not committed); the table to bench/results/global-state.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from agora.agents.learn.evaluate import SRPT_NAME, run_learned, run_srpt
from agora.agents.learn.learned_policy import AgentConfig
from agora.agents.learn.loop import TrainConfig
from agora.agents.sim.report import BOOTSTRAP_SEED, markdown_table, mean_ci, paired_bootstrap
from agora.agents.sim.runner import run_one
from bench.scenarios import REPO, synthetic_dag

RESULTS = REPO / "bench" / "results"
RUNS = REPO / "out" / "global-state"
KEEP = ("jct_mean_s", "score")
NAMES = {"none": "no communication", "global": "global state (exact, free)",
         "trigger": "VAE + trigger (0.5, default)", "always": "always communicate",
         "graph": "graph encoder, no communication"}
ARMS = {"none": {"comm": "none"}, "global": {"comm": "global"}, "trigger": {"comm": "trigger"},
        "always": {"comm": "always"}, "graph": {"comm": "none", "encoder": "graph"}}
"""each arm's AgentConfig fields (the rest are the defaults)"""


def train_config(arm: str, seed: int, steps: int) -> TrainConfig:
    """docs/benchmarks.md's recipe (``agora train --workload synthetic:load=0.95,
    dag=0.8 --steps 40000 --train-jobs 150 --bc-episodes 6 --seed 1``) with the arm's
    ``--comm`` (and ``--encoder``)."""
    return TrainConfig(scenario=asdict(synthetic_dag()), steps=steps, seed=seed, train_jobs=150,
                       bc_episodes=6, agent=AgentConfig(**ARMS[arm]))


def train_arm(arm: str, seed: int, steps: int, log) -> Path:
    from agora.agents.learn.trainer import train

    out = RUNS / f"{arm}-s{seed}"
    cfg = train_config(arm, seed, steps)
    if (out / "config.json").is_file():
        saved = json.loads((out / "config.json").read_text())
        if saved != json.loads(json.dumps(cfg.to_dict())):
            raise SystemExit(f"{out}: trained with another configuration; move it away")
    if not (out / "summary.json").is_file():
        t0 = time.perf_counter()
        log(f"training {out.name} ...")
        train(cfg, out, resume=(out / "last.pt").is_file(), progress=False, log=log)
        log(f"trained {out.name} in {time.perf_counter() - t0:.0f} s")
    return out / "best.pt"


def evaluate_seed(args: tuple[int, list[tuple[str, str | None]]]) -> list[dict]:
    """One held-out seed's runs of the (arm or reference, checkpoint) pairs not yet done:
    each one's KEEP metrics (and messages sent), the scenario built once for all of them."""
    s, names = args
    import torch
    torch.set_num_threads(1)
    cluster, wl = synthetic_dag().build(s)
    out = []
    for name, path in names:
        t0 = time.perf_counter()
        if name == SRPT_NAME:
            r, sent = run_srpt(cluster, wl, seed=s), None
        elif name == "sjf":
            r, sent = run_one(cluster, wl, "sjf", seed=s), None
        else:
            r, pol = run_learned(path, cluster, wl, seed=s)
            sent = [sum(a.sent for a in pol.agents),
                    sum(a.sent + a.suppressed for a in pol.agents)]
        m = {k: r.metrics[k] for k in KEEP}
        if sent is not None:
            m["sent"], m["possible"] = sent
        out.append({"metrics": m, "wall_s": time.perf_counter() - t0})
    return out


def evaluate_arms(arms: dict[str, Path], seeds: int, js: dict, save, log,
                  workers: int = 1) -> None:
    """Fill ``js['runs'][name][seed]`` for every arm and reference not yet there, a seed at
    a time on each of ``workers`` processes."""
    runs = js.setdefault("runs", {})
    todo = [(s, [(n, str(arms[n]) if n in arms else None) for n in [*arms, SRPT_NAME, "sjf"]
                 if str(s) not in runs.get(n, {})]) for s in range(seeds)]
    todo = [job for job in todo if job[1]]

    def keep(job, results) -> None:
        s, names = job
        for (name, _), res in zip(names, results):
            m = res["metrics"]
            runs.setdefault(name, {})[str(s)] = m
            log(f"  seed {s} {name}: JCT {m['jct_mean_s']:.1f} ({res['wall_s']:.0f} s)")
        save()

    if workers <= 1:
        for job in todo:
            keep(job, evaluate_seed(job))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        for job, results in zip(todo, pool.map(evaluate_seed, todo)):
            keep(job, results)


def table(js: dict, arms: list[str], train_seeds: list[int], seeds: int) -> str:
    runs = js["runs"]
    jct = lambda n: [runs[n][str(s)]["jct_mean_s"] for s in range(seeds)]
    score = lambda n: [runs[n][str(s)]["score"] for s in range(seeds)]

    def row(label: str, j: list[float], sc: list[float], ref: list[float] | None,
            sent: str) -> list[str]:
        m, h = mean_ci(j)
        out = [label, f"{m:.1f} ± {h:.1f}", f"{np.mean(sc):.4f}", sent]
        if ref is None:
            return out + ["—", "—"]
        d = np.subtract(j, ref)
        dm, lo, hi = paired_bootstrap(list(d))
        rm, rlo, rhi = paired_bootstrap(list(d / np.asarray(ref)))
        return out + [f"{dm:+.1f} [{lo:+.1f}, {hi:+.1f}]",
                      f"{100 * rm:+.2f}% [{100 * rlo:+.2f}%, {100 * rhi:+.2f}%]"]

    def sent_cell(names: list[str]) -> str:
        sent = sum(runs[n][str(s)]["sent"] for n in names for s in range(seeds))
        poss = sum(runs[n][str(s)]["possible"] for n in names for s in range(seeds))
        return f"{1 - sent / poss:.0%}" if poss else "—"

    rows = []
    for comm in arms:
        names = [f"{comm}-s{t}" for t in train_seeds]
        for n, t in zip(names, train_seeds):
            ref = None if comm == "none" else jct(f"none-s{t}")
            rows.append(row(f"{NAMES[comm]}, training seed {t}", jct(n), score(n), ref,
                            sent_cell([n])))
        if len(train_seeds) > 1:              # per held-out seed, the mean over training seeds
            mean = lambda ns, f: list(np.mean([f(n) for n in ns], axis=0))
            ref = None if comm == "none" else mean([f"none-s{t}" for t in train_seeds], jct)
            rows.append(row(f"{NAMES[comm]}, mean of {len(names)} training seeds",
                            mean(names, jct), mean(names, score), ref, sent_cell(names)))
    ref_none = np.mean([jct(f"none-s{t}") for t in train_seeds], axis=0)
    for n, label in ((SRPT_NAME, "SRPT-market (teacher)"), ("sjf", "SJF (best baseline)")):
        rows.append(row(label, jct(n), score(n), list(ref_none), "—"))
    return markdown_table(["policy", "JCT mean s (± 95% CI)", "score", "suppressed",
                           "− none, s [95% bootstrap]", "− none, relative"], rows) + (
        f"\n\n{seeds} held-out seeds (0..{seeds - 1}); differences paired per seed against no "
        f"communication of the same training seed(s); percentile bootstrap, 10,000 resamples, "
        f"seed {BOOTSTRAP_SEED}. Suppressed: active agent-rounds without a message (global: "
        f"every state reaches every peer, so 0%).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", default="none,global", help=f"arms, comma-separated, of "
                   f"{', '.join(ARMS)} (none first: the others are paired against it)")
    p.add_argument("--train-seeds", default="1")
    p.add_argument("--seeds", type=int, default=5, help="held-out evaluation seeds 0..N-1")
    p.add_argument("--steps", type=int, default=40_000)
    p.add_argument("--workers", type=int, default=1, help="processes evaluating at once")
    p.add_argument("--train-only", action="store_true",
                   help="train the arms only (any order: two processes may train two arms)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--md", default="global-state.md", help="the table's file under --out "
                   "(the runs' values: the same name, .json)")
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    log = lambda m: print(m, file=sys.stderr, flush=True)
    arms = a.arms.split(",")
    if arms[0] != "none" and not a.train_only:
        raise SystemExit("--arms: none comes first (the reference of the paired differences)")
    if unknown := [x for x in arms if x not in ARMS]:
        raise SystemExit(f"--arms: unknown {', '.join(unknown)}; expected {', '.join(ARMS)}")
    train_seeds = [int(x) for x in a.train_seeds.split(",")]
    ck = {f"{c}-s{t}": train_arm(c, t, a.steps, log) for t in train_seeds for c in arms}
    if a.train_only:
        return 0
    f = a.out / Path(a.md).with_suffix(".json").name
    js = json.loads(f.read_text()) if f.is_file() else {}
    js.setdefault("training_wall_s", {}).update(
        {n: json.loads((c.parent / "summary.json").read_text())["wall_s"] for n, c in ck.items()})
    save = lambda: f.write_text(json.dumps(js, indent=1))
    evaluate_arms(ck, a.seeds, js, save, log, a.workers)
    md = table(js, arms, train_seeds, a.seeds)
    cmd = " ".join(["python -m bench.global_state", *(argv if argv is not None else sys.argv[1:])])
    (a.out / a.md).write_text(f"`{cmd}`\n\n{md}\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
