"""The replay's clock, shared by every site agent: a named Ray actor holding when the replay
began (wall time and workload time) and its speed, set once by whoever starts the replay
just before the first job is submitted; and the factory of the simulated executors that read
it (``ReplayExecutorSpec``), which a restarted agent uses to find the clock again.

It is not a scheduler: it carries three numbers, and nothing about the schedule goes
through it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import ray

from agora.agents.cluster.registry import beside_caller
from agora.agents.sim.site_executor import ReplayClock, ReplayExecutor

CLOCK_NAME = "agora-replay-clock"


@ray.remote(num_cpus=0, max_restarts=-1)
class ClockKeeper:
    def __init__(self) -> None:
        self.clock: tuple[float, float, float] | None = None

    def set(self, t0_wall: float, t0_sim: float, speed: float) -> None:
        self.clock = (t0_wall, t0_sim, speed)

    def get(self) -> tuple[float, float, float] | None:
        return self.clock


def clock_keeper(namespace: str):
    return ClockKeeper.options(name=CLOCK_NAME, get_if_exists=True, namespace=namespace,
                               scheduling_strategy=beside_caller()).remote()


class KeptClockExecutor(ReplayExecutor):
    """A ``ReplayExecutor`` whose clock comes from the ``ClockKeeper``."""

    def __init__(self, *, namespace: str, **kw) -> None:
        super().__init__(**kw)
        self.namespace = namespace

    async def ready(self) -> None:
        keeper = ray.get_actor(CLOCK_NAME, namespace=self.namespace)
        while self.clock is None:
            c = await keeper.get.remote()
            if c is not None:
                self.set_clock(ReplayClock(*c))
            else:
                await asyncio.sleep(0.05)
        self.start_outages()


@dataclass(frozen=True)
class ReplayExecutorSpec:
    """Builds a site's simulated executor in the agent's process."""

    namespace: str = "agora"

    def build(self, cluster, site: int, wake) -> KeptClockExecutor:
        return KeptClockExecutor(namespace=self.namespace, cluster=cluster, site=site,
                                 wake=wake)
