"""The market: bids from the site agents cleared into allocations by one deterministic rule.

This module is the bottom and middle layers of a scheduling round (ARCHITECTURE.md, "One
scheduling round"). The same ``clear`` runs in the simulator and in every coordinator replica
(both through ``ledger_book.LedgerBook``), so it must be a pure function of its inputs: it
never reads a clock, never draws a random number, and never depends on the order the bids
arrived in or on dict/set iteration order.

**A bid** is ``(site, task, instances, price)``: site ``site`` offers to run up to
``instances`` instances of open task ``task`` now, and ``price`` (an integer in
``[0, PRICE_MAX]``; agents quantise their scores with ``price_of``) says how much it wants
them. Integer prices keep the rule exact on every machine.

**Validation** (each rejected bid is returned with its reason; nothing is silently dropped):
``site`` must be a site index of the book, ``instances >= 1``, ``price`` in range, the task
must be open now (known, ready: its dependencies done, with instances not yet started), and a
site may bid once per task per round (a second bid by the same site for the same task is a
*duplicate claim*; the one that sorts first below is kept).

**Clearing** (bottom layer): the valid bids are sorted by the key

    (-price, book.priority(task), book.rank(task, site), site, task order, -instances)

i.e. the highest price first; among equal prices the more urgent task (the book's priority:
heavier job weight, then earlier arrival and DAG position); among bids for the same task at
the same price, the site the job's origin prefers (the origin itself, then lower link
latency, then lower site index); then the lower site index. In that order each bid is given
``min(instances, still open)`` instances, placed one by one by ``book.place`` (which is
where capacity, gpu models and the site's node choice live) until one does not fit.

**Deferred bids** (a book's optional ``deferred``): a bid of a site where an instance of the
task failed or was lost, while a live site where none did could hold it
(``ledger_book.failed_here``), is cleared after every bid that is not deferred, for the
instances they left: such a site never gets the task ahead of a site where it did not fail,
and is never kept from it for good (a review: a live site that never bid for it kept it
pending for good). So is the bid of any site the book calls ``marked`` for the task (where
it failed; where only such sites could hold it, nothing is deferred). These bids go in the
same order, except that a task's own go in the book's ``turn`` order, next to the first of
them (``LedgerBook``: the marked sites take turns, not the price, the turn passing on once
per clearing that served one of them -- ``passed``; reviews: a marked site that reported
every run it won lost kept an honest marked site from it for good). A site's own deferred
bids for two tasks may so come in another order than its prices': the turns of one task and
the prices of another can form a cycle, and the turns win (a review; ``admit_offers``
already keeps a site's offers within its free room). A book's ``held`` may keep deferred
bids for a task waiting: one round (the coordinator: the round in which a stop reopened it,
so the other sites decide once seeing it open before it can go back where it failed), or
while none of the sites where it did not fail has room for it now (``LedgerBook``: they are
busy, not unwilling, and a marked site that won it in every round spent every attempt of
another site's job: a review).

**Mediation** (middle layer) is what ``book.place`` enforces for every award before it is
made: the site has a node with room for the instance now (no site is ever over-allocated),
the gpu model is allowed, the task's dependencies are done (only open tasks are biddable),
and no instance is claimed twice (an instance is open until it is placed once). The sort key
is the priority arbitration between competing claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable, Iterable, NamedTuple, Protocol, Sequence

import numpy as np

from agora.agents.ledger_book import failed_here

if TYPE_CHECKING:
    from agora.agents.domain import Cluster
    from agora.agents.ledger import Ledger, TaskEntry
    from agora.agents.sim.capacity import Capacity

PRICE_MAX = 2**31 - 1
PRICE_SCALE = 2**20
"""``price_of(score)`` = round(score · PRICE_SCALE), clipped to [0, PRICE_MAX]"""


def price_of(score: float) -> int:
    """The integer price of a real-valued score (scores in [0, 2048) keep 20 bits below the
    point; larger are clipped). Non-finite scores are refused."""
    if not np.isfinite(score):
        raise ValueError(f"bid score must be finite, got {score!r}")
    return int(min(max(round(score * PRICE_SCALE), 0), PRICE_MAX))


class Bid(NamedTuple):
    """(immutable; a NamedTuple, cheap to make: a coordinator replica makes one per bid)"""

    site: int
    task: Hashable
    instances: int = 1
    price: int = 0


class Award(NamedTuple):
    """(immutable; a NamedTuple, cheap to make: one per award of a round)"""

    site: int
    task: Hashable
    instances: int
    price: int


@dataclass
class Clearing:
    awards: list[Award]
    rejected: list[tuple[Bid, str]]
    """(bid, reason) for every bid that was invalid or got nothing"""

    @property
    def placed(self) -> int:
        return sum(a.instances for a in self.awards)


class Book(Protocol):
    """What the clearing needs to know about the open work and the sites."""

    n_sites: int

    def open_instances(self, task: Hashable) -> int:
        """Instances of ``task`` that may be placed now (0 if unknown, waiting on parents or
        finished)."""

    def priority(self, task: Hashable) -> tuple:
        """Arbitration order between tasks; smaller first. Must be a total order over open
        tasks, identical on every replica."""

    def rank(self, task: Hashable, site: int) -> int:
        """The task's preference for ``site`` (smaller first)."""

    def place(self, task: Hashable, site: int, n: int) -> int:
        """Start up to ``n`` instances of ``task`` at ``site``; return how many fitted."""

    # optional: ``deferred(task, site) -> str``, why ``site``'s bid for ``task`` is
    # deferred ("" if it is not): asked before ``place`` for each bid, when the book has it.
    # Optional too: ``marked(task, site) -> bool`` (the bid goes with the deferred ones),
    # ``turn(task, site) -> int`` (the order of a task's deferred bids, lowest first;
    # without it, the price's) and ``passed(task)``, told once per clearing that served a
    # deferred or marked bid for ``task``.
    # A deferred bid is cleared after every bid that is not, for what they left, unless
    # ``held(task) -> str`` (optional too) says why deferred bids for it wait this round


def clear(bids: Iterable[Bid], book: Book) -> Clearing:
    """Clear one round of bids against ``book`` (see the module docstring for the rule)."""
    rejected: list[tuple[Bid, str]] = []
    valid: list[tuple[tuple, Bid]] = []
    n_sites, open_instances = book.n_sites, book.open_instances
    priority, rank = book.priority, book.rank
    for b in bids:
        site, task, n, price = b
        # the common case in a few comparisons; anything else gets its reason below
        if not (type(site) is int and 0 <= site < n_sites and type(n) is int and n >= 1
                and type(price) is int and 0 <= price <= PRICE_MAX
                and open_instances(task) > 0):
            why = _invalid(b, book)
            if why:
                rejected.append((b, why))
                continue
        valid.append(((-price, priority(task), rank(task, site), site, -n), b))
    valid.sort(key=_first)
    seen: set[tuple[int, Hashable]] = set()
    awards: list[Award] = []
    place = book.place
    deferred = getattr(book, "deferred", None)
    marked = getattr(book, "marked", None)
    later: list[tuple[Bid, str]] = []
    for _, b in valid:
        site, task, n, price = b
        claim = (site, task)
        if claim in seen:
            rejected.append((b, "duplicate claim: this site already bid for this task"))
            continue
        seen.add(claim)
        want = min(n, open_instances(task))
        if want <= 0:
            rejected.append((b, "outbid: no open instance left"))
            continue
        why = deferred(task, site) if deferred is not None else ""
        if why or (marked is not None and marked(task, site)):
            later.append((b, why))
            continue
        got = place(task, site, want)
        if got:
            awards.append(Award(site, task, got, price))
        else:
            rejected.append((b, "no room: no node of the site fits an instance now"))
    if later:
        # deferred bids, for what every other bid of the round left: in the same order, but
        # a task's own in the book's ``turn`` order when it has one
        turn = getattr(book, "turn", None)
        if turn is not None:
            first: dict[Hashable, int] = {}
            for k, (b, _) in enumerate(later):
                first.setdefault(b.task, k)
            later.sort(key=lambda bw: (first[bw[0].task], turn(bw[0].task, bw[0].site)))
        held = getattr(book, "held", None)
        served: dict[Hashable, None] = {}     # tasks whose turn passes, in order
        for b, why in later:
            want = min(b.instances, open_instances(b.task))
            if want <= 0:
                rejected.append((b, (why + "; the bids not deferred took every open "
                                           "instance") if why else
                                 "outbid: no open instance left"))
                continue
            wait = held(b.task) if held is not None and why else ""
            if wait:
                rejected.append((b, f"{why}; {wait}"))
                continue
            got = place(b.task, b.site, want)
            if got:
                awards.append(Award(b.site, b.task, got, b.price))
                served[b.task] = None
            else:
                rejected.append((b, "no room: no node of the site fits an instance now"))
        passed = getattr(book, "passed", None)
        if passed is not None:
            for t in served:
                passed(t)
    rejected.sort(key=lambda br: (br[0].site, repr(br[0].task), br[0].price, br[0].instances,
                                 br[1]))
    return Clearing(awards, rejected)


def _first(pair: tuple) -> tuple:
    return pair[0]


def _invalid(b: Bid, book: Book) -> str:
    if not isinstance(b.site, (int, np.integer)) or not 0 <= b.site < book.n_sites:
        return f"site: {b.site!r} is not a site index in [0, {book.n_sites})"
    if not isinstance(b.instances, (int, np.integer)) or b.instances < 1:
        return f"instances: {b.instances!r}; expected an int >= 1"
    if not isinstance(b.price, (int, np.integer)) or not 0 <= b.price <= PRICE_MAX:
        return f"price: {b.price!r}; expected an int in [0, {PRICE_MAX}]"
    if book.open_instances(b.task) <= 0:
        return "task: not open (unknown, waiting on its dependencies, or fully placed)"
    return ""


def site_preference(cluster: Cluster) -> np.ndarray:
    """``[origin, site]`` rank of ``site`` for work from ``origin``: the origin first, then
    by link latency, then by site index."""
    names = cluster.site_names
    s = len(names)
    lat = np.zeros((s, s))
    for a in range(s):
        for b in range(s):
            link = cluster.link(names[a], names[b])
            if link is not None:
                lat[a, b] = link.latency_ms
    idx = np.arange(s)
    pref = np.empty((s, s), dtype=np.int64)
    for o in range(s):
        pref[o, np.lexsort((idx, lat[o], idx != o))] = idx
    return pref


class Offer(NamedTuple):
    """A site's bid as an agent makes it and a clearinghouse receives it (tasks by id)."""

    job_id: str
    task_id: str
    instances: int
    price: int


@dataclass(frozen=True, slots=True)
class Refused:
    """Why item ``index`` of a site's offers was refused: ``kind`` (a counter name),
    ``field`` (the offer's field) and a reason that says what would be right."""

    index: int
    kind: str
    field: str
    reason: str


def site_free(capacity: Capacity, site: int) -> tuple[int, int, int]:
    """The site's free (milli-cpu, MiB, milli-gpu) summed over its *alive* nodes: what its
    bids of one round may ask for together."""
    sl = capacity.site_slice[site]
    alive = capacity.alive[sl]
    return (int(capacity.free_cpu[sl][alive].sum()), int(capacity.free_mem[sl][alive].sum()),
            int(capacity.free_gpu[sl][alive].sum()))


def admit_offers(ledger: Ledger, capacity: Capacity, site: int, site_name: str,
                 offers: Sequence[Offer], live: list[bool] | None = None
                 ) -> tuple[list[Bid], list[Refused]]:
    """Check one site's offers for a round, once, in one place (the coordinator and the
    in-memory clearinghouse both call this): the task exists and is open, ``instances`` is in
    1..open, the price is in range, one offer per task, some node of the site could ever
    hold it, and all of them together fit the site's free resources (no site is asked for
    more than it has). Returns the market's bids for the accepted offers and a ``Refused``
    per other one. ``offers``: ``Offer``s, or anything with their four fields (the
    coordinator passes the request's own ``pb.Bid`` messages). An offer for a task that
    failed at the site while another could hold it (``ledger_book.failed_here``; ``live``:
    the live sites) is deferred: charged only what the site's other offers left (a review:
    such offers took the whole budget, and work only the site could hold was never bid
    for), and refused only when they left too little. It is not refused for good (a
    review: another live site that never bid for the task kept it pending for good): the
    clearing takes it after the bids of sites where the task did not fail (``clear``;
    the job's origin, retrying its own job on its own nodes, is not deferred there)."""
    bids: list[Bid] = []
    refused: list[Refused] = []
    free = site_free(capacity, site)
    left_cpu, left_mem, left_gpu = free
    seen: set[int] = set()
    tasks, statics = ledger.tasks, capacity.static_by_shape
    new = tuple.__new__                        # a Bid without its __new__'s call
    accepted: dict[int, Bid] = {}
    deferred: list[tuple[int, TaskEntry, int, str]] = []
    for i, o in enumerate(offers):
        ts = tasks.get((o.job_id, o.task_id))
        n, price = o.instances, o.price
        # the common case in a few comparisons; anything else gets its reason below
        if (ts is None or type(n) is not int or not 0 < n <= ts.open
                or type(price) is not int or not 0 <= price <= PRICE_MAX
                or ts.rank in seen
                or not (statics.get(ts.shape) or capacity.static_sites(ts.demand))[site]):
            why = _offer_problem(ts, o, site_name, seen, capacity, site)
            if why is not None:
                refused.append(Refused(i, *why))
                continue
        if ts.failed_nodes:
            why = failed_here(ts, site, capacity, live)
            if why:
                seen.add(ts.rank)             # after the site's other offers
                deferred.append((i, ts, n, why))
                continue
        d = ts.demand
        cpu, mem, gpu = d.cpu * n, d.mem * n, d.gpu * n
        if cpu > left_cpu or mem > left_mem or gpu > left_gpu:
            left = (left_cpu, left_mem, left_gpu)
            r = next(k for k, (x, y) in enumerate(zip((cpu, mem, gpu), left)) if x > y)
            name = ("cpu", "mem", "gpu")[r]
            refused.append(Refused(i, "bid.over_allocation", "instances",
                                   f"would over-allocate site {site_name!r}: its bids ask "
                                   f"{(cpu, mem, gpu)[r] + free[r] - left[r]} {name} and it "
                                   f"has {free[r]} free; expected at most what fits"))
            continue
        left_cpu -= cpu
        left_mem -= mem
        left_gpu -= gpu
        seen.add(ts.rank)
        accepted[i] = new(Bid, (site, ts, n, price))
    for i, ts, n, why in deferred:
        d = ts.demand
        cpu, mem, gpu = d.cpu * n, d.mem * n, d.gpu * n
        if cpu > left_cpu or mem > left_mem or gpu > left_gpu:
            refused.append(Refused(i, "bid.failed_here", "task_id",
                                   why + "; the site's other offers took its room"))
            continue
        left_cpu -= cpu
        left_mem -= mem
        left_gpu -= gpu
        accepted[i] = new(Bid, (site, ts, n, offers[i].price))
    if deferred:
        refused.sort(key=lambda r: r.index)
    bids.extend(accepted[i] for i in sorted(accepted))
    return bids, refused


def _offer_problem(ts: TaskEntry | None, o: Offer, site_name: str, seen: set[int],
                   capacity: Capacity, site: int) -> tuple[str, str, str] | None:
    if ts is None:
        return ("bid.unknown_task", "task_id",
                f"no task {o.job_id!r}/{o.task_id!r}; expected a submitted task")
    if ts.open == 0:
        return ("bid.not_open", "task_id",
                f"task {o.job_id}/{o.task_id} has no open instance (waiting "
                f"{ts.count(0)}, running {ts.running}, done {ts.done}); expected a task "
                f"whose dependencies are done")
    if not isinstance(o.instances, (int, np.integer)) or not 1 <= o.instances <= ts.open:
        return ("bid.bad_instances", "instances",
                f"{o.instances}; task {o.job_id}/{o.task_id} has {ts.open} open instances; "
                f"expected 1..{ts.open}")
    if not isinstance(o.price, (int, np.integer)) or not 0 <= o.price <= PRICE_MAX:
        return ("bid.bad_price", "price", f"{o.price}; expected an integer in [0, {PRICE_MAX}]")
    if ts.rank in seen:
        return ("bid.duplicate", "task_id", f"site {site_name!r} already bid for "
                f"{o.job_id}/{o.task_id} in this message; expected one bid per task")
    if not capacity.static_sites(ts.demand)[site]:
        return ("bid.never_fits", "task_id", f"no node of site {site_name!r} can hold an "
                f"instance of {o.job_id}/{o.task_id}")
    return None
