"""Helpers of the replicated schedule's tests (test_schedule_*.py; the cancel, round-keeper,
parsed-jobs and membership tests use them too): a three-site cluster, jobs, commands as the
bytes a replica executes, ``Run`` (a ScheduleState and its sequence numbers), a seeded mix of
valid and invalid commands, ``allocate``, and ``_check_never_raises`` over a loaded state."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, settings
from nacl.signing import SigningKey

from agora.agents.domain import Cluster, Demand, Faults, Job, Node, Site, Task
from agora.coordinator.schedule_state import ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def cluster() -> Cluster:
    a = Site(name="a", nodes=(Node("a/n0", "a", cpu=8000, mem=16384),
                              Node("a/g0", "a", cpu=8000, mem=16384, gpus=2, gpu_model="T4")))
    b = Site(name="b", nodes=(Node("b/n0", "b", cpu=4000, mem=8192),))
    c = Site(name="c", nodes=(Node("c/n0", "c", cpu=16000, mem=32768),
                              Node("c/n1", "c", cpu=16000, mem=32768)))
    return Cluster(sites=(a, b, c), faults=Faults(max_attempts=3))


def job(jid: str, origin: str = "a", weight: float = 1.0, *, n: int = 4, cpu: int = 1000,
        dag: bool = True, gpu: int = 0) -> Job:
    first = Task("map", 10.0, Demand(cpu, 1024, gpu), instances=n)
    if not dag:
        return Job(jid, 0.0, origin, (first,), weight=weight)
    return Job(jid, 0.0, origin, (first, Task("reduce", 5.0, Demand(500, 512), instances=2,
                                               after=("map",))), weight=weight)


def op(**kind) -> bytes:
    return pb.Command(**kind).SerializeToString()


def submit(*jobs: Job) -> bytes:
    return op(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(j) for j in jobs]))


def end(j: str, t: str, i: int, kind: str = "completed", reason: str = "",
        run: int = 0) -> pb.End:
    k = {"completed": pb.END_COMPLETED, "failed": pb.END_FAILED, "lost": pb.END_LOST}[kind]
    return pb.End(job_id=j, task_id=t, instance=i, kind=k, start_s=1.0, end_s=11.0,
                  exit_code=0 if kind == "completed" else 1, reason=reason, run=run)


def decide(site: str, rnd: int, *items: tuple[str, str, int, int], ends=(),
           nodes=()) -> bytes:
    return op(site_round=pb.SiteRound(
        site=site, round=rnd, bidding=True, ends=list(ends), nodes=list(nodes),
        bids=[pb.Bid(job_id=j, task_id=t, instances=n, price=p) for j, t, n, p in items]))


def report(site: str, *ends: pb.End, nodes=()) -> bytes:
    return op(site_round=pb.SiteRound(site=site, ends=list(ends), nodes=list(nodes)))


def vote(rnd: int) -> bytes:
    return op(close_round=pb.CloseRound(round=rnd))


def lapse(site: str, last_heard: int) -> bytes:
    return op(site_lapsed=pb.SiteLapsed(site=site, last_heard=last_heard))


class Run:
    """A state and its sequence numbers: ``run("site:a", op)`` -> Result; the updates it
    published are in ``updates``."""

    def __init__(self) -> None:
        self.state = ScheduleState(cluster(), n_replicas=4)
        self.seq = 0
        self.updates: list[pb.ScheduleUpdate] = []
        self.state.listeners.append(self.updates.append)

    def __call__(self, client: str, data: bytes, *, same_seq: bool = False) -> pb.Result:
        self.seq += 0 if same_seq else 1
        out = pb.Result.FromString(self.state.execute(client, data, self.seq))
        self.state.check_invariants()
        return out

    def running(self, j: str, t: str) -> list[int]:
        return sorted(self.state.ledger.tasks[(j, t)].placements)


def script(rng: random.Random, steps: int) -> list[tuple[str, object]]:
    """A seeded mix of valid and invalid commands over three sites and four replicas: each a
    (client, make) where ``make(state)`` gives the bytes (decisions and votes mostly for the
    state's current round, ends mostly for instances running where they are reported)."""
    out = [("site:a", lambda st: submit(job("j0"), job("j1", weight=2.0))),
           ("site:c", lambda st: submit(job("j2", "c", n=6, dag=False)))]
    tasks = [("j0", "map"), ("j0", "reduce"), ("j1", "map"), ("j1", "reduce"), ("j2", "map")]
    for _ in range(steps):
        k = rng.random()
        site = rng.choice("abc")
        d = rng.choice([0, 0, 0, -1, 1])
        if k < 0.45:
            items = [(*rng.choice(tasks), rng.randint(1, 3), rng.randint(0, 9))
                     for _ in range(rng.randint(0, 3))]
            out.append((f"site:{site}",
                         lambda st, site=site, d=d, items=items: decide(site, st.round + d,
                                                                        *items)))
        elif k < 0.55:
            out.append((f"replica:{rng.randint(0, 3)}", lambda st, d=d: vote(st.round + d)))
        elif k < 0.6:
            out.append((f"replica:{rng.randint(0, 3)}",
                        lambda st, site=site, d=d: lapse(site, st.sites[site].last_heard + d)))
        elif k < 0.62:                 # membership: admissions, rotations, removals
            key = bytes(SigningKey(rng.randbytes(32)).verify_key)
            cmd = (op(admit_site=pb.AdmitSite(site=site, verify_key=key)) if k < 0.615
                   else op(remove_site=pb.RemoveSite(site=site)))
            out.append((rng.choice(["operator", "operator", f"site:{site}"]),
                        lambda st, cmd=cmd: cmd))
        else:
            kind = rng.choice(["completed", "completed", "failed", "lost"])
            pick = rng.random()
            out.append((f"site:{site}", lambda st, site=site, kind=kind, pick=pick:
                        report(site, *_some_end(st, site, kind, pick))))
    return out


def _some_end(st: ScheduleState, site: str, kind: str, pick: float) -> list[pb.End]:
    here = [(ts.key, i) for ts in st.ledger.tasks.values() for i, (n, _) in
            ts.placements.items() if st.cluster.nodes[n].site == site]
    if not here or pick > 0.9:
        return [end("j0", "map", int(pick * 6), kind)]            # most likely refused
    (j, t), i = here[int(pick * len(here)) % len(here)]
    return [end(j, t, i, kind)]


def allocate(r: Run, jid: str, site: str, n: int, rnd: int = 0) -> None:
    r(f"site:{site}", decide(site, rnd, (jid, "map", n, 1)))
    for s in "abc":
        if r.state.round == rnd:
            r(f"replica:{'abc'.index(s)}", vote(rnd))


# ---- a loaded state: no bytes may raise in it or change it ----

def _loaded() -> Run:
    r = Run()
    for c, mk in script(random.Random(11), 80):
        r(c, mk(r.state))
    return r


LOADED = _loaded()
CLIENTS = ["site:a", "site:b", "operator", "", "replica:0", "replica:3"]


def _check_never_raises(data: bytes, client: str) -> None:
    r = LOADED
    before, snap = r.state.schedule_bytes(), r.state.snapshot()
    try:
        out = pb.Result.FromString(r.state.execute(client, data, 10_000))
        q = pb.QueryResult.FromString(r.state.query(client, data))
        r.state.check_invariants()
        if out.kind == "" or (out.accepted == 0 and out.kind in ("submit_jobs", "cancel_job")):
            assert r.state.schedule_bytes() == before
            assert out.rejections and out.rejections[0].field.startswith("command")
        assert q.version >= 0
    finally:
        r.state.restore(snap)


def close(r: Run, rnd: int) -> None:
    """The round keeper's votes (f+1 replicas) close round ``rnd`` if the decisions did not."""
    if r.state.round == rnd and r.state.armed:
        for i in range(2):
            r(f"replica:{i}", vote(rnd))


def site_of(r: Run, ts, inst: int = 0) -> str:
    """The site where instance ``inst`` of ``ts`` runs."""
    return r.state.node_site_names[ts.placements[inst][0]]


def race_a_loser(r: Run, ts, honest: str, loser: str, quiet: str,
                 rounds: int = 30) -> dict[str, int]:
    """Up to ``rounds`` rounds of a one-instance task ``ts`` (task ``map``): ``honest`` bids
    5 and completes what it wins, ``loser`` bids the top price and reports every run it wins
    lost, ``quiet`` decides with no bid (the three decide in name order); ends once the
    honest site completed it. Rounds each site won."""
    from agora.agents.market import PRICE_MAX

    jid = ts.job.job.id
    bids = {honest: ((jid, "map", 1, 5),), loser: ((jid, "map", 1, PRICE_MAX),), quiet: ()}
    won = {honest: 0, loser: 0}
    for _ in range(rounds):
        if ts.running:
            where = site_of(r, ts)
            kind = "lost" if where == loser else "completed"
            r(f"site:{where}", report(where, end(jid, "map", 0, kind, run=ts.placed_at[0])))
            if kind == "completed":
                break
        rnd = r.state.round
        for site in sorted(bids):
            r(f"site:{site}", decide(site, rnd, *bids[site]))
        close(r, rnd)
        if ts.running:
            won[site_of(r, ts)] += 1
    return won
