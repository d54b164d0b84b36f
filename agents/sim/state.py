"""One run of one task instance on one node: the simulator's record of what ran where.

Job and task state live in the one ledger (``agents.ledger``), shared with the coordinator
and the site agents; an ``Attempt`` is what the simulated *executor* adds: when it started,
when it ends, which gpus it holds, and how it ended.
"""

from __future__ import annotations

from agora.agents.ledger import TaskEntry


class Attempt:
    """One run of one instance on one node."""

    __slots__ = ("task", "instance", "node", "site", "start", "end", "slots", "transfer",
                 "fails", "live", "outcome")

    def __init__(self, task: TaskEntry, instance: int, node: int, site: int, start: float,
                 end: float, slots: tuple, transfer: float, fails: bool) -> None:
        self.task = task
        self.instance = instance
        self.node = node
        self.site = site
        self.start = start
        self.end = end
        self.slots = slots
        self.transfer = transfer
        self.fails = fails
        self.live = True
        self.outcome = "running"          # running | completed | failed | killed (outage)
