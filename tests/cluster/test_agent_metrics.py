"""A site agent's Prometheus series of its peer messages: what its step and its exchange
counted reaches ``agora_messages_sent_total``, ``agora_messages_suppressed_total`` and
``agora_agent_wire_bytes_total`` (a probe found them served but never counted). The agent and
its exchange are stand-ins here (plain counters); the live path is in test_replay.py."""

from __future__ import annotations

from types import SimpleNamespace

from agora.agents import metrics as M
from agora.agents.cluster.site_actor import _Metrics


class _Wire:
    def __init__(self) -> None:
        self.bytes = (0, 0)

    def wire(self) -> tuple[int, int]:
        return self.bytes


def _read(site: str) -> dict[str, float]:
    from prometheus_client import generate_latest

    s = M.parse(generate_latest(M.REGISTRY).decode())
    return {"sent": M.total(s, "agora_messages_sent_total", site=site),
            "suppressed": M.total(s, "agora_messages_suppressed_total", site=site),
            "in": M.total(s, "agora_agent_wire_bytes_total", site=site, direction="in"),
            "out": M.total(s, "agora_agent_wire_bytes_total", site=site, direction="out")}


def test_the_counters_follow_what_the_step_and_the_exchange_counted():
    site = "metrics-probe-site"
    m, agent, ex = _Metrics(), SimpleNamespace(sent=0, suppressed=0), _Wire()
    m.counted(site, agent, ex)
    assert _read(site) == {"sent": 0, "suppressed": 0, "in": 0, "out": 0}
    agent.sent, agent.suppressed, ex.bytes = 3, 5, (40, 120)
    m.counted(site, agent, ex)
    assert _read(site) == {"sent": 3, "suppressed": 5, "in": 40, "out": 120}
    m.counted(site, agent, ex)                    # nothing new: nothing added twice
    agent.sent, ex.bytes = 4, (40, 160)
    m.counted(site, agent, ex)
    assert _read(site) == {"sent": 4, "suppressed": 5, "in": 40, "out": 160}


def test_an_exchange_without_wire_counts_still_counts_messages():
    site = "metrics-probe-mem"
    m = _Metrics()
    m.counted(site, SimpleNamespace(sent=2, suppressed=1), object())
    got = _read(site)
    assert (got["sent"], got["suppressed"], got["out"]) == (2, 1, 0)


def test_a_decision_on_the_tick_with_no_wake_records_no_latency(monkeypatch):
    """A review: the agent's think times became a bounded deque, and a first decision made on
    the tick (nothing woke the agent) read its last entry: IndexError, the step counted as
    failed. Such a decision has no latency (stand-ins for the step, this test's)."""
    from collections import deque

    import numpy as np

    from agora.agents.cluster import runtime as rtmod
    from agora.agents.cluster.runtime import AgentRuntime
    from agora.agents.step.seams import RoundInfo

    rt = AgentRuntime.__new__(AgentRuntime)
    rt.name, rt.trace = "a", None
    rt.latencies, rt._woke_at = deque(maxlen=10), None
    rt._decided, rt._decided_active, rt._decided_version = -1, False, 0
    rt._decided_codes, rt._decided_offers, rt._seen = b"", None, None
    rt.counts = {k: 0 for k in ("reranked", "redecided", "messages", "ends", "decisions")}
    seen = []
    rt.metrics = SimpleNamespace(decided=lambda *a: seen.append(a))
    info = RoundInfo(round=1, armed=True, armed_version=1, version=3)
    ch = SimpleNamespace(removed=None, redecide_at=None, version=3, round_info=lambda: info)
    rt.agent = SimpleNamespace(exchange=None, clearinghouse=ch,
                               executor=SimpleNamespace(has_reports=lambda: False))
    d = SimpleNamespace(obs=SimpleNamespace(active=True), offers=[("o",)], codes=np.zeros(2),
                        code=None)
    monkeypatch.setattr(rtmod, "act", lambda agents, info, submit, obs: [d])
    monkeypatch.setattr(rtmod, "submit_decision", lambda a, d, info: SimpleNamespace(ends=[]))
    monkeypatch.setattr(rtmod, "speak", lambda a, d, info: None)
    rt.act_if_owed()
    assert seen == [("a", 1, [])] and list(rt.latencies) == []
    rt._decided, rt._woke_at = -1, 0.0                    # woken now: one latency
    rt.act_if_owed()
    assert len(rt.latencies) == 1 and seen[-1][2] == list(rt.latencies)
