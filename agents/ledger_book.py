"""The market's book over the one ledger (``agents.ledger``) and the nodes' free capacity:
what ``market.clear`` asks while it clears a round -- is a task open, its priority, a site's
rank for it -- and where an award's instances go (``place``: the site's best-fit node,
``Capacity.best_fit``'s rule). The simulation engine's in-memory clearinghouse and every
coordinator replica clear through it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Collection

import numpy as np

from agora.agents.sim import capacity as capacity_rules
from agora.agents.sim.capacity import best_fit_in

if TYPE_CHECKING:
    from agora.agents.ledger import Ledger, TaskEntry
    from agora.agents.sim.capacity import Capacity

def failed_here(task: TaskEntry, site: int, cap: Capacity, live: list[bool] | None) -> str:
    """Why ``site`` takes ``task`` now only after the sites where it did not fail ("" if it
    stands with them): an instance of the task failed (or was lost) on a node of the site,
    and a live site (``live``; None: every site) where none failed has an alive node that
    could hold it when empty. A review: one site that outbid the others and reported every
    attempt failed gave another site's job up; a flaky site took every retry. Where no other
    site could hold it, the site stands with the others. Asked when a site's bids are
    admitted (``market.admit_offers``: such a bid is charged only what the site's other
    offers left) and again as the round clears (``LedgerBook.deferred``: it is cleared after
    the others' bids, for what they left)."""
    if not task.failed_nodes:
        return ""
    failed = failed_sites(task, cap)
    if site not in failed:
        return ""
    if not _elsewhere(cap.static_mask(task.demand) & cap.alive, failed, cap, live).any():
        return ""
    return ("failed here: an instance of this task failed (or was lost) at this site; it "
            "goes to a site where none did, while one can hold it")


def room_elsewhere(task: TaskEntry, cap: Capacity, live: list[bool] | None) -> bool:
    """Whether a live site where no instance of ``task`` failed has an alive node with room
    for an instance now: a site that could take it now and did not bid for it (or bid and
    was served) -- what lets a marked site have it (``LedgerBook.held``)."""
    return bool(_elsewhere(cap.fit_mask(task.demand), failed_sites(task, cap), cap,
                           live).any())


def failed_sites(task: TaskEntry, cap: Capacity) -> set[int]:
    """The sites of the nodes where an instance of ``task`` failed or was lost."""
    return {int(cap.node_site[n]) for n in task.failed_nodes}


def _elsewhere(nodes: np.ndarray, failed: set[int], cap: Capacity,
               live: list[bool] | None) -> np.ndarray:
    """``nodes`` (a fresh per-node mask) with the nodes of the ``failed`` sites and of the
    sites that are not live cleared."""
    for s in range(cap.n_sites):
        if s in failed or (live is not None and not live[s]):
            nodes[cap.site_slice[s]] = False
    return nodes


class LedgerBook:
    """The market's view of the one ledger (``agents.ledger``) and the nodes' free capacity:
    the book of the simulation engine's in-memory clearinghouse and of every coordinator
    replica alike. Tasks are ``TaskEntry`` objects; priority = (-job weight, FIFO rank);
    rank = the origin's preference for the site; place = the lowest open instances, each on
    the site's best-fit node (``Capacity.best_fit``), recorded in ``placed`` as (task,
    instance, node) in placement order. ``on_place(task, instance, node, slots)`` is told of
    each (the simulator starts the run there)."""

    def __init__(self, ledger: Ledger, capacity: Capacity, pref: np.ndarray, *,
                 on_place: Callable | None = None, live: list[bool] | None = None,
                 reopened: Collection = ()) -> None:
        """``live``: per site, whether it is live (None: every site) -- a lapsed site does
        not count as somewhere else a task could go (``deferred``). ``reopened``: keys of
        the tasks a failed or lost run reopened in the round being cleared (``held``)."""
        self.ledger = ledger
        self.live = live
        self.reopened = reopened
        self.held_back = 0
        """deferred bids ``held`` kept waiting (the round after must be armed for them)"""
        self.capacity = capacity
        self.pref = pref
        self.n_sites = capacity.n_sites
        self.on_place = on_place
        self.placed: list[tuple[TaskEntry, int, int]] = []
        self._views: dict[int, list] = {}
        self._last_fit: dict[int, tuple[int, int, int]] = {}
        """site -> (cpu, mem, node in the site) of the book's last placement there"""
        self._seen = capacity.version
        self._pref_rows: list[list[int]] | None = None

    def open_instances(self, task: TaskEntry) -> int:
        return task.open if task in self.ledger.pool else 0

    def priority(self, task: TaskEntry) -> tuple:
        return (-task.job.job.weight, task.rank)

    def rank(self, task: TaskEntry, site: int) -> int:
        rows = self._pref_rows
        if rows is None:                      # a list: numpy's per-element cost is higher
            rows = self._pref_rows = self.pref.tolist()
        return rows[task.job.origin][site]

    def deferred(self, task: TaskEntry, site: int) -> str:
        """``failed_here`` over this book's capacity and live sites: the site's bid is
        cleared after the bids that are not deferred, for what they left
        (``market.clear``). Never for the job's origin (its own job on its own nodes, at its
        own price: ``market.admit_offers``)."""
        if site == task.job.origin or not task.failed_nodes:
            return ""
        return failed_here(task, site, self.capacity, self.live)

    def turn(self, task: TaskEntry, site: int) -> int:
        """The order of the marked sites' bids for ``task`` (``marked``; lowest first): they
        take turns, not the price, the turn passing on once per clearing that served one
        of them (``passed``, ``TaskEntry.turns``), so each marked site that bids is first at
        least once in every ``n_sites`` such clearings. Reviews: a marked site that outbid
        the others and reported every run it won lost (no attempt spent) kept an honestly
        failed site, the one that would run it, from it for good -- also where only marked
        sites could hold it (nothing deferred); and a turn that passed with every stopped
        run came back to a site that stopped ``n_sites`` runs at once."""
        return (site - task.turns) % self.capacity.n_sites

    def marked(self, task: TaskEntry, site: int) -> bool:
        """Whether ``site``'s bid for ``task`` takes its turn (``turn``) among the marked
        sites' bids, deferred or not: a run of it stopped at the site (never the origin)."""
        return (site != task.job.origin and bool(task.failed_nodes)
                and site in failed_sites(task, self.capacity))

    def passed(self, task: TaskEntry) -> None:
        """A marked site's bid for ``task`` was served in this clearing: the turn passes on
        (once per clearing, however many runs stopped or were placed)."""
        self.ledger.pass_turn(task)

    def held(self, task: TaskEntry) -> str:
        """Why deferred bids for ``task`` wait ("" if they do not): a stop reopened it in
        this very round, so sites that decided before it reopened could not bid for it (the
        next round is for them: ``held_back``); or no site where it did not fail has room
        for it now, so none of them could bid (they are busy, not unwilling: it waits for
        room there, ``room_elsewhere``). A review of the deferral: a site that won an
        instance waited until the others had decided, reported it lost and bid for it
        again, alone in the round -- and won it every round, for good."""
        if task.key in self.reopened:
            self.held_back += 1
            return ("it reopened in this round: the sites where it did not fail bid for it "
                    "first, in the next round")
        if not room_elsewhere(task, self.capacity, self.live):
            # A review: the sites where it did not fail were only busy (full for now, so
            # none could bid), and a marked site won it in every round that did not hold it
            # and reported every run failed: it spent every attempt of another site's job,
            # which had waited for them before the deferral. It waits for room there (an
            # end or a node back up arms the next round), not for a round of its own.
            return ("no site where it did not fail has room for it now: it waits for one "
                    "(it goes here only when one that could take it now did not)")
        return ""

    def place(self, task: TaskEntry, site: int, n: int) -> int:
        """Instance by instance, each on the site's best-fit node -- computed once per node
        used, not per instance: for a demand without gpus the node best fit chose stays
        the best fit for the next instance of the same demand as long as it has room (its
        score only drops, the others' do not change, ties go to the lower index), so it
        takes as many as fit before best fit is asked again -- and, while nothing else
        changed at the site since, for the next bid of the same demand too. Gpu demands
        change the devices' shares and are placed one by one (``Capacity.best_fit``)."""
        if task.demand.gpu:
            return self._place_gpu(task, site, n)
        fc, fm, alive, inv_c, inv_m, has_gpu, base = self._view(site)
        cap, ledger, placed, on_place = self.capacity, self.ledger, self.placed, self.on_place
        free_cpu, free_mem, start = cap.free_cpu, cap.free_mem, ledger.start
        demand = task.demand
        cpu, mem = demand.cpu, demand.mem
        insts = task.open_indices(n)
        got, want = 0, len(insts)
        last = self._last_fit.get(site)
        while got < want:
            if last is not None and last[0] == cpu and last[1] == mem \
                    and fc[last[2]] >= cpu and fm[last[2]] >= mem:
                best = last[2]                # still the best fit (see above)
            elif len(fc) > capacity_rules.SMALL_SITE:  # numpy's search (the same rule)
                found = cap.best_fit(demand, site)
                if found is None:
                    break
                best = found - base
            else:
                best = best_fit_in(fc, fm, alive, inv_c, inv_m, has_gpu, cpu, mem)
                if best < 0:
                    break
            k = want - got
            if cpu > 0:
                k = min(k, fc[best] // cpu)
            if mem > 0:
                k = min(k, fm[best] // mem)
            node = base + best
            for inst in insts[got:got + k]:
                fc[best] -= cpu
                fm[best] -= mem
                free_cpu[node] = fc[best]     # the capacity itself, as Capacity.place does
                free_mem[node] = fm[best]
                cap.version += 1
                self._seen = cap.version
                start(task, inst, node, ())
                placed.append((task, inst, node))
                if on_place is not None:
                    on_place(task, inst, node, ())
                    if cap.version != self._seen:  # the callback changed the capacity
                        fc, fm, alive, inv_c, inv_m, has_gpu, base = self._view(site)
            got += k
            last = self._last_fit[site] = (cpu, mem, best)
        return got

    def _place_gpu(self, task: TaskEntry, site: int, n: int) -> int:
        cap, demand, ledger, placed, on_place = (self.capacity, task.demand, self.ledger,
                                                 self.placed, self.on_place)
        got = 0
        for inst in task.open_indices(n):
            node = cap.best_fit(demand, site)
            if node is None:
                break
            slots = cap.place(node, demand)
            ledger.start(task, inst, node, slots)
            placed.append((task, inst, node))
            if on_place is not None:
                on_place(task, inst, node, slots)
            got += 1                          # (cap.place's version makes the views again)
        return got

    def _view(self, site: int) -> list:
        """The site's free cpu and memory and what best fit reads, as Python lists (numpy's
        per-element cost is most of the time on a site's few nodes), kept equal to the
        capacity by ``place``; made again when the capacity changed by other hands."""
        cap = self.capacity
        if cap.version != self._seen:
            self._views.clear()
            self._last_fit.clear()
            self._seen = cap.version
        view = self._views.get(site)
        if view is None:
            sl = cap.site_slice[site]
            view = self._views[site] = [*cap.plain_lists(sl), sl.start]
        return view
