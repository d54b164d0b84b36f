"""A replica's Prometheus counters (``agents/metrics.py``), read from the PBFT core's state
after each pump round of the replica host (``coordinator/replica_host.py``)."""

from __future__ import annotations

from agora.coordinator.pbft.replica import Replica


class ReplicaMetrics:
    """One replica's Prometheus counters (``agents/metrics.py``), updated from the core's
    state after each pump round: no change to the protocol, a few attribute reads a round."""

    def __init__(self, index: int, replica: Replica) -> None:
        from agora.agents import metrics
        label = str(index)
        self._m = metrics
        self.label = label
        self.commits = metrics.COMMITS.labels(replica=label)
        self.view_changes = metrics.VIEW_CHANGES.labels(replica=label)
        self.view = metrics.VIEW.labels(replica=label)
        self.bytes_in = metrics.wire_bytes("in", replica=index)
        self.bytes_out = metrics.wire_bytes("out", replica=index)
        self._requests: dict[tuple[str, str], object] = {}
        # Baselines after recovery: what the database replayed is not counted again.
        self.executed = replica.last_executed
        self.installed = replica.view if replica.active else replica.view - 1
        self.shown = replica.view
        self.view.set(replica.view)

    def observe(self, replica: Replica) -> None:
        executed = replica.last_executed
        if executed > self.executed:
            self.commits.inc(executed - self.executed)
            self.executed = executed
        view = replica.view
        if view != self.shown:
            self.shown = view
            self.view.set(view)
        if replica.active and view > self.installed:
            self.installed = view
            self.view_changes.inc()

    def request(self, rpc_name: str, outcome: str) -> None:
        child = self._requests.get((rpc_name, outcome))
        if child is None:
            child = self._m.REQUESTS.labels(replica=self.label, rpc=rpc_name, outcome=outcome)
            self._requests[(rpc_name, outcome)] = child
        child.inc()
