"""The one agent step, written once: observe the own site and the open work, encode, send the
code when uncertain, attend over the peers' codes, rank, bid.

    decisions = act(agents, round_info)     # the simulation engine: every site at once
    decisions = act([me], round_info)       # a site agent in the cluster: itself

``act`` takes the agents that decide for the same round; in the simulation engine they share
one ledger, one capacity and one exchange, so their policy runs as one batch. A site agent in
the cluster calls it with itself alone: the same observation, the same forward, the same
trigger and the same bids, which is why a policy trained in simulation acts the same in the
cluster (``tests`` compare the schedules).

What each step reads and writes goes through the agent's three seams (``seams.py``): its
``Executor`` (own site: free resources, clock), its ``Clearinghouse`` (the committed open
work, and where its decision goes) and its ``Exchange`` (codes in and out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agora.agents.step.codes import normalised_entropy
from agora.agents.step.observe import Observer, SiteObs
from agora.agents.step.policy import NumpyPolicy, log_prob_np, offers_of, sample_orders, teacher_orders
from agora.agents.step.seams import Clearinghouse, Exchange, Executor, RoundInfo, SitePart
from agora.agents.market import Offer


@dataclass
class Decision:
    """One site's decision at one round (also what training records of it)."""

    obs: SiteObs
    offers: list[Offer]
    code: np.ndarray | None
    """the code sent this round (None: suppressed, or nothing to decide)"""
    order: np.ndarray
    plen: int
    logp: float
    codes: np.ndarray
    """the peer codes it attended over (S, Z) int8, and which it had"""
    has: np.ndarray


class SiteAgent:
    """One site's agent: its index and name, its policy and its three seams. ``teacher``
    ('srpt'): rank by the job-level SRPT key instead of the policy (imitation data, and the
    reference heuristic); ``rng``: sample rankings (training) instead of greedy ones."""

    def __init__(self, *, site: int, name: str, policy: NumpyPolicy, observer: Observer,
                 exchange: Exchange, clearinghouse: Clearinghouse, executor: Executor,
                 comm: str | None = None, threshold: float | None = None) -> None:
        self.site, self.name = site, name
        self.policy, self.observer = policy, observer
        self.exchange, self.clearinghouse, self.executor = exchange, clearinghouse, executor
        self.comm = comm or policy.comm
        if self.comm not in ("trigger", "always", "none", "global"):
            raise ValueError(f"comm: {self.comm!r}; expected trigger, always, none or global")
        if (self.comm == "global") != (policy.comm == "global"):
            raise ValueError(f"comm {self.comm!r} with a policy of comm {policy.comm!r}: only "
                             f"a comm 'global' policy reads exact peer states")
        self.threshold = policy.threshold if threshold is None else threshold
        self.sent = 0
        self.suppressed = 0
        self.by_teacher = 0
        """greedy decisions ranked by the teacher: windows wider than the policy's competence"""


def srpt_keys(window: list, k: int) -> np.ndarray:
    """The job-level SRPT teacher's keys (job work left, then instance duration)."""
    keys = np.full(k, np.inf)
    for i, t in enumerate(window):
        keys[i] = t.job.work_left + 1e-3 * t.duration
    return keys


def srpt_first(obs: list[SiteObs], k: int) -> np.ndarray:
    """The SRPT teacher's first choice at each site (S,): the valid slot whose job has the
    least work left (then the shorter instance), or ``k`` (pass) where none is valid -- what
    training's imitation penalty compares the policy's first choice with: the first of
    ``teacher_orders``."""
    valid = np.stack([np.concatenate([o.mask, [True]]) for o in obs])
    return teacher_orders(np.stack([srpt_keys(o.window, k) for o in obs]), valid)[0][:, 0]


def act(agents: list[SiteAgent], info: RoundInfo, *, rng: np.random.Generator | None = None,
        teacher: str | None = None, submit: bool = True,
        obs: list[SiteObs] | None = None) -> list[Decision]:
    """The step of ``agents`` (deciding for the same round, sharing ledger, capacity and
    exchange): each observes, may send its code, ranks and bids; with ``submit`` each
    decision goes to its clearinghouse. Returns the decisions in the order of ``agents``.
    ``obs``: the agents' observations, when the caller knows nothing they see has changed
    since it took them (a re-decision on new peer codes alone); default: observe now."""
    a0 = agents[0]
    policy, k = a0.policy, a0.policy.k
    if obs is None:
        obs = a0.observer.observe(a0.clearinghouse.ledger, a0.executor.capacity,
                                  [a.site for a in agents], a0.executor.now())
    sites = np.array([a.site for a in agents])
    if a0.comm == "global":               # simulation only: every peer's exact state, now
        codes, has = exact_states(sites, obs, len(a0.observer.listening))
    else:
        codes, has = a0.exchange.codes(info.round)
    slots = np.stack([o.slots for o in obs])
    mask = np.stack([o.mask for o in obs])
    own = np.stack([o.own for o in obs])
    pm = has[None, :] & a0.observer.listening[sites]     # its neighbours' codes, never its own
    pc = np.broadcast_to(codes, (len(agents), *codes.shape))
    logits = policy.logits(slots, mask, own, pc, pm)
    valid = np.concatenate([mask, np.ones((len(agents), 1), bool)], axis=1)
    active = mask.any(axis=1)
    if teacher == "srpt":
        order, plen = teacher_orders(np.stack([srpt_keys(o.window, k) for o in obs]), valid)
    else:
        order, plen = sample_orders(logits, valid, rng)
        if rng is None and (policy.max_choices is not None or policy.max_open is not None):
            _within_competence(agents, obs, mask, valid, order, plen, policy.max_choices,
                               policy.max_open, len(a0.clearinghouse.ledger.pool))
    logp = log_prob_np(logits, order, plen)
    send = _trigger(agents, logits, valid, active)
    fresh = policy.encode(np.stack([o.local for o in obs])[send]) if send.any() else None
    out, j = [], 0
    for i, a in enumerate(agents):
        code = None
        if send[i]:
            code = fresh[j]
            j += 1
        o = obs[i]
        offers = offers_of(o.window, order[i], plen[i], o.mask, k, o.free) if active[i] else []
        d = Decision(obs=o, offers=offers, code=code, order=order[i], plen=int(plen[i]),
                     logp=float(logp[i]), codes=codes, has=has)
        out.append(d)
        if submit:
            submit_decision(a, d, info)
            speak(a, d, info)
    return out


def _within_competence(agents: list[SiteAgent], obs: list, mask: np.ndarray, valid: np.ndarray,
                       order: np.ndarray, plen: np.ndarray, max_choices: int | None,
                       max_open: int | None, n_open: int) -> None:
    """Acting greedily, a site whose window holds more candidates than the policy's training
    showed it (``max_choices``, ``agents.learn.competence``) -- or every site, when the pool
    holds more open tasks (``n_open``) than its training's pools did (``max_open``) -- ranks
    by the job-level SRPT teacher instead (in place); each such decision is counted on its
    agent."""
    if max_open is not None and n_open > max_open:
        wide = np.flatnonzero(mask.any(axis=1))
    elif max_choices is not None:
        wide = np.flatnonzero(mask.sum(axis=1) > max_choices)
    else:
        return
    if not len(wide):
        return
    k = mask.shape[1]
    to, tp = teacher_orders(np.stack([srpt_keys(obs[i].window, k) for i in wide]), valid[wide])
    order[wide], plen[wide] = to, tp
    for i in wide:
        agents[i].by_teacher += 1


def exact_states(sites: np.ndarray, obs: list[SiteObs], n_sites: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """comm 'global' (``agents.learn.global_state``): the deciding sites' local states of
    this round in place of codes, (n_sites, LOCAL_DIM) float32, and which sites they cover."""
    codes = np.zeros((n_sites, len(obs[0].local)), np.float32)
    codes[sites] = np.stack([o.local for o in obs])
    has = np.zeros(n_sites, bool)
    has[sites] = True
    return codes, has


def speak(agent: SiteAgent, d: Decision, info: RoundInfo) -> None:
    """Send the decision's code to the peers (after the decision itself went out: a code of
    round r only counts from round r + 1, so it never holds the round up)."""
    if d.code is not None:
        agent.exchange.publish(agent.site, info.round, d.code)
        agent.sent += 1
    elif d.obs.active and agent.comm == "global":
        agent.sent += 1                    # its exact state reached every peer, for free
    elif d.obs.active:
        agent.suppressed += 1


def submit_decision(agent: SiteAgent, d: Decision, info: RoundInfo) -> SitePart | None:
    """Send ``agent``'s decision for the round, with what its executor reports (ends, node
    changes); nothing when it has neither a candidate nor a report."""
    ends, nodes = agent.executor.take_ended(), agent.executor.take_node_changes()
    if not (d.obs.active or ends or nodes):
        return None
    part = SitePart(site=agent.name, round=info.round, seen_version=info.version,
                    offers=d.offers, ends=ends, nodes=nodes, bidding=True)
    agent.clearinghouse.submit(part)
    return part


def _trigger(agents: list[SiteAgent], logits: np.ndarray, valid: np.ndarray,
             active: np.ndarray) -> np.ndarray:
    """Which agents send their fresh code this round (``agents.step.codes``: uncertain
    enough, or always, or never; only an agent with something to decide speaks)."""
    comm = np.array([a.comm for a in agents])
    thr = np.array([a.threshold for a in agents])
    h = normalised_entropy(logits, valid)
    return active & ((comm == "always") | ((comm == "trigger") & (h >= thr)))
