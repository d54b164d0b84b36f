"""A site agent whose steps fail keeps running (a bad step must not kill it) but says so: its
runtime counts the failures with the last error, and ``StepFailureWatch`` turns a growing
count into one line for the operator (agora replay on stderr, agora up on its output).
Before, a failing agent was silent and a replay stalled until its timeout."""

from __future__ import annotations

import asyncio
import types

import pytest
import ray

from agora.agents.cluster.runtime import AgentRuntime
from agora.deploy.observability import StepFailureWatch


def test_a_failing_step_is_counted_with_its_error_and_the_loop_goes_on():
    rt = object.__new__(AgentRuntime)         # only what _loop touches, built by hand
    rt.name, rt.tick_s, rt.counts, rt.last_failure = "dc-a", 0.01, {"step_failures": 0}, ""
    rt._wake = asyncio.Event()
    rt._woke_at = None

    async def ready():
        return None
    rt.agent = types.SimpleNamespace(executor=types.SimpleNamespace(ready=ready))
    calls = []

    def act_if_owed():
        calls.append(1)
        raise ValueError("peer inputs of width 38")
    rt.act_if_owed = act_if_owed

    async def main():
        task = asyncio.ensure_future(rt._loop())
        await asyncio.sleep(0.2)
        task.cancel()
    asyncio.run(main())
    assert len(calls) >= 3 and rt.counts["step_failures"] == len(calls)
    assert rt.last_failure == "ValueError: peer inputs of width 38"


@ray.remote(num_cpus=0)
class _FakeAgent:
    """A stand-in for SiteAgentActor's info() (this test's fake: the watch only reads it)."""

    def __init__(self, site: str) -> None:
        self.site, self.failures = site, 0

    def fail(self, n: int) -> None:
        self.failures += n

    def info(self) -> dict:
        return {"site": self.site, "pid": 1234, "step_failures": self.failures,
                "last_step_failure": "ValueError: boom" if self.failures else ""}


@pytest.mark.timeout(120)
def test_the_watch_reports_an_agent_once_per_growth_of_its_failures():
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False,
             namespace="agora-test-watch")
    try:
        a, b = _FakeAgent.remote("dc-a"), _FakeAgent.remote("dc-b")
        watch = StepFailureWatch([a, b], every_s=0.0)
        assert watch.poll() == []
        ray.get(a.fail.remote(2))
        lines = watch.poll()
        assert len(lines) == 1 and lines[0].startswith("site dc-a: its agent's step failed "
                                                       "2 times (last: ValueError: boom)")
        assert watch.poll() == []                 # no growth, no line
        ray.get(b.fail.remote(1))
        assert [x.split(":")[0] for x in watch.poll()] == ["site dc-b"]
        slow = StepFailureWatch([a], every_s=3600.0)
        assert slow.poll() == []                  # not yet time to ask
        # an agent Ray holds pending (its node is gone: no node has its resource) does not
        # blind the watch to the others (every poll returned nothing)
        gone = _FakeAgent.options(resources={"agora-site-gone": 0.01}).remote("gone")
        watch = StepFailureWatch([a, gone, b], every_s=0.0, timeout_s=1.0)
        assert [x.split(":")[0] for x in watch.poll()] == ["site dc-a", "site dc-b"]
        ray.get(b.fail.remote(1))
        assert [x.split(":")[0] for x in watch.poll()] == ["site dc-b"]
    finally:
        ray.shutdown()
