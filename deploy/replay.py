"""``agora replay``: the autonomous site agents, the PBFT coordinator and simulated executors
on a wall clock scaled by ``speed`` -- the cluster engine end to end, with sites modelled
rather than real, so it runs dozens of sites on one machine.

The launcher (``deploy/launch.py``) starts the system; then this module plays two parts a
user plays, and nothing more: it *submits* the workload's jobs at their arrival times on the
replay clock (the operator's client, as ``agora submit`` does), and it *watches* the committed
schedule (f+1 matching updates, as ``agora schedule watch`` does) to know when every job has
finished and to compute the metrics from the log (``agents.sim.log_metrics``). The agents
observe, decide, report and run on their own; no driver carries their messages.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from agora.agents.workloads.loader import require_jobs
from agora.coordinator.schedule_rules import submission_chunks

log = logging.getLogger("agora.replay")


def policy_arrays(path) -> tuple[dict, dict]:
    """The acting policy of a checkpoint (read here, with torch; the agents get arrays)."""
    from agora.agents.learn.checkpoint import policy_arrays as read

    return read(path)


def start_clock(system, t0_sim: float, speed: float):
    """Start the replay clock (once per replay: every agent's executor reads it)."""
    import ray

    from agora.agents.sim.site_executor import ReplayClock

    clock = ReplayClock(t0_wall=time.time() + 0.1, t0_sim=t0_sim, speed=speed)
    ray.get(system.clock.set.remote(clock.t0_wall, clock.t0_sim, clock.speed), timeout=30)
    return clock


def run_episode(system, cluster, wl, *, clock, timeout_s: float, progress=None,
                check=None) -> dict:
    """Submit ``wl`` on the replay clock and follow the schedule until every job finished;
    returns {"metrics", "submitted", "rejected", "wall_s", "account"}. ``check()`` is
    called on every turn of the wait (e.g. ``StepFailureWatch``'s warnings)."""
    from agora.agents.sim.log_metrics import LogAccount

    account = LogAccount(cluster)
    client = system.operator
    since = system.loop.run(_version(client)) + 1   # this episode's jobs come after it
    follow = system.loop.spawn(_follow(client, account, since))
    t_start = time.perf_counter()
    rejected: list[tuple[object, str]] = []
    jobs = list(wl.jobs)
    i = 0
    try:
        while True:
            now = clock.now()
            batch = []
            while i < len(jobs) and jobs[i].arrival <= now:
                batch.append(jobs[i])
                i += 1
            for chunk in submission_chunks(batch):
                res = system.loop.run(client.submit_jobs(chunk), timeout=120)
                for r in res.rejections:
                    m = re.search(r"jobs\[(\d+)\]", r.field)
                    if m is not None:
                        rejected.append((chunk[int(m.group(1))], r.reason))
            if follow.done():
                follow.result()                      # raises what stopped it
            if i == len(jobs) and len(account.ledger.jobs) >= len(jobs) - len(rejected) \
                    and account.done:
                break
            if time.perf_counter() - t_start > timeout_s:
                raise TimeoutError(f"the replay did not finish in {timeout_s:.0f} s: "
                                   f"{_summary(account)}")
            if progress is not None:
                progress(account, clock.now(), i, len(jobs))
            if check is not None:
                check()
            nxt = jobs[i].arrival if i < len(jobs) else None
            wait = 0.2 if nxt is None else min(0.2, clock.wall_delay(nxt))
            time.sleep(max(wait, 0.005))
    finally:
        follow.cancel()
    wall = time.perf_counter() - t_start
    for job, reason in rejected:
        # refused at submission (it fits no node): unschedulable, as the simulator reports
        # a job it rejects at arrival
        js = account.ledger.admit(job, account.site_index[job.origin], job.arrival)
        account.ledger.reject(js, js.tasks[0], reason)
    return {"metrics": account.metrics(instances=wl.instance_count, wall_s=wall),
            "submitted": len(jobs), "rejected": len(rejected), "wall_s": wall,
            "rejections": [{"job": job.id, "reason": reason} for job, reason in rejected],
            "account": account}


async def _version(client) -> int:
    from agora.coordinator.queries import agreed_status

    st = agreed_status(await client.status(), client.f)
    return int(st.get("last_executed", 0))


async def _follow(client, account, since: int) -> None:
    async for u in client.watch(since_version=since):
        account.apply(u)


def _summary(account) -> str:
    jobs = account.ledger.jobs.values()
    pending = sum(1 for j in jobs if j.outcome == "pending")
    return f"{len(account.ledger.jobs)} jobs admitted, {pending} still pending, " \
           f"{len(account.ledger.pool)} tasks open"


def run_rows(account) -> list[dict]:
    """Every run the committed log shows: (job, task, instance, node, start, end, outcome)."""
    nodes = account.cluster.nodes
    return [{"job": a.task.job.job.id, "task": a.task.task.id, "instance": a.instance,
             "node": nodes[a.node].name, "start": a.start, "end": a.end, "outcome": a.outcome}
            for a in account.runs]


def system_figures(system, episode: dict) -> dict:
    """What the system did: decision latency (measured at the replicas), rounds, messages,
    view changes, restarts, memory per agent."""
    import ray

    from agora.coordinator.queries import agreed_status

    st = system.loop.run(system.operator.status(), timeout=30)
    good = [s for s in st if not isinstance(s, str)]
    agreed = agreed_status(st, system.operator.f)
    infos = ray.get([a.info.remote() for a in system.actors], timeout=120)
    plain = [i for i in infos if not i.get("traced")] or infos
    def median(field: str) -> float:          # over the replicas that answered
        return round(float(np.median([getattr(s, field) for s in good])), 2) if good else 0.0

    acc = episode["account"]
    return {
        "wall_s": round(episode["wall_s"], 2),
        "decision_latency_ms_p50": median("decision_latency_ms_p50"),
        "decision_latency_ms_p99": median("decision_latency_ms_p99"),
        # from ready: the wait for capacity while every site was full left out
        "decision_latency_ready_ms_p50": median("decision_latency_ready_ms_p50"),
        "decision_latency_ready_ms_p99": median("decision_latency_ready_ms_p99"),
        "decision_latency_samples": int(max((s.decision_latency_samples for s in good),
                                            default=0)),
        "allocations_committed": acc.allocations,
        "allocations_per_s": round(acc.allocations / max(episode["wall_s"], 1e-9), 1),
        "rounds": int(agreed.get("round", 0)),
        "agent_decisions": sum(i["decisions"] for i in infos),
        "agent_messages": sum(i["messages_sent"] for i in infos),
        "agent_redecisions": sum(i.get("redecided", 0) for i in infos),
        "agent_reranked": sum(i.get("reranked", 0) for i in infos),
        "agent_step_failures": sum(i.get("step_failures", 0) for i in infos),
        "codes_sent": sum(i["codes_sent"] for i in infos),
        "codes_suppressed": sum(i["codes_suppressed"] for i in infos),
        "agent_think_ms_p50": round(float(np.median([i["think_ms_p50"] for i in infos])), 2),
        "view_changes": int(agreed.get("view", 0)),
        # watch streams a replica ended because their reader fell too far behind (it
        # watched again from where it stopped), over every replica
        "watchers_cut_off": sum(c.count for s in good for c in s.rejected
                                if c.name == "service.watcher_cut_off"),
        "replica_restarts": system.replica_restarts,
        "agent_restarts": ray.get(system.registry.restarts.remote(), timeout=30),
        # an agent that AGORA_MEMTRACE traces holds tracemalloc's own records too: the
        # others' figures, when there are others
        "agent_max_rss_mib": round(max(i["max_rss_mib"] for i in plain), 1),
        "agent_max_pss_mib": (round(max(pss), 1) if (pss := [
            i["pss_mib"] for i in plain if i.get("pss_mib") is not None]) else None),
        "agent_max_anon_mib": (round(max(anon), 1) if (anon := [
            i["anon_mib"] for i in plain if i.get("anon_mib") is not None]) else None),
        "agent_traced": next((dict(i["traced"], site=i["site"], max_rss_mib=i["max_rss_mib"],
                                   anon_mib=i.get("anon_mib"))
                              for i in sorted(infos, key=lambda i: -i["max_rss_mib"])
                              if i.get("traced")), None),  # AGORA_MEMTRACE's largest agent
        "torch_in_agents": any(i["torch_loaded"] for i in infos),
        "jobs_rejected_at_submission": episode["rejected"],
        "agents": {i["site"]: {"node_id": i["node_id"][:12], "pid": i["pid"],
                               "address": i["address"]} for i in infos},
    }


def write_traces(system, path: Path) -> None:
    """Each agent's trace of this episode (``AGORA_TRACE`` set: wake, act, submit, send,
    reply, update, with wall times and rounds): where a round's time goes."""
    import ray

    traces = ray.get([a.trace.remote() for a in system.actors], timeout=120)
    path.write_text(json.dumps(dict(zip(system.sites, traces))))


def replay(cfg, *, progress: bool = True, echo=print, byzantine=None, on_system=None,
           after_ray=None) -> dict:
    """Run ``cfg`` (an ``UpConfig``) in replay mode; returns the result written to
    ``out/result.json``. ``on_system(system)`` (fault tests) runs once the system is up,
    in a thread of its own; ``after_ray()``: called once Ray is started (``bring_up``)."""
    from agora.agents.cluster.replay_clock import ReplayExecutorSpec
    from agora.agents.sim.report import markdown_table, metrics_table
    from agora.deploy.launch import bring_up
    from agora.deploy.observability import StepFailureWatch

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = Path(cfg.out)
    cluster, wl = cfg.scenario().build(cfg.seed)
    require_jobs(wl, cfg.workload, "replay")      # refused before anything starts
    weights, pconf = cfg.acting_policy()
    out.mkdir(parents=True, exist_ok=True)        # (a probe: a bad policy left it empty)
    trainers = None
    if cfg.federation.enabled:
        from agora.agents.learn.learned_policy import AgentConfig
        from agora.federation.actor_grid import ActorTrainer, learner_config

        agent_cfg = AgentConfig(**{k: v for k, v in pconf.items()
                                   if k in AgentConfig.__dataclass_fields__})
        trainers = {s: ActorTrainer(learner_config(cfg.scenario(), agent_cfg, cfg.seed, i))
                    for i, s in enumerate(cluster.site_names)}
    cluster_spec = cfg.cluster if cfg.cluster == "default" else str(Path(cfg.cluster).resolve())
    echo(f"agora replay: {len(cluster.sites)} sites, {cfg.replicas} replicas, "
         f"{len(wl.jobs)} jobs ({cfg.workload}), policy {cfg.policy}, seed {cfg.seed}, "
         f"speed {cfg.speed:g}x")
    t_up = time.perf_counter()
    system = bring_up(cfg, cluster, cluster_spec, out, weights=weights, policy_config=pconf,
                      executor_spec=ReplayExecutorSpec(namespace="agora"),
                      byzantine=byzantine, trainers=trainers, after_ray=after_ray)
    up_s = time.perf_counter() - t_up
    echo(f"up in {up_s:.1f} s; coordinator config {out / 'coordinator' / 'coordinator.yaml'} "
         f"(agora status --config ...)")
    if on_system is not None:
        import threading
        threading.Thread(target=on_system, args=(system,), daemon=True).start()
    bar = _Progress(echo) if progress else None
    watch = StepFailureWatch(system.actors)

    def check() -> None:
        for line in watch.poll():
            print(f"agora replay: {line}", file=sys.stderr, flush=True)
    episodes: list[dict] = []
    runs: list[dict] = []
    try:
        clock = start_clock(system, wl.jobs[0].arrival if wl.jobs else 0.0, cfg.speed)
        decided = 0
        for k in range(cfg.episodes):
            wl_k = episode_workload(wl, k, clock.now() + 1.0)
            span = (wl_k.jobs[-1].arrival - clock.now()) if wl_k.jobs else 0.0
            timeout_s = cfg.episode_timeout_s or max(600.0, 20 * span / cfg.speed)
            ep = run_episode(system, cluster, wl_k, clock=clock, timeout_s=timeout_s,
                             progress=bar.update if bar else None, check=check)
            if bar is not None:
                bar.close()
            figs = system_figures(system, ep)
            if os.environ.get("AGORA_TRACE"):
                write_traces(system, out / f"traces-{k}.json")
            figs["start_up_s"] = round(up_s, 2)
            # the agents' decisions of this episode (their counters run on across episodes;
            # a restarted agent's start again, so this undercounts then): the driver sees
            # none, and "decisions 0" beside instances completed was a probe's puzzle
            ep["metrics"]["decisions"] = max(figs["agent_decisions"] - decided, 0)
            decided = figs["agent_decisions"]
            echo(metrics_table(ep["metrics"]))
            for r in ep["rejections"][:10]:     # why, not only how many (a probe)
                echo(f"rejected at submission: job {r['job']}: {r['reason']}")
            if len(ep["rejections"]) > 10:
                echo(f"... {len(ep['rejections']) - 10} more rejected (result.json)")
            echo(markdown_table(["system", "value"], [[k, str(v)] for k, v in figs.items()
                                                       if k != "agents"]))
            episodes.append({"episode": k, "metrics": ep["metrics"], "system": figs,
                             "rejections": ep["rejections"]})
            runs.extend(run_rows(ep["account"]))
            if cfg.federation.enabled and k < cfg.episodes - 1:
                episodes[-1]["federation"] = federate_between(system, cfg, pconf, weights,
                                                              k, echo)
    finally:
        system.close()
    result = {"config": cfg.to_dict(), "metrics": episodes[-1]["metrics"],
              "system": episodes[-1]["system"], "episodes": episodes,
              "total_wall_s": round(time.perf_counter() - t_up, 2)}
    (out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "runs.json").write_text(json.dumps(runs))
    echo(f"wrote {out / 'result.json'} ({result['total_wall_s']} s in all)")
    return result


def episode_workload(wl, ep: int, start_s: float):
    """Episode ``ep``'s copy of ``wl`` for a coordinator that already holds the earlier
    episodes: job ids prefixed ``e<ep>:`` (ids are unique per coordinator) and arrivals
    (and deadlines) moved to start at ``start_s`` on the replay clock."""
    from dataclasses import replace

    if not wl.jobs:
        return wl
    shift = start_s - wl.jobs[0].arrival
    if ep == 0 and shift <= 0:
        return wl
    jobs = tuple(replace(j, id=j.id if ep == 0 else f"e{ep}:{j.id}", arrival=j.arrival + shift,
                         deadline=None if j.deadline is None else j.deadline + shift)
                 for j in wl.jobs)
    return replace(wl, jobs=jobs, source=f"{wl.source} (episode {ep}, +{shift:.0f} s)")


def federate_between(system, cfg, pconf: dict, weights: dict, ep: int, echo) -> dict:
    """Flower rounds over the site actors after episode ``ep``; the aggregate becomes every
    site's acting policy."""
    from agora.federation.actor_grid import federate

    fc = cfg.federation
    names = list(weights)
    t0 = time.perf_counter()
    final, info = federate(system.actors, system.sites, [weights[n] for n in names], names,
                           policy_config=pconf, rounds=fc.rounds,
                           local_steps=fc.local_steps, strategy=fc.strategy,
                           seed=cfg.seed + ep)
    weights.update(zip(names, final))
    info["wall_s"] = round(time.perf_counter() - t0, 2)
    echo(f"federation after episode {ep}: {fc.rounds} {fc.strategy} round(s) of "
         f"{fc.local_steps} local steps per site in {info['wall_s']} s; "
         f"errors: {len(info['errors'])}")
    return info


class _Progress:
    """One progress line on stderr while the replay runs."""

    def __init__(self, echo) -> None:
        self.t = 0.0
        self.tty = sys.stderr.isatty()

    def update(self, account, now: float, submitted: int, total: int) -> None:
        if time.perf_counter() - self.t < 1.0:
            return
        self.t = time.perf_counter()
        jobs = account.ledger.jobs.values()
        done = sum(1 for j in jobs if j.outcome != "pending")
        running = sum(ts.running for ts in account.ledger.tasks.values())
        line = (f"replay t={now:,.0f} s: jobs submitted {submitted}/{total}, finished "
                f"{done}, instances running {running}, open tasks {len(account.ledger.pool)}, "
                f"schedule version {account.version}")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
