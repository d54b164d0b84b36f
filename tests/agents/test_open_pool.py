"""The open pool's lazy walks and the decision's early stop (``agents/open_pool.py``,
``Decision.fitting``): what lets a policy pay for the work it can start, not for a backlog of
thousands behind a full cluster (tetris took 12.8 s for one job of 10,000 tasks)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agora.agents.baselines import make_policy
from agora.agents.ledger import Ledger
from agora.agents.open_pool import job_ranks
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from tests.simkit import cluster, job, node, site, task, workload


def wide(jid: str, n: int, arrival: float = 0.0, cpus=(1, 2)):
    return job(jid, arrival, "a", *[task(f"t{i}", 5.0 + i % 3, cpus[i % len(cpus)])
                                    for i in range(n)])


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       starts=st.lists(st.integers(0, 200), max_size=60))
def test_scan_walks_the_open_tasks_in_fifo_order_while_they_close_and_jobs_are_kept(sizes,
                                                                                     starts):
    led = Ledger(max_attempts=1)
    entries = [led.admit(wide(f"j{k}", n), 0, 0.0) for k, n in enumerate(sizes)]
    tasks = [t for js in entries for t in js.tasks]
    for k in starts:                      # some tasks started (closed) before the walk
        t = tasks[k % len(tasks)]
        if t.open:
            led.start(t, 0, node=0)
    by_duration = led.pool.ordered("duration", lambda t: (t.duration,))
    seen = []
    for t in led.pool.ordered_scan("duration", lambda t: (t.duration,)):
        seen.append(t)
        if t.rank % 5 == 0:
            led.start(t, 0, node=0)
    assert seen == by_duration
    expected = led.pool.fifo()
    seen = []
    for t in led.pool.scan():
        seen.append(t)
        if t.rank % 3 == 0:               # closing while walking: the walk goes on
            led.start(t, 0, node=0)
    assert seen == expected
    assert {js.seq for js in led.pool.jobs()} == {t.job.seq for t in led.pool.fifo()}
    for js in entries:
        assert list(led.pool.scan(*job_ranks(js))) == [t for t in led.pool.fifo()
                                                       if t.job is js]


def test_fitting_stops_once_nothing_open_fits_without_walking_the_rest():
    """One 4-cpu node and 500 one-cpu tasks: after four starts nothing fits, and the walk
    stops there instead of looking at the 496 others."""
    cl = cluster(site("a", node("a", "n", 4)))
    sim = Simulator(cl, workload(wide("w", 500, cpus=(1,))), SimConfig(seed=0))
    sim.step_events()                     # the arrival
    ctx = sim.begin_decision()
    looked = []

    def walk():
        for t in ctx.pool.scan():
            looked.append(t)
            yield t
    placed = 0
    for t in ctx.fitting(walk()):
        placed += ctx.assign(t, 0, t.open)
    sim.end_decision()
    assert placed == 4 and not ctx.fits_any()
    assert len(looked) <= 5, len(looked)


def test_the_lazy_walks_give_the_same_schedules_as_the_full_ones():
    """Tetris and SRPT sort the open jobs by work left and walk them lazily; on two jobs
    whose work left crosses, the order is still job-level SRPT: the small job first."""
    cl = cluster(site("a", node("a", "a0", 4)), site("b", node("b", "b0", 4)))
    wl = workload(wide("big", 40), job("small", 1.0, "b", task("x", 3.0, 1)))
    for name in ("tetris", "srpt", "srpt-cap:2"):
        r = Simulator(cl, wl, SimConfig(seed=0)).run(make_policy(name))
        start = {a.task.job.job.id: a.start for a in r.attempts if a.task.task.id == "x"}
        assert start["small"] <= 6.0, (name, start)   # at the first end, ahead of big's rest


def test_a_nodes_running_attempts_iterate_in_the_order_they_started():
    """EASY backfilling breaks ties among equal end times in this order; as a set of objects
    it was memory-address order and the schedule changed from run to run."""
    cl = cluster(site("a", node("a", "n", 64)))
    sim = Simulator(cl, workload(wide("w", 64, cpus=(1,))), SimConfig(seed=0))
    sim.step_events()
    ctx = sim.begin_decision()
    for t in ctx.pool.fifo():
        ctx.assign(t, 0, t.open)
    sim.end_decision()
    running = list(sim.node_running[0])
    assert len(running) == 64
    assert [a.task.rank for a in running] == sorted(a.task.rank for a in running)


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["start", "complete", "fail"]),
                              st.integers(0, 500)), max_size=80))
def test_a_jobs_running_count_and_held_resources_follow_its_instances(ops):
    """What width-capping and DRF read in O(1) (``JobEntry.running``, ``held``) equals the
    sum over the job's tasks, whatever starts, ends and failures came before (restored from a
    record: ``test_ledger``)."""
    led = Ledger(max_attempts=3)
    entries = [led.admit(wide(f"j{k}", 6, cpus=(1, 2, 3)), 0, 0.0) for k in range(3)]
    tasks = [t for js in entries for t in js.tasks]
    for op, k in ops:
        t = tasks[k % len(tasks)]
        if op == "start" and t.open:
            led.start(t, t.open_indices(1)[0], node=0)
        elif op != "start" and t.placements:
            inst = sorted(t.placements)[0]
            if op == "complete":
                led.complete(t, inst, 1.0)
            else:
                led.fail(t, inst, 1.0)
    for js in entries:
        assert js.running == sum(t.running for t in js.tasks)
        assert js.held == [sum(t.running * t.demand.cpu for t in js.tasks),
                           sum(t.running * t.demand.mem for t in js.tasks),
                           sum(t.running * t.demand.gpu for t in js.tasks)]


_BIG = [(6, 2048, 0), (6, 1024, 0), (5, 2048, 0), (5, 1024, 0)]   # only n0 holds them
_SHAPE = st.tuples(st.integers(0, 6), st.sampled_from([0, 512, 1024, 2048]),
                   st.sampled_from([0, 0, 0, 500, 1000])).map(
    lambda s: (min(s[0], 2), s[1], s[2]) if s[2] else s)   # every shape fits an empty node


@settings(max_examples=200, deadline=None)
@given(shapes=st.lists(_SHAPE, min_size=1, max_size=10),
       used=st.lists(st.integers(0, 6), min_size=3, max_size=3),
       down=st.lists(st.booleans(), min_size=3, max_size=3))
@example(shapes=_BIG + [(5, 0, 0), (1, 0, 0)], used=[0, 0, 0], down=[True, False, False])
@example(shapes=_BIG + [(2, 2048, 0), (4, 1024, 0)], used=[4, 0, 1], down=[False] * 3)
def test_fits_any_checks_every_shape_at_once_as_one_by_one_would(shapes, used, down):
    """``fits_any`` answers for the cpu+memory shapes past its first few in one numpy check:
    it agrees with a fit_mask per open shape, whatever the free capacity, dead nodes and gpu
    shapes, and so does what it remembers per shape."""
    cl = cluster(site("a", node("a", "n0", 6, mem=2048), node("a", "n1", 4, mem=1024)),
                 site("b", node("b", "g0", 2, mem=4096, gpus=1, model="V100")))
    tasks = [task(f"t{i}", 5.0, cpu, mem=mem, gpu=gpu / 1000)
             for i, (cpu, mem, gpu) in enumerate(shapes)]
    sim = Simulator(cl, workload(job("j", 0.0, "a", *tasks)), SimConfig(seed=0))
    sim.step_events()
    ctx = sim.begin_decision()
    assert len(ctx.pool.fifo()) == len(tasks)    # admitted: every shape fits an empty node
    cap = ctx.cap
    cap.free_cpu[:] = [max(0, c - u * 1000) for c, u in zip(cap.free_cpu.tolist(), used)]
    cap.alive[:] = [not d for d in down]
    expected = any(cap.fit_mask(d).any() for d in ctx.pool.shapes())
    assert ctx.fits_any() == expected
    assert ctx.fits_any() == expected            # the remembered answer too
    for t in ctx.pool.fifo():                    # and what it remembered per shape
        assert (ctx.fit_nodes(t) is not None) == bool(cap.fit_mask(t.demand).any())
    sim.end_decision()
