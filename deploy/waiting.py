"""Why a task's instances wait, as the committed schedule shows it (``agora jobs``; a probe:
a 2-cpu task sat "open" for 40 s with no word while a 1-cpu one held the only node it fit).

- *waiting*: the tasks it runs after that have not completed yet;
- *open*: whether any live node has room for one instance now, from the nodes' sizes less
  what the schedule runs on them -- none ("no live node has 2 cpu free now; the most free:
  dc-a/n0 with 1 cpu"), or some (it waits for a site's bid: rounds close as the sites that
  can take it decide). A hint from sums: a gpu share may still not fit one gpu's remainder.
"""

from __future__ import annotations

from agora.agents.domain import MILLI, Cluster, Demand


class NodeRoom:
    """Each node's free cpu (millicores), memory (MiB) and gpu (milli-gpus) under the running
    instances of a ``LedgerView``, and whether it is live (not down, its site not lapsed).
    ``known`` is False when the reader cannot see where every instance runs (a site's view
    hides other sites' placements): no capacity is claimed then."""

    def __init__(self, view, cluster: Cluster) -> None:
        from agora.agents.ledger_codec import FOREIGN_NODE

        nodes = cluster.nodes
        self.nodes = nodes
        self.free = [[n.cpu, n.mem, n.gpus * MILLI] for n in nodes]
        down = set(view.nodes_down)
        lapsed = {s.site for s in view.sites if s.lapsed or s.removed}
        self.live = [n.name not in down and n.site not in lapsed for n in nodes]
        self.known = True
        for rec in view.jobs:
            for t, tr in zip(rec.job.tasks, rec.tasks):
                r = t.demand.resources
                for p in tr.running:
                    if p.node == FOREIGN_NODE or not 0 <= p.node < len(nodes):
                        self.known = False
                        continue
                    f = self.free[p.node]
                    f[0] -= r.cpu_milli
                    f[1] -= r.mem_mib
                    f[2] -= r.gpu_milli

    def fits(self, i: int, d: Demand) -> bool:
        n, (cpu, mem, gpu) = self.nodes[i], self.free[i]
        if d.gpu and d.gpu_models is not None and n.gpu_model not in d.gpu_models:
            return False
        return self.live[i] and cpu >= d.cpu and mem >= d.mem and gpu >= d.gpu

    def why_open(self, d: Demand) -> str | None:
        if not self.known:
            return None
        room = [i for i in range(len(self.nodes)) if self.fits(i, d)]
        if room:
            return (f"room on {len(room)} live node(s) now: it waits for a site's bid (a "
                    f"round closes once the sites that can take it decided)")
        live = [i for i in range(len(self.nodes)) if self.live[i]]
        if not live:
            return "no live node: every node is down or its site lapsed"
        best = max(live, key=lambda i: (min(self.free[i][0] / max(d.cpu, 1),
                                            self.free[i][1] / max(d.mem, 1)),
                                        self.free[i][0] / max(d.cpu, 1)
                                        + self.free[i][1] / max(d.mem, 1), -i))
        cpu, mem, gpu = self.free[best]
        return (f"no live node has {_demand(d.cpu, d.mem, d.gpu)} free now; the most free: "
                f"{self.nodes[best].name} with {_demand(max(cpu, 0), max(mem, 0), max(gpu, 0))}"
                f" (it waits for running work to end)")


def _demand(cpu: int, mem: int, gpu: int) -> str:
    out = f"{cpu / MILLI:g} cpu, {mem} MiB"
    return out + (f", {gpu / MILLI:g} gpu" if gpu else "")


def why_waiting(after: tuple[str, ...], outcomes: dict[str, str]) -> str | None:
    """The tasks of ``after`` that have not completed (``outcomes``: task id -> outcome)."""
    left = [p for p in after if outcomes.get(p) != "completed"]
    return f"waits for task(s) {', '.join(left)} to complete" if left else None
