"""What an executor has to tell its agent: instances that stopped and nodes that went down or
came back, queued until the agent takes them (``Executor.take_ended`` and
``take_node_changes``). Every executor keeps them the same way."""

from __future__ import annotations

from typing import Callable

from agora.agents.step.seams import Ended


class ReportQueue:
    """``wake()`` is called whenever something is queued (the agent then reports it)."""

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self.wake = wake
        self._ended: list[Ended] = []
        self._nodes: list[tuple[str, bool]] = []

    def report_end(self, end: Ended) -> None:
        self._ended.append(end)
        self.wake()

    def report_node(self, name: str, up: bool) -> None:
        self._nodes.append((name, up))
        self.wake()

    def take_ended(self) -> list[Ended]:
        out, self._ended = self._ended, []
        return out

    def take_node_changes(self) -> list[tuple[str, bool]]:
        out, self._nodes = self._nodes, []
        return out

    def has_reports(self) -> bool:
        return bool(self._ended or self._nodes)
