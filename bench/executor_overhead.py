"""Agora's overhead against plain Ray, in one run: the same N short instances (``true``)
submitted through Agora (coordinator, agents, runners) and as plain Ray tasks pinned to the
same Ray nodes (``NodeAffinitySchedulingStrategy``, same resources, the runner's own instance
body), on one local Ray carrying S sites of one node each.

    python -m bench.executor_overhead                    # N = 1000, 8 sites
    python -m bench.executor_overhead --n 2000 --sites 4,8

Per system: throughput (instances / s from the submission to the last end), submit -> start
latency p50 / p99 (an instance's start as its process saw it, minus when it was submitted),
and the ratio of Agora's throughput to plain Ray's. Plain Ray runs first, then Agora, in the
same Ray (the nodes' workers are warm for both). Results: ``bench/results/executor_overhead.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
POLICY = REPO / "agents" / "learn" / "checkpoints" / "learned-synE.pt"


def cluster_yaml(n_sites: int, path: Path) -> Path:
    path.write_text(yaml.safe_dump({"sites": [
        {"name": f"s{i:02d}", "nodes": [{"name": "n0", "cpu": 1, "mem": 8192}]}
        for i in range(n_sites)], "links": {"default": {"latency_ms": 5,
                                                        "bandwidth_mbps": 10000}}}))
    return path


def plain_ray(n: int, nodes: list[str], folder: Path) -> dict:
    """N instances as Ray tasks, round-robin over the nodes, each pinned to the Ray node
    carrying its Agora node, running the runner's own instance body."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from agora.agents.cluster.node_runner import RunRequest, execute_instance, node_resource

    carrier = {r: nd["NodeID"] for nd in ray.nodes() for r in nd["Resources"]}
    refs, submitted = [], []
    t0 = time.time()
    for i in range(n):
        node = nodes[i % len(nodes)]
        d = folder / f"plain-{i}"
        d.mkdir(parents=True)
        req = RunRequest(job="plain", task="t", instance=i, run_id=0, attempt=1,
                         argv=("true",), env=(), cwd=None, timeout_s=None, cpu=1.0,
                         mem_mib=0, gpus=0.0, site=node.split("/")[0], node=node)
        submitted.append(time.time())
        refs.append(execute_instance.options(
            num_cpus=1.0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                node_id=carrier[node_resource(node)], soft=False)).remote(req, str(d)))
    ends = ray.get(refs)
    wall = max(e["end"] for e in ends) - t0
    lat = [e["start"] - s for e, s in zip(ends, submitted)]
    assert all(e["kind"] == "completed" for e in ends)
    return {"n": n, "wall_s": wall, "per_s": n / wall, "p50_ms": 1000 * np.median(lat),
            "p99_ms": 1000 * np.percentile(lat, 99)}


def agora(system, n: int, sites: list[str], per_job: int) -> dict:
    """N instances as jobs of ``per_job`` instances each, submitted at once by the operator;
    starts and ends from the runs' folders."""
    from agora.agents.domain import Demand, Job, Run, Task
    from agora.deploy.run_report import runs_from_folders

    jobs = []
    t0 = time.time()
    for k in range(0, n, per_job):
        jobs.append(Job(id=f"b{k}", arrival=t0, origin=sites[(k // per_job) % len(sites)],
                        tasks=(Task(id="t", duration=0.1, demand=Demand(cpu=1000, mem=0),
                                    instances=min(per_job, n - k),
                                    run=Run(argv=("true",))),)))
    for k in range(0, len(jobs), 500):
        res = system.loop.run(system.operator.submit_jobs(jobs[k:k + 500]), timeout=300)
        assert res.accepted == len(jobs[k:k + 500]), list(res.rejections)[:3]
    deadline = time.time() + 1800
    while True:
        view = system.loop.run(system.operator.ledger(), timeout=120)
        done = sum(1 for j in view.jobs if j.outcome != "pending")
        if done == len(jobs):
            break
        if time.time() > deadline:
            raise TimeoutError(f"{done}/{len(jobs)} jobs finished")
        time.sleep(1.0)
    rows = [r for r in runs_from_folders(Path(system.out) / "runs") if r["job"].startswith("b")]
    ok = [r for r in rows if r["kind"] == "completed"]
    assert len(ok) == n, f"{len(ok)} of {n} instances completed"
    wall = max(r["end"] for r in ok) - t0
    lat = [r["start"] - t0 for r in ok]
    return {"n": n, "wall_s": wall, "per_s": n / wall, "p50_ms": 1000 * np.median(lat),
            "p99_ms": 1000 * np.percentile(lat, 99), "runs": len(rows)}


def one(n_sites: int, a) -> dict:
    from agora.agents.cluster.ray_executor import RayExecutorSpec
    from agora.deploy.launch import bring_up
    from agora.deploy.replay import policy_arrays
    from agora.deploy.up_config import load_up_config

    d = Path(tempfile.mkdtemp(prefix=f"overhead-{n_sites}-", dir=a.work))
    cfg_path = d / "up.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "cluster": str(cluster_yaml(n_sites, d / "cluster.yaml")), "policy": str(a.policy),
        "out": str(d / "out"), "round_timeout_s": a.round_timeout_s,
        "metrics": {"enabled": False}}))
    cfg = load_up_config(cfg_path)
    cluster = cfg.load_cluster()
    weights, pconf = policy_arrays(cfg.policy)
    system = bring_up(cfg, cluster, str(d / "cluster.yaml"), Path(cfg.out), weights=weights,
                      policy_config=pconf, executor_spec=RayExecutorSpec(namespace="agora"),
                      live=True)
    system.out = cfg.out
    try:
        nodes = [nd.name for nd in cluster.nodes]
        plain = plain_ray(a.n, nodes, d / "plain")
        print(f"{n_sites} sites, plain Ray: {plain['per_s']:.1f}/s", flush=True)
        ag = agora(system, a.n, list(cluster.site_names), a.per_job)
        print(f"{n_sites} sites, Agora: {ag['per_s']:.1f}/s", flush=True)
    finally:
        system.close()
    return {"sites": n_sites, "plain": plain, "agora": ag, "ratio": ag["per_s"] / plain["per_s"],
            "load": os.getloadavg()}


def table(rows: list[dict]) -> str:
    from agora.agents.sim.report import markdown_table

    return markdown_table(
        ["sites", "N", "plain Ray / s", "Agora / s", "Agora / plain", "plain submit->start "
         "p50 / p99 ms", "Agora submit->start p50 / p99 ms", "load avg (1 min)"],
        [[str(r["sites"]), str(r["plain"]["n"]), f"{r['plain']['per_s']:.1f}",
          f"{r['agora']['per_s']:.1f}", f"{100 * r['ratio']:.0f} %",
          f"{r['plain']['p50_ms']:.0f} / {r['plain']['p99_ms']:.0f}",
          f"{r['agora']['p50_ms']:.0f} / {r['agora']['p99_ms']:.0f}",
          f"{r['load'][0]:.1f}"] for r in rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--n", type=int, default=1000, help="instances per system (>= 1)")
    p.add_argument("--sites", default="8", help="comma-separated site counts")
    p.add_argument("--per-job", type=int, default=10, help="instances per Agora job")
    p.add_argument("--round-timeout-s", type=float, default=1.0)
    p.add_argument("--policy", default=str(POLICY))
    p.add_argument("--work", default=str(REPO / "out"))
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "executor_overhead"))
    a = p.parse_args(argv)
    Path(a.work).mkdir(parents=True, exist_ok=True)
    rows = [one(int(s), a) for s in a.sites.split(",")]
    md = (f"Agora vs plain Ray, {a.n} instances of `true` (1 CPU each; every site one node of "
          f"1 CPU, so as many run at once as there are sites), {os.cpu_count()} cores, one "
          f"local Ray node carrying every site\n\n" + table(rows))
    print(md)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{out.name}.md").write_text(md + "\n")
    (out.parent / f"{out.name}.json").write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
