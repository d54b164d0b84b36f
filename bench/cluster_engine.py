"""System benchmark of the cluster engine (issue 6): decision latency, committed allocations
per second and memory per agent, for several site counts, with 4 PBFT replicas on this
machine; optionally the largest site count that completes a 10,000-task workload.

    python -m bench.cluster_engine                       # 4, 8, 16, 32 sites
    python -m bench.cluster_engine --sites 16 --jobs 200
    python -m bench.cluster_engine --scale 32,64 --tasks 10000

Clusters of S sites repeat the embedded default's 8 site kinds (``dc-east``, ``dc-east-1``,
...). The policy has one site embedding per site, so each S gets its own checkpoint: a
randomly initialised one (seeded, written under ``--work``) -- latency does not depend on
training, though the share of codes sent does (random weights are uncertain: they send
more than a trained policy). Workload: ``synthetic:jobs=J`` at load 0.9 on that cluster,
seed 0. Decision latency = wall time from the start of the round that placed an allocation
to the commit of its tick (f+1 replies; then also queryable). Output: a markdown table on
stdout and in ``--out`` (+ JSON next to it).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TRAINED = "bench/results/learned-synE.pt"


def cluster_yaml(n: int, path: Path) -> Path:
    base = yaml.safe_load((ROOT / "deploy/configs/cluster-default.yaml").read_text())
    kinds = base["sites"]
    sites = []
    for i in range(n):
        s = dict(kinds[i % len(kinds)])
        if i >= len(kinds):
            s["name"] = f"{s['name']}-{i // len(kinds)}"
        sites.append(s)
    default = base.get("links", {}).get("default", {"latency_ms": 20, "bandwidth_mbps": 10000})
    doc = {"sites": sites, "links": {"default": default}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def random_checkpoint(cluster_path: Path, out: Path, seed: int = 0) -> Path:
    import torch

    from agents.learn import checkpoint
    from agents.learn.features import FeatureBuilder
    from agents.learn.learned_policy import AgentConfig, Agents
    from agents.workloads.loader import load_cluster

    cluster = load_cluster(str(cluster_path))
    torch.manual_seed(seed)
    cfg = AgentConfig()
    agents = Agents(cfg, len(cluster.sites), FeatureBuilder(cluster, cfg.k).state_dim)
    checkpoint.save(out, agents=agents, extra={"note": f"random weights, seed {seed}"})
    return out


def one(n_sites: int, jobs: int, work: Path, *, load: float, seed: int = 0,
        trained: bool = False) -> dict:
    """One run; ``trained``: the committed 8-site benchmark policy on the default cluster
    (a trained policy sends far fewer codes than random weights)."""
    from deploy.up import bring_up, run_episode, system_figures
    from deploy.up_config import up_config_from_dict

    d = work / (f"s{n_sites}" + ("-trained" if trained else ""))
    d.mkdir(parents=True, exist_ok=True)
    if trained:
        cpath, ck = ROOT / "deploy/configs/cluster-default.yaml", ROOT / TRAINED
    else:
        cpath = cluster_yaml(n_sites, d / "cluster.yaml")
        ck = random_checkpoint(cpath, d / "random.pt", seed)
    cfg = up_config_from_dict({"cluster": str(cpath), "workload": f"synthetic:jobs={jobs}",
                               "load": load, "policy": str(ck), "out": str(d / "out"),
                               "seed": seed, "ray": {"num_cpus": os.cpu_count()}},
                              source=f"bench s{n_sites}")
    cluster, wl = cfg.scenario().build(seed)
    t0 = time.perf_counter()
    system = bring_up(cfg, cluster, cfg.cluster, Path(cfg.out))
    up_s = time.perf_counter() - t0
    try:
        res, pol, wall, _ = run_episode(system, cluster, wl, seed=seed, k=16, live_speed=None,
                                        call_timeout_s=300)
        figs = system_figures(system, pol, wall)
    finally:
        system.close()
    tasks = sum(len(j.tasks) for j in wl.jobs)
    return {"sites": n_sites, "policy": "trained" if trained else "random",
            "jobs": len(wl.jobs), "tasks": tasks,
            "instances": res.metrics["instances_completed"],
            "completed": res.metrics["jobs_completed"] == res.metrics["jobs"],
            "startup_s": round(up_s, 1), "score": res.metrics["score"],
            "jct_mean_s": res.metrics["jct_mean_s"], **figs,
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def table(rows: list[dict]) -> str:
    from agents.sim.report import markdown_table

    head = ["sites", "policy", "jobs / tasks", "rounds", "allocations", "latency p50 ms",
            "latency p99 ms", "allocations / s", "codes sent / suppressed",
            "agent RSS MiB (max)", "run wall s", "start-up s", "completed", "load avg"]
    body = [[str(r["sites"]), r.get("policy", "random"), f"{r['jobs']} / {r['tasks']}", str(r["rounds"]),
             str(r["allocations_committed"]), f"{r['decision_latency_ms_p50']:.1f}",
             f"{r['decision_latency_ms_p99']:.1f}", f"{r['allocations_per_s']:.1f}",
             f"{r['codes_sent']} / {r['codes_suppressed']}", f"{r['agent_max_rss_mib']:.0f}",
             f"{r['wall_s']:.1f}", f"{r['startup_s']:.1f}", "yes" if r["completed"] else "NO",
             " ".join(r["loadavg"])] for r in rows]
    return markdown_table(head, body)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sites", default="4,8,16,32")
    p.add_argument("--jobs", type=int, default=120, help="synthetic jobs per run")
    p.add_argument("--load", type=float, default=0.9)
    p.add_argument("--trained", action="store_true",
                   help="also 8 sites with the committed trained policy (default cluster)")
    p.add_argument("--scale", default="", help="site counts for the 10,000-task runs")
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--work", default="out/bench-cluster")
    p.add_argument("--out", default="bench/results/cluster_engine.md")
    a = p.parse_args(argv)
    work = Path(a.work)
    rows = []
    for n in [int(x) for x in a.sites.split(",") if x]:
        r = one(n, a.jobs, work, load=a.load)
        rows.append(r)
        print(table([r]).splitlines()[-1], flush=True)
    if a.trained:
        r = one(8, a.jobs, work, load=a.load, trained=True)
        rows.append(r)
        print(table([r]).splitlines()[-1], flush=True)
    scale = []
    for n in [int(x) for x in a.scale.split(",") if x]:
        jobs = max(a.tasks // 3, 1)          # synthetic jobs average ~3 tasks (DAG mix)
        try:
            r = one(n, jobs, work, load=a.load)
        except Exception as e:  # noqa: BLE001 - a scale run that fails is a result
            r = {"sites": n, "error": f"{type(e).__name__}: {e}"[:300]}
        scale.append(r)
        print(json.dumps({k: r.get(k) for k in ("sites", "tasks", "completed", "wall_s",
                                                "agent_max_rss_mib", "error")}), flush=True)
    text = [f"Cluster engine, 4 replicas, {os.cpu_count()} cores; synthetic:jobs={a.jobs} "
            f"at load {a.load}, seed 0; random-weight checkpoints unless the policy column says trained", "", table(rows)] if rows \
        else []
    if scale:
        ok = [r for r in scale if "error" not in r]
        text += ["", f"Scale runs (~{a.tasks} tasks):", ""]
        text += [table(ok)] if ok else []
        text += [f"- {r['sites']} sites: {r['error']}" for r in scale if "error" in r]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "scale": scale}, indent=1,
                                                   default=str))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
