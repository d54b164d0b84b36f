"""The market: bids from the site agents cleared into allocations by one deterministic rule.

This module is the bottom and middle layers of a scheduling round (ARCHITECTURE.md, "One
scheduling round"). The same ``clear`` runs in the simulator (through ``SimBook``) and in
every coordinator replica (through the replicated schedule's own book), so it must be a pure
function of its inputs: it never reads a clock, never draws a random number, and never
depends on the order the bids arrived in or on dict/set iteration order.

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

**Mediation** (middle layer) is what ``book.place`` enforces for every award before it is
made: the site has a node with room for the instance now (no site is ever over-allocated),
the gpu model is allowed, the task's dependencies are done (only open tasks are biddable),
and no instance is claimed twice (an instance is open until it is placed once). The sort key
is the priority arbitration between competing claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Hashable, Iterable, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from agents.domain import Cluster
    from agents.sim.engine import Decision
    from agents.sim.state import TaskState

PRICE_MAX = 2**31 - 1
PRICE_SCALE = 2**20
"""``price_of(score)`` = round(score · PRICE_SCALE), clipped to [0, PRICE_MAX]"""


def price_of(score: float) -> int:
    """The integer price of a real-valued score (scores in [0, 2048) keep 20 bits below the
    point; larger are clipped). Non-finite scores are refused."""
    if not np.isfinite(score):
        raise ValueError(f"bid score must be finite, got {score!r}")
    return int(min(max(round(score * PRICE_SCALE), 0), PRICE_MAX))


@dataclass(frozen=True, slots=True)
class Bid:
    site: int
    task: Hashable
    instances: int = 1
    price: int = 0


@dataclass(frozen=True, slots=True)
class Award:
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


def clear(bids: Iterable[Bid], book: Book) -> Clearing:
    """Clear one round of bids against ``book`` (see the module docstring for the rule)."""
    rejected: list[tuple[Bid, str]] = []
    valid: list[tuple[tuple, Bid]] = []
    for b in bids:
        why = _invalid(b, book)
        if why:
            rejected.append((b, why))
            continue
        key = (-b.price, book.priority(b.task), book.rank(b.task, b.site), b.site, -b.instances)
        valid.append((key, b))
    valid.sort(key=lambda kb: kb[0])
    seen: set[tuple[int, Hashable]] = set()
    awards: list[Award] = []
    for _, b in valid:
        if (b.site, b.task) in seen:
            rejected.append((b, "duplicate claim: this site already bid for this task"))
            continue
        seen.add((b.site, b.task))
        want = min(b.instances, book.open_instances(b.task))
        if want <= 0:
            rejected.append((b, "outbid: no open instance left"))
            continue
        got = book.place(b.task, b.site, want)
        if got:
            awards.append(Award(b.site, b.task, got, b.price))
        else:
            rejected.append((b, "no room: no node of the site fits an instance now"))
    rejected.sort(key=lambda br: (br[0].site, repr(br[0].task), br[0].price, br[0].instances,
                                 br[1]))
    return Clearing(awards, rejected)


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


class SimBook:
    """The market's view of one simulator decision point. Tasks are ``TaskState`` objects
    (the simulator's own; compared by their FIFO rank), placement is the site's best fit."""

    def __init__(self, ctx: Decision, pref: np.ndarray) -> None:
        self.ctx = ctx
        self.pref = pref
        self.n_sites = pref.shape[0]

    def open_instances(self, task: TaskState) -> int:
        return task.open if task in self.ctx.pool else 0

    def priority(self, task: TaskState) -> tuple:
        return (-task.job.job.weight, task.rank)

    def rank(self, task: TaskState, site: int) -> int:
        return int(self.pref[task.job.origin, site])

    def place(self, task: TaskState, site: int, n: int) -> int:
        return self.ctx.assign(task, site, n)


def clear_sim(ctx: Decision, bids: Sequence[Bid], pref: np.ndarray) -> Clearing:
    """Clear ``bids`` (tasks are ``TaskState``) at the simulator's decision point ``ctx``."""
    return clear(bids, SimBook(ctx, pref))
