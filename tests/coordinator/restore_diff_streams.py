"""The command streams of ``test_restore_differential.py``: three clusters, the
configurations the replicas run under, and ``Gen``, which draws seeded commands of every kind
(valid and not) from the straight replica's state -- the same bytes for every replica."""

from __future__ import annotations

import random

from nacl.signing import SigningKey

from agora.agents.domain import Cluster, Demand, Faults, Job, Link, Node, Site, Task
from agora.agents.domain import Run as TaskRun
from agora.coordinator.schedule_state import ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto


# ---- clusters -------------------------------------------------------------------------------

def cluster_small() -> Cluster:
    a = Site(name="a", nodes=(Node("a/n0", "a", cpu=8000, mem=16384),
                              Node("a/g0", "a", cpu=8000, mem=16384, gpus=2, gpu_model="T4")))
    b = Site(name="b", nodes=(Node("b/n0", "b", cpu=4000, mem=8192),))
    c = Site(name="c", nodes=(Node("c/n0", "c", cpu=16000, mem=32768),
                              Node("c/n1", "c", cpu=16000, mem=32768)))
    return Cluster(sites=(a, b, c), faults=Faults(max_attempts=3))


def cluster_big() -> Cluster:
    """A site of 18 nodes (best fit's numpy path), links that order the preference."""
    x = Site(name="x", nodes=tuple(Node(f"x/n{i}", "x", cpu=2000 + 1000 * (i % 3),
                                        mem=4096 * (1 + i % 2)) for i in range(18)))
    y = Site(name="y", nodes=(Node("y/g0", "y", cpu=16000, mem=65536, gpus=4, gpu_model="A100"),
                              Node("y/g1", "y", cpu=16000, mem=65536, gpus=2, gpu_model="T4"),
                              Node("y/n0", "y", cpu=4000, mem=8192)))
    z = Site(name="z", nodes=(Node("z/n0", "z", cpu=8000, mem=16384),))
    links = {frozenset(("x", "y")): Link(latency_ms=5.0),
             frozenset(("x", "z")): Link(latency_ms=50.0),
             frozenset(("y", "z")): Link(latency_ms=1.0)}
    return Cluster(sites=(x, y, z), links=links, faults=Faults(max_attempts=2))


def cluster_gpu() -> Cluster:
    """Five sites, gpus of three models shared and whole."""
    g = Site(name="g", nodes=tuple(Node(f"g/{i}", "g", cpu=8000, mem=32768, gpus=1 + i % 4,
                                        gpu_model=("T4", "A100")[i % 2]) for i in range(5)))
    h = Site(name="h", nodes=(Node("h/0", "h", cpu=4000, mem=8192, gpus=2, gpu_model="V100"),
                              Node("h/1", "h", cpu=4000, mem=8192)))
    k = Site(name="k", nodes=(Node("k/0", "k", cpu=32000, mem=65536),))
    w = Site(name="w", nodes=(Node("w/0", "w", cpu=2000, mem=2048),))
    v = Site(name="v", nodes=(Node("v/0", "v", cpu=6000, mem=8192, gpus=1, gpu_model="T4"),))
    return Cluster(sites=(g, h, k, w, v), faults=Faults(max_attempts=4))


CLUSTERS = {"small": cluster_small, "big": cluster_big, "gpu": cluster_gpu}

CONFIGS = [
    # cut: the chance of a checkpoint + restore after a batch; queries: read-only answers
    # compared between the warm replica and the restored one after every batch
    {"cluster": "small"},
    {"cluster": "small", "retain": 3},
    {"cluster": "small", "retain": 4, "quota": 2},
    {"cluster": "big", "retain": 2, "quota": 3},
    {"cluster": "big", "require_run": True},
    {"cluster": "small", "retain": 1, "quota": 1, "n": 7},
    {"cluster": "gpu", "retain": 3, "quota": 3, "cut": 0.3, "queries": 1},
    {"cluster": "small", "retain": 2, "cut": 0.7, "queries": 2},
]

SEEDS = (0,)
"""the seeds run by default (the suite); AGORA_DIFF_SEEDS=lo:hi runs more"""
BATCHES = 300


def make_state(cfg: dict) -> ScheduleState:
    return ScheduleState(CLUSTERS[cfg.get("cluster", "small")](), n_replicas=cfg.get("n", 4),
                         require_run=cfg.get("require_run", False),
                         retain_finished_jobs=cfg.get("retain", 0),
                         max_unfinished_jobs_per_site=cfg.get("quota", 0))


def op(**kind) -> bytes:
    return pb.Command(**kind).SerializeToString()


# ---- the command stream (read from the straight replica's state; the same bytes for all) ----

class Gen:
    def __init__(self, rng: random.Random, cfg: dict, st: ScheduleState) -> None:
        self.rng, self.cfg = rng, cfg
        self.sites = list(st.site_names)
        self.nodes = {s: [n.name for n in st.cluster.nodes if n.site == s] for s in self.sites}
        self.keys = [bytes(SigningKey(rng.randbytes(32)).verify_key) for _ in range(4)]
        self.n_ids = rng.choice([6, 12, 40])       # few ids: duplicates and resubmissions
        self.pending: list[tuple[str, bytes]] = []  # the rest of a burst of votes

    def demand(self) -> Demand:
        r = self.rng
        gpu = r.choice([0, 0, 0, 0, 300, 500, 1000, 2000])
        models = None
        if gpu and r.random() < 0.3:
            models = frozenset([r.choice(["T4", "A100", "V100"])])
        elif not gpu and r.random() < 0.05:
            models = frozenset(["T4"])
        cpu = r.choice([0, 250, 500, 1000, 1000, 3000, 7000, 12000, 40000])
        return Demand(cpu=cpu, mem=r.choice([0, 256, 512, 1024, 4096]), gpu=gpu,
                      gpu_models=models)

    def job(self, origin: str) -> Job:
        r = self.rng
        k = r.randrange(self.n_ids)
        style = r.random()
        jid = (f"{origin}:j{k}" if style < 0.6 else f"j{k}" if style < 0.9
               else f"{r.choice(self.sites)}:j{k}")          # maybe another site's namespace
        tasks = []
        for t in range(r.choice([1, 1, 2, 3, 4])):
            after = tuple(f"t{p}" for p in range(t) if r.random() < 0.5)
            run = TaskRun(argv=("true",)) if r.random() < 0.7 else None
            n = r.choice([1, 1, 2, 3, 5]) if r.random() < 0.9 else r.choice([12, 40])
            tasks.append(Task(f"t{t}", float(r.choice([1, 5, 10.5])), self.demand(),
                              instances=n, after=after, run=run))
        return Job(jid, float(r.choice([0, 0, 1.5, 7])), origin, tuple(tasks),
                   weight=r.choice([1.0, 1.0, 2.0, 0.5]))

    def submit(self, st) -> tuple[str, bytes]:
        r = self.rng
        if r.random() < 0.35:
            client, origins = "operator", self.sites
        else:
            s = r.choice(self.sites)
            client, origins = r.choice([f"site:{s}", f"site:{s}", f"site:{s}/1"]), \
                [s] * 9 + self.sites
        if r.random() < 0.03:
            client = r.choice(["replica:1", "auditor:x"])
        jobs = [self.job(r.choice(origins)) for _ in range(r.choice([1, 1, 1, 2, 3]))]
        return client, op(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(j) for j in jobs]))

    def site_round(self, st, bidding: bool) -> tuple[str, bytes]:
        r = self.rng
        site = r.choice(self.sites)
        si = st.site_index[site]
        client = f"site:{site}" if r.random() < 0.97 else f"site:{r.choice(self.sites)}"
        ends = []
        running = [(ts, i) for ts in st.ledger.tasks.values()
                   for i, (n, _) in ts.placements.items() if st.capacity.node_site[n] == si]
        r.shuffle(running)
        for ts, i in running[:r.choice([0, 1, 1, 2, 3, 6, 20])]:
            kind = r.choice([pb.END_COMPLETED] * 5 + [pb.END_FAILED] * 2 + [pb.END_LOST])
            run = ts.placed_at.get(i, 0) if r.random() < 0.5 else 0
            if r.random() < 0.05:
                run = 1 + r.randrange(5)                       # maybe a stale run
            s0 = r.choice([0.0, 1.0, 2.5])
            ends.append(pb.End(job_id=ts.job.job.id, task_id=ts.task.id, instance=i, kind=kind,
                               start_s=s0, end_s=s0 + r.choice([0.0, 3.0, 10.25]),
                               exit_code=0 if kind == pb.END_COMPLETED else 1,
                               reason=r.choice(["", "oom", "x" * 10]), run=run))
        if r.random() < 0.05 and st.ledger.tasks:                   # a bogus end
            ts = r.choice(list(st.ledger.tasks.values()))
            ends.append(pb.End(job_id=ts.job.job.id, task_id=ts.task.id,
                               instance=r.randrange(ts.task.instances + 1),
                               kind=r.choice([0, 1, 2, 3, 9]), start_s=1.0, end_s=2.0))
        if ends and r.random() < 0.05:
            ends.append(ends[0])                                     # an end twice
        nodes = []
        if r.random() < 0.15:
            for n in r.sample(self.nodes[site], min(len(self.nodes[site]), r.choice([1, 1, 2]))):
                nodes.append(pb.NodeState(node=n, up=r.random() < 0.55))
            if r.random() < 0.1:
                nodes.append(pb.NodeState(node=r.choice(self.nodes[r.choice(self.sites)]),
                                          up=False))
        bids = []
        if bidding:
            pool = sorted(st.ledger.pool.tasks(), key=lambda t: t.rank)
            if r.random() < 0.85:
                pool = [t for t in pool if st.capacity.static_sites(t.demand)[si]]
            for ts in r.sample(pool, min(len(pool), r.choice([0, 1, 2, 3, 5]))):
                n = (r.randint(1, min(2, max(1, ts.open))) if r.random() < 0.9
                     else r.choice([ts.open, ts.open + 1]))
                bids.append(pb.Bid(job_id=ts.job.job.id, task_id=ts.task.id, instances=n,
                                   price=r.choice([0, 1, 5, 9, 9, 100])))
            if r.random() < 0.05 and st.ledger.tasks:
                ts = r.choice(list(st.ledger.tasks.values()))
                bids.append(pb.Bid(job_id=ts.job.job.id, task_id=ts.task.id, instances=1,
                                   price=3))
            if bids and r.random() < 0.05:
                bids.append(bids[0])
        rnd = st.round + r.choice([0] * 14 + [-1, 1])
        seen = st.version if r.random() < 0.8 else r.choice([0, -1, st.version + 5])
        return client, op(site_round=pb.SiteRound(site=site, round=rnd, bidding=bidding,
                                                  ends=ends, nodes=nodes, bids=bids,
                                                  seen_version=seen))

    def vote(self, st) -> tuple[str, bytes]:
        r = self.rng
        rnd = st.round + r.choice([0, 0, 0, -1])
        voters = r.sample(range(4), r.choice([1, 2, 2, 3]))
        for v in voters[1:]:
            self.pending.append((f"replica:{v}", op(close_round=pb.CloseRound(round=rnd))))
        v = voters[0] if r.random() < 0.97 else 9
        return f"replica:{v}", op(close_round=pb.CloseRound(round=rnd))

    def lapse(self, st) -> tuple[str, bytes]:
        r = self.rng
        site = r.choice(self.sites)
        heard = st.sites[site].last_heard + r.choice([0, 0, 0, -1])
        client = f"replica:{r.randrange(4)}" if r.random() < 0.97 else f"site:{site}"
        if r.random() < 0.5:
            for v in r.sample(range(4), r.choice([1, 2])):
                self.pending.append((f"replica:{v}", op(site_lapsed=pb.SiteLapsed(
                    site=site, last_heard=heard))))
        return client, op(site_lapsed=pb.SiteLapsed(site=site, last_heard=heard,
                                                    withdraw=r.random() < 0.1))

    def cancel(self, st) -> tuple[str, bytes]:
        r = self.rng
        ids = list(st.ledger.jobs)
        jid = r.choice(ids) if ids and r.random() < 0.85 else f"j{r.randrange(self.n_ids)}"
        js = st.ledger.jobs.get(jid)
        if js is not None and r.random() < 0.6:
            client = f"site:{js.job.origin}"
        else:
            client = r.choice(["operator", "operator", f"site:{r.choice(self.sites)}",
                               "replica:0"])
        return client, op(cancel_job=pb.CancelJob(job_id=jid, reason=r.choice(["", "stop"])))

    def member(self, st) -> tuple[str, bytes]:
        r = self.rng
        site = r.choice(self.sites)
        client = "operator" if r.random() < 0.9 else f"site:{site}"
        if r.random() < 0.5:
            return client, op(admit_site=pb.AdmitSite(site=site, verify_key=r.choice(self.keys)))
        return client, op(remove_site=pb.RemoveSite(site=site, reason=r.choice(["", "bye"])))

    def query_msg(self, st) -> pb.Query:
        r = self.rng
        k = r.random()
        ids = list(st.ledger.jobs) or ["nope"]
        if k < 0.3:
            return pb.Query(ledger=pb.LedgerQuery())
        if k < 0.5:
            return pb.Query(job_status=pb.JobStatusQuery(job_id=r.choice(ids + ["nope"])))
        sel = r.choice(["all", "site", "job_id", "since_version", "task"])
        if sel == "all":
            q = pb.ScheduleQuery(all=True)
        elif sel == "site":
            q = pb.ScheduleQuery(site=r.choice(self.sites))
        elif sel == "job_id":
            q = pb.ScheduleQuery(job_id=r.choice(ids))
        elif sel == "task":
            q = pb.ScheduleQuery(task=pb.TaskRef(job_id=r.choice(ids), task_id="t0"))
        else:
            q = pb.ScheduleQuery(since_version=max(0, st.version - r.randrange(60)))
        return pb.Query(schedule=q)

    def reader(self) -> str:
        return self.rng.choice(["operator", "replica:2", "auditor:q"]
                               + [f"site:{s}" for s in self.sites])

    def command(self, st) -> tuple[str, bytes]:
        r = self.rng
        if self.pending:
            return self.pending.pop(0)
        k = r.random()
        if k < 0.14:
            return self.submit(st)
        if k < 0.55:
            return self.site_round(st, True)
        if k < 0.70:
            return self.site_round(st, False)
        if k < 0.80:
            return self.vote(st)
        if k < 0.86:
            return self.lapse(st)
        if k < 0.91:
            return self.cancel(st)
        if k < 0.935:
            return self.member(st)
        if k < 0.97:
            return self.reader(), op(query=self.query_msg(st))
        return r.choice(["operator", "site:a"]), r.choice([b"", b"\xff\x01", b"\x0a\x00",
                                                            op(close_round=pb.CloseRound())])


# ---- replicas ---------------------------------------------------------------------------------

