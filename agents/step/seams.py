"""The three seams a site agent acts through, and what crosses them.

The one agent step (``agents.step.step``) is written against these; each engine supplies its
own side of them:

| seam | simulation engine (one process) | cluster engine (a Ray actor per site) |
| --- | --- | --- |
| ``Exchange``: peer codes | ``MemoryExchange``: one ``CodeBook`` for all | gRPC streams between agents (``agents/cluster/peers.py``) |
| ``Clearinghouse``: decisions in, committed allocations out | the market in memory over the simulator's ledger | the PBFT coordinator, through its client (``coordinator/clearinghouse.py``) |
| ``Executor``: where allocated instances run, whence ends come | the simulator | a simulated site on a scaled clock (replay, ``agents/sim/site_executor.py``), or Ray (real work, ``agents/cluster/ray_executor.py``) |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from agora.agents.ledger import Ledger, TaskEntry
from agora.agents.market import Offer
from agora.agents.sim.capacity import Capacity
from agora.agents.step.codes import CodeBook


@dataclass(frozen=True, slots=True)
class RoundInfo:
    """The coordinator's round as the agent last saw it."""

    round: int
    armed: bool
    armed_version: int
    """the version that armed the round"""
    version: int
    """the committed version the agent's view is at"""


@dataclass(frozen=True, slots=True)
class Ended:
    """An instance that stopped at the site, as its executor saw it."""

    job_id: str
    task_id: str
    instance: int
    kind: str
    """completed | failed (an attempt that counts) | lost (requeued without counting)"""
    start_s: float
    end_s: float
    exit_code: int = 0
    reason: str = ""
    run_id: int = 0
    """the run that ended (the version that placed it, ``TaskEntry.placed_at``); 0: not
    said. The coordinator refuses the end of a run that is over, so a copy sent again after
    the instance was placed anew cannot end the new run."""


@dataclass
class SitePart:
    """A site's message to the clearinghouse: what ended there and its nodes' state, then,
    when ``bidding``, its decision for ``round``."""

    site: str
    round: int
    seen_version: int
    offers: list[Offer] = field(default_factory=list)
    ends: list[Ended] = field(default_factory=list)
    nodes: list[tuple[str, bool]] = field(default_factory=list)
    """(node name, up)"""
    bidding: bool = True


class Exchange(Protocol):
    """Peer codes: what this agent sends and what it has heard."""

    def publish(self, site: int, round: int, code: np.ndarray) -> None:
        """Send ``site``'s code computed in ``round`` to its peers."""

    def codes(self, round: int) -> tuple[np.ndarray, np.ndarray]:
        """Each sender's latest code from a round before ``round``: (codes (S, Z) int8,
        has (S,) bool)."""


class Clearinghouse(Protocol):
    """The committed schedule as this agent sees it, and where its decisions go."""

    ledger: Ledger
    """open work and instance states as committed"""

    def round_info(self) -> RoundInfo: ...

    def submit(self, part: SitePart) -> None:
        """Send the site's part (the cluster's sends it asynchronously, signed by the site)."""


class Executor(Protocol):
    """Where the site's allocated instances run."""

    site: int
    capacity: Capacity
    """free resources of the site's nodes (the rows of other sites are not its concern)"""

    def now(self) -> float:
        """The site's clock, seconds on the workload clock."""

    async def ready(self) -> None:
        """Returns once the executor can run work (its clock runs, its runners are up)."""

    async def recover(self, placed: list[tuple[TaskEntry, int, int]], ledger: Ledger) -> None:
        """At the agent's (re)start: ``placed`` is what the committed schedule runs on this
        site's nodes ((task, instance, node)); take over what still runs, start what never
        started. What it then does not hold (``running``) the agent reports lost."""

    def start(self, task: TaskEntry, instance: int, node: int) -> None:
        """Run ``instance`` of ``task`` on ``node`` (an index of the cluster's nodes)."""

    def take_ended(self) -> list[Ended]:
        """Instances that stopped since the last call."""

    def take_node_changes(self) -> list[tuple[str, bool]]:
        """(node name, up) of the site's nodes that went down or came back since the last
        call."""

    def has_reports(self) -> bool:
        """Are ends or node changes waiting to be taken?"""

    def running(self) -> set[tuple[str, str, int]]:
        """(job, task, instance) of everything running here now."""

    def kill(self, key: tuple[str, str, int], reason: str, *, report: bool) -> None:
        """Stop a run; ``report``: report it (lost) like any end."""

    def lose(self, key: tuple[str, str, int], reason: str, run_id: int = 0) -> None:
        """Report an instance this executor does not hold as lost (its run ``run_id``)."""


class MemoryExchange:
    """The simulation engine's ``Exchange``: every site's codes in one ``CodeBook``."""

    def __init__(self, n_sites: int, code_dim: int) -> None:
        self.book = CodeBook(n_sites, code_dim)
        self.sent = 0

    def publish(self, site: int, round: int, code: np.ndarray) -> None:
        self.book.put(site, round, code)
        self.sent += 1

    def codes(self, round: int) -> tuple[np.ndarray, np.ndarray]:
        return self.book.codes(round)
