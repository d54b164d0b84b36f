"""The CP-SAT reference schedule's hint (``agents/bounds_cpsat.py``): a feasible schedule by
serial list scheduling, so that even a short time limit returns a schedule."""

from __future__ import annotations

from agora.agents.domain import MILLI, Node, Task, topological_order


def serial_schedule(insts: list, release: dict[str, int],
                    nodes: tuple[Node, ...]) -> list[tuple[int, int, tuple[int, ...]]]:
    """A feasible schedule by serial list scheduling, the solver's hint: instances in order
    of their earliest possible start (release + longest chain of parents), each at the
    earliest time, then node, where it fits beside those already placed. Returns per
    instance (node index, start in units, gpu indices). ``insts``: the model's instances
    (``bounds_cpsat._Inst``: job, task, k, lengths by node index, gpu slots)."""
    minlen = {(i.job.id, i.task.id): min(i.lengths.values()) for i in insts}
    head, topo = {}, {}
    for job in {id(i.job): i.job for i in insts}.values():
        for pos, t in enumerate(topological_order(job)):
            topo[(job.id, t.id)] = pos
            head[(job.id, t.id)] = max((head[(job.id, p)] + minlen.get((job.id, p), 0)
                                        for p in t.after), default=0)

    def priority(i: int) -> tuple:
        key = (insts[i].job.id, insts[i].task.id)
        return release[key[0]] + head[key], key[0], topo[key], insts[i].k

    placed: list[list[tuple[int, int, int, int, dict[int, int]]]] = [[] for _ in nodes]
    task_end: dict[tuple[str, str], int] = {}

    def gpus_if_fits(n: int, t: int, ln: int, task: Task, slots: int) -> tuple | None:
        """gpu indices if ``task`` fits on node n during [t, t + ln), else None."""
        d, node = task.demand, nodes[n]
        over = [p for p in placed[n] if p[0] < t + ln and p[1] > t] if ln else []
        peak = [0] * node.gpus
        for pt in [t] + [p[0] for p in over if p[0] > t]:  # load peaks at a start
            live = [p for p in over if p[0] <= pt < p[1]]
            if (sum(p[2] for p in live) + d.cpu > node.cpu
                    or sum(p[3] for p in live) + d.mem > node.mem):
                return None
            for g in range(node.gpus):
                peak[g] = max(peak[g], sum(p[4].get(g, 0) for p in live))
        if not slots:
            return ()
        if d.gpu < MILLI:  # best fit: the fullest gpu that still takes the share
            ok = [g for g in range(node.gpus) if peak[g] + d.gpu <= MILLI]
            return (max(ok, key=lambda g: peak[g]),) if ok else None
        free = [g for g in range(node.gpus) if peak[g] == 0]
        return tuple(free[:slots]) if len(free) >= slots else None

    out: list = [None] * len(insts)
    for i in sorted(range(len(insts)), key=priority):  # parents sort before children
        job, task, _, lengths, slots = insts[i]
        ready = max([release[job.id]] + [task_end.get((job.id, p), 0) for p in task.after])
        best = None
        for n, ln in lengths.items():
            # The last candidate always fits: the node is empty from then on.
            for t in sorted({ready} | {p[1] for p in placed[n] if p[1] > ready}):
                g = gpus_if_fits(n, t, ln, task, slots)
                if g is not None:
                    if best is None or t + ln < best[1] + lengths[best[0]]:
                        best = (n, t, g)
                    break
        n, t, g = best
        use = {x: min(task.demand.gpu, MILLI) for x in g}
        placed[n].append((t, t + lengths[n], task.demand.cpu, task.demand.mem, use))
        task_end[(job.id, task.id)] = max(task_end.get((job.id, task.id), 0), t + lengths[n])
        out[i] = best
    return out
