"""Agora's Python API (re-exported by the ``agora`` package: ``from agora import simulate,
submit, schedule``). The same paths as the ``agora`` commands, returning Python values
instead of printing:

    simulate(...)  ->  SimResult            # agora simulate
    submit(jobs)   ->  list of job ids      # agora submit   (a running ``agora up``)
    schedule()     ->  {"version", "source", "allocations"}   # agora schedule get
    jobs()         ->  rows per job and task                  # agora jobs

``config`` is what ``--config`` is to the commands: an ``agora up`` configuration (default:
the one ``agora up`` runs with no argument) or a coordinator YAML. Bad input raises
``ValueError`` (or ``agora.agents.workloads.errors.InputError``, a ValueError, naming the file,
line and field), an argument of the wrong type ``TypeError``, each naming the argument;
nothing running raises ``NotRunning`` (``SubmissionCut``, a ``NotRunning``, when the replicas
stopped answering during a submission: it says which jobs were admitted; a request refused
whole part-way is ``SubmissionRefused``, a ValueError that says the same).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from agora.deploy.service_client import (DEFAULT_UP_CONFIG, OPERATOR, NotRunning, check_client,
                                         run_live, target)
from agora.deploy.submission import SubmissionCut, SubmissionRefused, submit_chunks

__all__ = ["simulate", "submit", "schedule", "jobs", "NotRunning", "SubmissionCut",
           "SubmissionRefused", "DEFAULT_UP_CONFIG"]


def simulate(cluster: str | Path = "default", workload: str | Path = "synthetic",
             policy: str = "tetris", *, seed: int = 0, sites: int | None = None,
             split: str | None = None,
             load: float | None = None, arrival_window: float | None = None,
             inflate: float = 1.0, config=None):
    """One run in the simulator (``agora simulate``): a baseline by name (``sjf``, ``srpt``,
    ``fgd``, ...; default ``tetris``, as the command's) or a learned policy's checkpoint.
    Returns the ``SimResult``: ``.metrics`` (``jct_mean_s``, ``makespan_s``, ``util_mean``,
    ``qos``, ...), ``.jobs``, ``.attempts`` (each run of an instance), ``.unschedulable``,
    ``.failed``, ``.seeds``."""
    from agora.agents.baselines import is_baseline
    from agora.agents.limits import MAX_TIME
    from agora.agents.sim.config import SimConfig
    from agora.agents.sim.runner import Scenario, run_one
    from agora.agents.workloads.alibaba import SPLITS
    from agora.agents.workloads.loader import splits_into_sites
    from agora.agents.workloads.transform import MAX_INFLATE
    from agora.deploy import api_args as A

    cluster = A.path("cluster", cluster, "'default', a cluster YAML or a node-list CSV")
    workload = A.path("workload", workload, "'synthetic[:key=value,...]' or a workload file")
    policy = A.policy(policy)
    seed = A.integer("seed", seed, 0, A.MAX_SEED, " (every draw is seeded from it)")
    sites = A.optional(A.integer, "sites", sites, 1, 1_000_000)
    A.optional(A.choice, "split", split, SPLITS)
    if not splits_into_sites(cluster):           # a probe: sites=3 was taken, unused
        for name, v in (("sites", sites), ("split", split)):
            if v is not None:
                raise ValueError(f"{name}: {v!r} applies to an Alibaba node-list .csv cluster "
                                 f"only, and cluster {str(cluster)!r} has its sites in it; "
                                 f"expected no {name} with this cluster")
    load = A.optional(A.number, "load", load, gt=0, le=10, what=" (offered load)")
    arrival_window = A.optional(A.number, "arrival_window", arrival_window, gt=0, le=MAX_TIME,
                                what=" (seconds)")
    inflate = A.number("inflate", inflate, ge=1, le=MAX_INFLATE)
    if config is not None and not isinstance(config, SimConfig):
        raise TypeError(f"config: got {config!r}; expected None or an "
                        f"agora.agents.sim.config.SimConfig (as read_sim_config returns)")
    sc = Scenario(cluster=cluster, workload=workload, sites=8 if sites is None else sites,
                  split=split or "stratified",
                  arrival_window=arrival_window, load=load, inflate=inflate)
    c, wl = sc.build(seed)
    cfg = config or SimConfig()
    if is_baseline(policy):
        return run_one(c, wl, policy, seed=seed, config=cfg)
    from agora.agents.learn.evaluate import run_learned

    return run_learned(policy, c, wl, seed=seed, config=cfg)[0]


def prepare_jobs(path: str | Path, cluster, lines: dict[str, int] | None = None,
                 problems: list | None = None) -> list:
    """Jobs read from a JSON Lines file for submission: arriving now, each relative
    ``run.cwd`` made absolute against the file's folder, deadlines kept relative; ``lines``,
    if given, is filled with each job's id -> its line in the file. ``problems``, if given,
    gets every bad line's error (``read_jobs``); the caller then submits nothing."""
    from agora.agents.workloads.native import read_jobs

    wl = read_jobs(str(path), cluster, require_run=True, job_lines=lines, problems=problems)
    if problems:
        return []
    if not wl.jobs:     # a submission of nothing is a mistake (a wrong or truncated file)
        from agora.agents.workloads.errors import InputError

        raise InputError(path=str(path), line=None, field=None,
                         problem="no jobs: the file is empty or holds only blank and # lines",
                         expected="one job a line (docs/inputs.md)")
    now = time.time()
    base = Path(path).resolve().parent
    return [replace(j, arrival=now, tasks=tuple(_absolute_cwd(x, base) for x in j.tasks),
                    deadline=None if j.deadline is None else now + (j.deadline - j.arrival))
            for j in wl.jobs]


def _absolute_cwd(task, base: Path):
    """A relative ``run.cwd`` is relative to the jobs file's folder (the nodes see the same
    path when they share the file system; give absolute paths otherwise)."""
    run = task.run
    if run is None or run.cwd is None or Path(run.cwd).is_absolute():
        return task
    return replace(task, run=replace(run, cwd=str((base / run.cwd).resolve())))


def submit(jobs: str | Path, *, config: str = DEFAULT_UP_CONFIG, client: str = OPERATOR,
           keys: str | None = None) -> list[str]:
    """Submit the jobs of a JSON Lines file (each task with a ``run``) to a running Agora;
    returns their ids. Raises ``ValueError`` naming every refused job and why (the others
    were accepted and run), ``NotRunning`` when nothing serves."""
    from agora.deploy import api_args as A

    A.path("jobs", jobs, "a JSON Lines file of jobs")
    _service_args(config, client, keys)
    t = target(config)
    # the file first, as agora submit does: a bad file is told without a running Agora
    prepared = prepare_jobs(jobs, t.load_cluster())
    if not t.serving() or t.coordinator is None:
        raise t.not_running()

    async def go(c):
        return await submit_chunks(c, prepared)

    accepted, rejected = run_live(t, go, client, keys)
    if rejected:
        raise ValueError(f"{len(rejected)} job(s) refused ({len(accepted)} accepted: "
                         f"{accepted}): " + "; ".join(f"{j}: {r}" for j, r in rejected))
    return accepted


def allocation_dict(x) -> dict:
    return {"job": x.job_id, "task": x.task_id, "instances": [x.instance_begin, x.instance_end],
            "site": x.site, "node": x.node, "version": x.version, "round": x.round}


def schedule_answer(config: str, by: dict, client: str = OPERATOR, keys: str | None = None):
    """(QueryResult, 'live' | 'offline (...)'): from the running replicas, or after a stop
    from their logs on disk."""
    t = target(config)
    if t.serving():
        async def go(c):
            return await c.schedule(**by)
        return run_live(t, go, client, keys), "live"
    if t.coordinator is None:
        raise t.not_running()
    from agora.coordinator.offline import offline_schedule

    out, how = offline_schedule(t.coordinator, **by)
    return out, f"offline ({how})"


def schedule_selector(*, site: str | None = None, job: str | None = None,
                      task: str | None = None, since_version: int | None = None) -> dict:
    """The schedule query's selector for the first of ``site``, ``job``, ``task``
    (``JOB/TASK``) and ``since_version`` given; all of the schedule when none is; at most
    one may be given (a probe: ``site`` and ``job`` together read the site's alone)."""
    from agora.deploy import api_args as A

    given = [k for k, v in (("site", site), ("job", job), ("task", task),
                            ("since_version", since_version)) if v is not None]
    if len(given) > 1:
        raise A.ArgValueError(given[1], f"{' and '.join(given)}: one selects the schedule at a "
                            f"time; expected one of site, job, task and since_version, or none")
    from agora.agents.limits import ID_TEXT, SITE_NAME_TEXT, id_problem, site_name_problem

    # each checked here as the replicas check it (a probe: a 129-character job id came back
    # as the coordinator's refusal naming a protocol field, a CoordinatorError)
    def checked(name: str, value: str, problem, text: str) -> str:
        why = problem(value)
        if why is not None:
            raise A.ArgValueError(name, f"{name}: {value[:40]!r}"
                                        f"{'...' if len(value) > 40 else ''}: {why}; expected "
                                        f"{text}")
        return value

    if site:
        return {"site": checked("site", site, site_name_problem, SITE_NAME_TEXT)}
    if job:
        return {"job_id": checked("job", job, id_problem, ID_TEXT)}
    if task:
        job_id, _, task_id = task.partition("/")
        if not job_id or not task_id:
            raise A.ArgValueError("task", f"task: got {task!r}; expected JOB/TASK")
        return {"task": (checked("task", job_id, id_problem, ID_TEXT),
                         checked("task", task_id, id_problem, ID_TEXT))}
    if since_version is not None:
        return {"since_version": since_version}
    return {"all": True}


def schedule(*, config: str = DEFAULT_UP_CONFIG, site: str | None = None,
             job: str | None = None, task: str | None = None, since_version: int | None = None,
             client: str = OPERATOR, keys: str | None = None) -> dict:
    """The global schedule the replicas agreed on (all of it, or one site's, job's or task's,
    or what was allocated since a version): ``{"version", "source": "live" | "offline
    (...)", "allocations": [{"job", "task", "instances": [begin, end), "site", "node",
    "version", "round"}]}``. Works while Agora runs (f+1 matching answers) and after it stops
    (from the replicas' logs)."""
    from agora.deploy import api_args as A

    for name, v in (("site", site), ("job", job), ("task", task)):
        A.optional(A.text, name, v, "a name")
    A.optional(A.integer, "since_version", since_version, 0, A.MAX_SEED)
    _service_args(config, client, keys)
    by = schedule_selector(site=site, job=job, task=task, since_version=since_version)
    out, source = schedule_answer(config, by, client, keys)
    if out.HasField("error"):
        raise ValueError(f"{out.error.field}: {out.error.reason}")
    return {"version": out.version, "source": source,
            "allocations": [allocation_dict(x) for x in out.schedule.allocations]}


def jobs(*, config: str = DEFAULT_UP_CONFIG, job: str | None = None,
         client: str = OPERATOR, keys: str | None = None) -> list[dict]:
    """Per job and task (per instance with ``job``): state, where it runs, outcome — the rows
    ``agora jobs --json`` prints."""
    from agora.deploy import api_args as A
    from agora.deploy.cli_jobs import job_rows_for

    A.optional(A.text, "job", job, "a job id")
    _service_args(config, client, keys)
    return job_rows_for(target(config), job, client, keys)[0]


def _service_args(config, client, keys) -> None:
    from agora.deploy import api_args as A

    A.path("config", config, "an agora up configuration or a coordinator YAML")
    check_client(client, keys)
    if not Path(config).is_file():      # named as the API calls it (agora: --config)
        raise A.ArgFileError("config", f"config: {config} is not a file; expected an agora up "
                                       f"config (e.g. {DEFAULT_UP_CONFIG}) or a coordinator "
                                       f"YAML")
