"""The simulation engine of the site agents: the one agent step (``step.act``) over in-memory
seams, inside the discrete-event simulator (``agents.sim.engine``). Training, evaluation,
sweeps and the PettingZoo environment run this; the cluster engine runs the same step over
gRPC, PBFT and a real or simulated executor.

At every decision point of the simulator the agents play bidding *rounds* until a round
places nothing: every site observes its own site and the open work, may send its code (it
counts for its peers from the next round), ranks and bids; the in-memory clearinghouse then
admits each site's offers (``agents.market.admit_offers``, the coordinator's own check) and
clears them all together with the market's one rule on the simulator's ledger
(``agents.market.clear`` over a ``LedgerBook``, as every coordinator replica does); the
simulator runs what was placed. Instance ends reach the ledger directly (the simulator is
every site's executor and the clearinghouse's ledger at once), as a site's report would
before any bid of the round -- and, as a report falls in the coordinator's current round,
the ends before a round fall in it: deferred bids for a task a failed or lost run reopened
wait for the next round (``LedgerBook.held``), which is played even if this one placed
nothing, as a coordinator arms it.

**Critic state** (training only): a fixed-size summary of the whole system
(``STATE_FEATURES``) that the centralised critic reads (MAPPO); no site ever sees it.
"""

from __future__ import annotations

import numpy as np

from agora.agents.ledger_book import LedgerBook
from agora.agents.market import admit_offers, clear, site_preference
from agora.agents.sim.engine import Decision as SimDecision
from agora.agents.sim.engine import Simulator
from agora.agents.step.observe import Observer, SiteObs, _log
from agora.agents.step.policy import NumpyPolicy
from agora.agents.step.seams import Ended, MemoryExchange, RoundInfo, SitePart
from agora.agents.step.step import Decision, SiteAgent, act, srpt_first

STATE_FEATURES = ("log_open_tasks", "jobs_to_arrive_frac", "instances_done_frac",
                  "free_cpu_mean", "free_cpu_min", "free_cpu_max", "free_mem_mean",
                  "free_mem_min", "free_mem_max", "free_gpu_mean", "free_gpu_min",
                  "free_gpu_max", "active_site_frac")
STATE_DIM = len(STATE_FEATURES)


class SimExecutor:
    """The simulation engine's ``Executor`` of one site: the simulator itself."""

    def __init__(self, sim: Simulator, site: int) -> None:
        self.sim, self.site, self.capacity = sim, site, sim.cap

    def now(self) -> float:
        return self.sim.now

    def start(self, task, instance: int, node: int) -> None:
        """Run it in the simulator (the clearing already holds its node and gpus)."""
        self.sim.launch(task, instance, node, task.placements[instance][1])

    def take_ended(self) -> list[Ended]:
        return []                     # ends reach the simulator's ledger directly

    def take_node_changes(self) -> list[tuple[str, bool]]:
        return []                     # so do outages (the simulator's own events)

    def has_reports(self) -> bool:
        return False

    def running(self) -> set[tuple[str, str, int]]:
        sl = self.sim.cap.site_slice[self.site]
        return {(a.task.job.job.id, a.task.task.id, a.instance)
                for n in range(sl.start, sl.stop) for a in self.sim.node_running[n]}

    def kill(self, key: tuple[str, str, int], reason: str, *, report: bool) -> None:
        raise ValueError("the simulation engine never reconciles: its ledger is the world's")

    def lose(self, key: tuple[str, str, int], reason: str, run_id: int = 0) -> None:
        raise ValueError("the simulation engine never reconciles: its ledger is the world's")


class MemoryClearinghouse:
    """The simulation engine's ``Clearinghouse``: the simulator's ledger, the sites' parts
    of the current round, and the clearing (``clear_round``)."""

    def __init__(self, sim: Simulator, executors: list[SimExecutor]) -> None:
        self.sim = sim
        self.executors = executors
        self.ledger = sim.ledger
        self.pref = site_preference(sim.cluster)
        self.site_index = sim.site_index
        self.round = 0
        self.parts: dict[str, SitePart] = {}
        self.refused = 0
        self.held_back = 0
        """deferred bids the last round held back (``LedgerBook.held``): the round after
        is for them, as a coordinator arms it"""
        sim.reopened = set()          # tasks reopened in the round: the coordinator's rule

    def round_info(self) -> RoundInfo:
        return RoundInfo(round=self.round, armed=True, armed_version=self.round,
                         version=self.round)

    def submit(self, part: SitePart) -> None:
        self.parts[part.site] = part

    def clear_round(self) -> int:
        """Clear every part of the round together; returns the instances placed."""
        sim = self.sim
        bids = []
        for name in sim.cluster.site_names:
            part = self.parts.get(name)
            if part is None:
                continue
            ok, refused = admit_offers(self.ledger, sim.cap, self.site_index[name], name,
                                       part.offers)
            self.refused += len(refused)
            bids.extend(ok)
        book = LedgerBook(self.ledger, sim.cap, self.pref, on_place=self._start,
                          reopened=sim.reopened)
        cleared = clear(bids, book)
        self.parts.clear()
        sim.reopened.clear()
        self.held_back = book.held_back
        self.round += 1
        return cleared.placed

    def _start(self, task, instance: int, node: int, slots) -> None:
        """An allocation goes to the executor of the site it was placed at."""
        self.executors[int(self.sim.cap.node_site[node])].start(task, instance, node)


class Recorder:
    """Per-round arrays of a rollout (one row per round, every site in it)."""

    KEYS = ("slots", "mask", "own", "local", "codes", "has", "listen", "state", "order", "plen",
            "logp", "active", "now", "teacher_first")

    def __init__(self) -> None:
        self.rows: dict[str, list] = {k: [] for k in self.KEYS}

    def add(self, **kw) -> None:
        for k in self.KEYS:
            self.rows[k].append(kw[k])

    def __len__(self) -> int:
        return len(self.rows["now"])

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.stack(v) for k, v in self.rows.items()}


def system_state(sim: Simulator, obs: list[SiteObs], arrivals: np.ndarray) -> np.ndarray:
    """The critic's summary of the whole system (``STATE_FEATURES``) from every site's
    observation and the simulator (training only)."""
    free = np.stack([o.own[:3] for o in obs])                          # (S, 3)
    to_come = len(arrivals) - np.searchsorted(arrivals, sim.now, side="right")
    done = sim.acct.instances_done / max(sim.workload.instance_count, 1)
    active = np.mean([o.active for o in obs])
    return np.array([_log(len(sim.ledger.pool)), to_come / max(len(arrivals), 1), done,
                     *[f(free[:, r]) for r in range(3) for f in (np.mean, np.min, np.max)],
                     active], np.float32)


class AgentsPolicy:
    """The site agents behind the simulator's ``Policy`` seam (module docstring). ``rng``:
    sample rankings (training), else greedy; ``teacher`` ('srpt'): rank by the job-level
    SRPT key (imitation data, the reference heuristic); ``recorder``: keep every round."""

    def __init__(self, policy: NumpyPolicy, *, name: str = "learned",
                 rng: np.random.Generator | None = None, teacher: str | None = None,
                 recorder: Recorder | None = None, comm: str | None = None,
                 threshold: float | None = None) -> None:
        self.policy = policy
        self.name = name
        self.rng, self.teacher, self.recorder = rng, teacher, recorder
        self.comm, self.threshold = comm, threshold
        self.rounds = 0

    def reset(self, sim: Simulator) -> None:
        self.sim = sim
        self.observer = Observer(sim.cluster, self.policy.k, self.policy.peers,
                                 graph=self.policy.graph)
        executors = [SimExecutor(sim, i) for i in range(len(sim.cluster.sites))]
        self.clearinghouse = MemoryClearinghouse(sim, executors)
        self.exchange = MemoryExchange(len(sim.cluster.sites), self.policy.code_dim)
        self.agents = [SiteAgent(site=i, name=s.name, policy=self.policy,
                                 observer=self.observer, exchange=self.exchange,
                                 clearinghouse=self.clearinghouse,
                                 executor=executors[i], comm=self.comm,
                                 threshold=self.threshold)
                       for i, s in enumerate(sim.cluster.sites)]
        arrivals = np.array([j.arrival for j in sim.workload.jobs])
        self._arrivals = arrivals

    @property
    def sent_frac(self) -> float:
        sent = sum(a.sent for a in self.agents)
        possible = sent + sum(a.suppressed for a in self.agents)
        return sent / possible if possible else 0.0

    def schedule(self, ctx: SimDecision) -> None:
        ch = self.clearinghouse
        while len(self.sim.ledger.pool):
            decisions = act(self.agents, ch.round_info(), rng=self.rng, teacher=self.teacher)
            active = np.array([d.obs.active for d in decisions])
            if not active.any():
                ch.parts.clear()
                return
            if self.recorder is not None:
                self._record(decisions, active)
            self.rounds += 1
            if ch.clear_round() == 0 and not ch.held_back:
                return

    def state(self, decisions: list[Decision]) -> np.ndarray:
        return system_state(self.sim, [d.obs for d in decisions], self._arrivals)

    def _record(self, decisions: list[Decision], active: np.ndarray) -> None:
        d0 = decisions[0]
        self.recorder.add(slots=np.stack([d.obs.slots for d in decisions]),
                          mask=np.stack([d.obs.mask for d in decisions]),
                          own=np.stack([d.obs.own for d in decisions]),
                          local=np.stack([d.obs.local for d in decisions]),
                          codes=d0.codes, has=d0.has, listen=self.observer.listening,
                          state=self.state(decisions),
                          order=np.stack([d.order for d in decisions]),
                          plen=np.array([d.plen for d in decisions]),
                          logp=np.array([d.logp for d in decisions], np.float32),
                          active=active, now=self.sim.now,
                          teacher_first=srpt_first([d.obs for d in decisions],
                                                   self.policy.k))
