"""The cluster engine in replay mode (``agora replay``) at several site counts, on this machine:
decision latency (work open -> allocation committed and queryable, measured at the replicas),
throughput, messages, and memory per agent actor; and, with ``--quality``, schedule quality in
replay against the simulation engine (same workload, same policy, several seeds).

    python -m bench.replay                         # 4, 8, 16, 32 sites
    python -m bench.replay --sites 64 --workload synthetic:jobs=960,load=0.9 \
        --episode-timeout-s 10800                  # ~10,000 instances (over an hour here)
    python -m bench.replay --quality --seeds 5
    AGORA_TRACE=1 python -m bench.replay --sites 16 # + where the time goes: each agent's
        # trace (out/traces-<episode>.json) and each replica's execution times
        # (out/coordinator/data/replica-<i>.trace.json), wall clock, beside the run
    AGORA_MEMTRACE=s00 python -m bench.replay --sites 64 # + what site s00's agent's Python
        # allocations hold, by line (tracemalloc; 1: every agent, slower)
    python -m bench.replay --sites 16 --speed 25 --round-grace-s 0.25

Each row is one ``agora replay`` of a synthetic workload on a cluster of N copies of a small
site (``site_cluster``), 4 replicas, the committed policy (it has no per-site parameters, so
one checkpoint serves every N). The load average is printed beside each row: this machine is
shared. Results go to ``bench/results/replay.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
POLICY = REPO / "agents" / "learn" / "checkpoints" / "learned-synE.pt"


def site_cluster(n: int, path: Path) -> Path:
    """N sites, each two 16-core nodes and one 4-gpu node, one link speed between all."""
    sites = [{"name": f"s{i:02d}", "nodes": [
        {"name": "cpu", "cpu": 16, "mem": 65536, "count": 2},
        {"name": "gpu", "cpu": 16, "mem": 65536, "gpus": 4, "gpu_model": "T4"}]}
        for i in range(n)]
    path.write_text(yaml.safe_dump({"sites": sites, "links": {
        "default": {"latency_ms": 20, "bandwidth_mbps": 10000}}}))
    return path


def config(d: Path, n: int, *, workload: str, speed: float, seed: int, policy: Path,
           round_timeout_s: float, tls: bool = True,
           round_grace_s: float | None = None, episode_timeout_s: float | None = None,
           peers: int | None = None, worker_niceness: int | None = None) -> Path:
    data = {"cluster": str(site_cluster(n, d / "cluster.yaml")), "workload": workload,
            "policy": str(policy), "out": str(d / "out"), "seed": seed, "speed": speed,
            "round_timeout_s": round_timeout_s, "episode_timeout_s": episode_timeout_s,
            "coordinator": {} if round_grace_s is None else {"round_grace_s": round_grace_s},
            "metrics": {"enabled": False}, "tls": {"enabled": tls},
            "ray": {"num_cpus": os.cpu_count(), "dashboard": False,
                    **({} if worker_niceness is None else
                       {"worker_niceness": worker_niceness})}, "peers": peers}
    (d / "replay.yaml").write_text(yaml.safe_dump(data))
    return d / "replay.yaml"


def one(n: int, a, seed: int = 0) -> dict:
    from agora.deploy.replay import replay
    from agora.deploy.up_config import load_up_config

    d = Path(a.work).resolve() / f"s{n}-{seed}"   # the written config names absolute paths
    d.mkdir(parents=True, exist_ok=True)
    cfg = load_up_config(config(d, n, workload=a.workload, speed=a.speed, seed=seed,
                                policy=Path(a.policy), round_timeout_s=a.round_timeout_s,
                                round_grace_s=a.round_grace_s,
                                episode_timeout_s=a.episode_timeout_s,
                                tls=a.tls == "on", peers=a.peers,
                                worker_niceness=a.worker_niceness))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    res = replay(cfg, echo=lambda *x, **k: None, progress=False)
    return {"sites": n, "seed": seed, "metrics": res["metrics"], "system": res["system"],
            "wall_s": time.perf_counter() - t0, "load": [load0, os.getloadavg()]}


def sim_engine(n: int, a, seed: int) -> dict:
    from agora.agents.learn.evaluate import run_learned
    from agora.agents.sim.runner import Scenario

    d = Path(a.work).resolve() / f"sim{n}"
    d.mkdir(parents=True, exist_ok=True)
    cluster, wl = Scenario(cluster=str(site_cluster(n, d / "cluster.yaml")),
                           workload=a.workload).build(seed)
    r, _ = run_learned(a.policy, cluster, wl, seed=seed)
    return r.metrics


def latency_table(rows: list[dict]) -> str:
    from agora.agents.sim.report import markdown_table

    out = []
    for r in rows:
        s, m = r["system"], r["metrics"]
        out.append([str(r["sites"]), f"{m['jobs']} / {m['instances']}",
                    f"{s['decision_latency_ms_p50']:.1f}", f"{s['decision_latency_ms_p99']:.1f}",
                    (f"{s['decision_latency_ready_ms_p50']:.1f} / "
                     f"{s['decision_latency_ready_ms_p99']:.1f}"
                     if "decision_latency_ready_ms_p50" in s else "–"),
                    str(s["decision_latency_samples"]), str(s["rounds"]),
                    f"{s['allocations_per_s']:.1f}", f"{s['codes_sent']} / {s['codes_suppressed']}",
                    f"{s['agent_max_rss_mib']:.0f}",
                    "–" if s.get("agent_max_pss_mib") is None else f"{s['agent_max_pss_mib']:.0f}",
                    "–" if s.get("agent_max_anon_mib") is None else f"{s['agent_max_anon_mib']:.0f}",
                    "no" if not s["torch_in_agents"] else "yes",
                    f"{r['wall_s']:.0f}", f"{s['start_up_s']:.0f}",
                    "yes" if m["jobs_completed"] + m["jobs_unschedulable"] == m["jobs"]
                    and m["tasks_lost"] == 0 else "NO",
                    " / ".join(f"{x[0]:.1f}" for x in r["load"])])
    return markdown_table(["sites", "jobs / instances", "latency p50 ms", "latency p99 ms",
                           "from ready p50 / p99 ms",
                           "allocations", "rounds", "allocations / s", "codes sent / suppressed",
                           "agent RSS MiB (max)", "agent PSS MiB (max, at the end)",
                           "agent anonymous MiB (max, at the end)",
                           "torch in agents", "run wall s",
                           "start-up s", "completed", "load avg (start / end)"], out)


def quality_table(pairs: list[tuple[dict, dict]]) -> str:
    from agora.agents.sim.report import markdown_table, mean_ci

    def cell(xs, fmt="{:.1f}"):
        m, h = mean_ci(xs)
        return (fmt + " ± " + fmt).format(m, h)

    jr = [r["metrics"]["jct_mean_s"] for r, _ in pairs]
    js = [s["jct_mean_s"] for _, s in pairs]
    sr = [r["metrics"]["score"] for r, _ in pairs]
    ss = [s["score"] for _, s in pairs]
    dj = [a / b - 1 for a, b in zip(jr, js)]
    ds = [a / b - 1 for a, b in zip(sr, ss)]
    return markdown_table(["engine", "JCT mean s", "score", "paired difference (replay / sim - 1)"],
                          [["simulation", cell(js), cell(ss, "{:.4f}"), "-"],
                           ["replay", cell(jr), cell(sr, "{:.4f}"),
                            f"JCT {cell([100 * x for x in dj], '{:+.1f}')} %, score "
                            f"{cell([100 * x for x in ds], '{:+.1f}')} %"]])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--sites", default="4,8,16,32", help="comma-separated site counts")
    p.add_argument("--workload", default="synthetic:jobs=150,load=0.9",
                   help="the workload of every row (default: %(default)s)")
    p.add_argument("--speed", type=float, default=100.0,
                   help="workload seconds per wall second (default: %(default)s)")
    p.add_argument("--round-timeout-s", type=float, default=2.0)
    p.add_argument("--round-grace-s", type=float, default=None,
                   help="the coordinator's round_grace_s (default: its own default)")
    p.add_argument("--episode-timeout-s", type=float, default=None,
                   help="wall seconds a run may take (default: the replay's own, 20 x the "
                        "arrival span / speed, at least 600)")
    p.add_argument("--policy", default=str(POLICY))
    p.add_argument("--peers", type=int, default=None,
                   help="sites each agent listens to (default: the checkpoint's, 16); "
                        "N-1 for all-to-all")
    p.add_argument("--worker-niceness", type=int, default=None, choices=range(20),
                   metavar="0..19", help="the Ray workers' niceness, agents among them "
                   "(default: the config's, 0; Ray's own is 15)")
    p.add_argument("--quality", action="store_true",
                   help="replay vs the simulation engine, --seeds seeds, at --sites's first N")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--tls", default="on", choices=["on", "off"],
                   help="mutual TLS on every link (the default of every configuration)")
    p.add_argument("--work", default=str(REPO / "out" / "bench-replay"))
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "replay"),
                   help="writes OUT.md and OUT.json (default: %(default)s)")
    a = p.parse_args(argv)
    sites = [int(x) for x in a.sites.split(",")]
    peers = "the checkpoint's" if a.peers is None else a.peers
    text = [f"Cluster engine in replay mode: 4 replicas, {os.cpu_count()} cores, workload "
            f"{a.workload}, speed {a.speed:g}x, policy {Path(a.policy).name}, TLS {a.tls}, "
            f"peers {peers}"
            + ("" if a.worker_niceness is None else f", worker niceness {a.worker_niceness}")
            + "\n"]
    result: dict = {"args": vars(a)}
    if a.quality:
        pairs = []
        for seed in range(a.seeds):
            r = one(sites[0], a, seed)
            s = sim_engine(sites[0], a, seed)
            pairs.append((r, s))
            print(f"seed {seed}: replay JCT {r['metrics']['jct_mean_s']:.1f} score "
                  f"{r['metrics']['score']:.4f}; sim JCT {s['jct_mean_s']:.1f} score "
                  f"{s['score']:.4f}", flush=True)
        text.append(f"### Schedule quality, {sites[0]} sites, {a.seeds} seeds\n")
        text.append(quality_table(pairs))
        result["quality"] = [{"replay": r["metrics"], "sim": s} for r, s in pairs]
    else:
        rows = []
        for n in sites:
            rows.append(one(n, a))
            print(latency_table(rows[-1:]), flush=True)
            if traced := rows[-1]["system"].get("agent_traced"):
                print(f"AGORA_MEMTRACE: site {traced['site']}'s agent (RSS "
                      f"{traced['max_rss_mib']:.0f} MiB at most, anonymous "
                      f"{traced['anon_mib'] or 0:.0f}): Python's allocations "
                      f"{traced['mib']:.1f} MiB (peak {traced['peak_mib']:.1f}):\n  "
                      + "\n  ".join(traced["top"]), flush=True)
        text.append(latency_table(rows))
        result["rows"] = [{k: v for k, v in r.items()} for r in rows]
    md = "\n".join(text)
    print(md)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = "-quality" if a.quality else ""
    (out.parent / f"{out.name}{suffix}.md").write_text(md + "\n")
    (out.parent / f"{out.name}{suffix}.json").write_text(json.dumps(result, indent=1,
                                                                    default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
