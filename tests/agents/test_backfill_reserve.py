"""EASY backfilling's reservation (agents/baselines/backfill.py ``reserve``) takes each node's
running instances lazily from a heap instead of sorting them all: it must give exactly the
reservation of the plain version -- the node, the shadow time and what is left there --
at every decision of a run (the plain version is written out here as the reference)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agora.agents.baselines.backfill import EasyBackfill, Reservation, _fits, reserve
from agora.agents.sim.capacity import take_gpus
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.workloads.synthetic import generate
from tests.simkit import cluster, node, site


def reference(ctx, head) -> Reservation | None:
    """The reservation as first written: every running instance of a node sorted by end."""
    import numpy as np

    cap, d = ctx.cap, head.demand
    best = None
    for n in np.flatnonzero(cap.static_mask(d) & cap.alive):
        cpu, mem = int(cap.free_cpu[n]), int(cap.free_mem[n])
        gpu = list(cap.gpu_free[n])
        ends = sorted(ctx.sim.node_running[n],
                      key=lambda a: max(a.start + a.transfer + a.task.duration, ctx.now))
        t = ctx.now
        for a in ends:
            if _fits(d, cpu, mem, gpu) or (best is not None and t >= best.shadow):
                break
            t = max(a.start + a.transfer + a.task.duration, ctx.now)
            cpu, mem = cpu + a.task.demand.cpu, mem + a.task.demand.mem
            for i, g in a.slots:
                gpu[i] += g
        if not _fits(d, cpu, mem, gpu) or (best is not None and t >= best.shadow):
            continue
        take_gpus(gpu, d)
        best = Reservation(int(n), t, cpu - d.cpu, mem - d.mem, gpu)
    return best


def as_tuple(r: Reservation | None):
    return None if r is None else (r.node, r.shadow, r.cpu, r.mem, list(r.gpu))


class Checked(EasyBackfill):
    """EASY, checking at each decision that the reservation of every open task equals the
    reference's."""

    compared = 0

    def schedule(self, ctx) -> None:
        for t in list(ctx.pool.scan())[:5]:
            assert as_tuple(reserve(ctx, t)) == as_tuple(reference(ctx, t))
            Checked.compared += 1
        super().schedule(ctx)


CLUSTER = cluster(site("a", node("a", "n0", 8, mem=8192), node("a", "n1", 4, mem=4096),
                       node("a", "g0", 8, mem=16384, gpus=2, model="V100")),
                  site("b", node("b", "n0", 16, mem=32768), node("b", "n1", 2, mem=2048)))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), load=st.sampled_from([0.9, 1.3, 2.0]))
def test_the_lazy_reservation_equals_the_sorted_one_at_every_decision(seed, load):
    wl = generate(CLUSTER, seed=seed, jobs=25, load=load)
    before = Checked.compared
    Simulator(CLUSTER, wl, SimConfig(seed=seed)).run(Checked())
    assert Checked.compared > before
