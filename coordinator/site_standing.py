"""What a site agent's view of the committed schedule knows of the sites' standing and the
nodes: the sites lapsed, the sites the operator removed (and did not admit back), the nodes
down -- kept from the schedule's updates (``apply``) and read whole from a ledger view
(``take``: at start, and after an update rebuilt from history, which holds none of it). The
sets are updated in place: whoever holds one (the agent's peer exchange holds ``removed``,
``GrpcExchange.exclude``) sees every change."""

from __future__ import annotations

from agora.protos.agora.v1 import coordinator_pb2 as pb


class SiteStanding:
    def __init__(self) -> None:
        self.lapsed: set[str] = set()
        self.removed: set[str] = set()
        self.nodes_down: set[str] = set()

    def apply(self, u: pb.ScheduleUpdate) -> None:
        """The changes update ``u`` carries."""
        for s in u.sites:
            (self.lapsed.add if s.lapsed else self.lapsed.discard)(s.site)
            (self.removed.add if s.removed else self.removed.discard)(s.site)
        for n in u.nodes:
            (self.nodes_down.discard if n.up else self.nodes_down.add)(n.node)

    def take(self, view: pb.LedgerView) -> None:
        """The standing as ledger view ``view`` says it, whole."""
        for have, now in ((self.lapsed, {s.site for s in view.sites if s.lapsed}),
                          (self.removed, {s.site for s in view.sites if s.removed}),
                          (self.nodes_down, set(view.nodes_down))):
            have.clear()
            have.update(now)
