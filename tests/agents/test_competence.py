"""A learned policy ranks on its own only windows as wide as its training showed it
(``agents.learn.competence``): a wider window is ranked by the job-level SRPT teacher when
acting greedily, never while training samples; the measure is stored in the checkpoint and
reaches every acting policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agora.agents.learn import checkpoint, competence
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.step.policy import NumpyPolicy, teacher_orders
from agora.agents.step.simulation import AgentsPolicy
from agora.agents.step.step import act, srpt_keys
from tests.simkit import cluster, job, node, site, task, workload

torch.set_num_threads(1)   # tests share a 2-core machine

CL = cluster(site("a", node("a", "n0", 16, 65536)), site("b", node("b", "n0", 16, 65536)))
# five jobs of different total work, each of one-core tasks: a window of many candidates
WL = workload(*(job(f"j{i}", 0.0, "a", *(task(f"t{t}", 10.0 * (i + 1) + t, 1.0)
                                          for t in range(3))) for i in range(5)))


def _agents(seed: int) -> Agents:
    torch.manual_seed(seed)
    return Agents(AgentConfig(k=8, hidden=32, comm="none"))


def _round(agents: Agents, rng=None):
    sim = Simulator(CL, WL, SimConfig())
    sim.step_events()                           # the arrivals
    pol = AgentsPolicy(agents.policy())
    pol.reset(sim)
    return pol, act(pol.agents, pol.clearinghouse.round_info(), submit=False, rng=rng)


def _teacher(d):
    k = len(d.obs.mask)
    valid = np.concatenate([d.obs.mask, [True]])[None]
    order, _ = teacher_orders(srpt_keys(d.obs.window, k)[None], valid)
    return order[0].tolist()


def _differs_from_teacher() -> Agents:
    """Random weights whose own ranking of the wide window is not the teacher's (so the
    test below can tell the two apart)."""
    for seed in range(50):
        ag = _agents(seed)
        _, ds = _round(ag)
        if ds[0].order.tolist() != _teacher(ds[0]):
            return ag
    raise AssertionError("no seed gave a ranking other than the teacher's")


def test_a_window_wider_than_the_competence_is_ranked_by_the_teacher():
    ag = _differs_from_teacher()
    pol, ds = _round(ag)
    assert ds[0].obs.mask.sum() > 2
    assert sum(a.by_teacher for a in pol.agents) == 0        # unguarded: its own ranking
    ag.max_choices = 2
    pol, ds = _round(ag)
    assert ds[0].order.tolist() == _teacher(ds[0])
    assert pol.agents[0].by_teacher == 1
    ag.max_choices = int(ds[0].obs.mask.sum())                # wide enough: its own again
    pol, ds = _round(ag)
    assert ds[0].order.tolist() != _teacher(ds[0])
    assert pol.agents[0].by_teacher == 0


def test_training_samples_are_never_guarded():
    ag = _differs_from_teacher()
    ag.max_choices = 1
    pol, ds = _round(ag, rng=np.random.default_rng(0))
    assert pol.agents[0].by_teacher == 0


class _Source:
    def __init__(self) -> None:
        self.cluster = CL

    def episode(self, i: int, validation: bool = False):
        return CL, WL


def test_measure_counts_every_active_decisions_window():
    ag = _agents(0)
    ag.max_choices = 2
    m = competence.measure(ag, _Source(), episodes=2, quantile=1.0)
    assert m["decisions"] == sum(m["counts"].values()) > 0
    assert m["max_choices"] == max(m["counts"]) > 2           # quantile 1: the widest
    assert ag.max_choices == 2                                # measured unguarded, then restored
    with pytest.raises(ValueError, match="quantile"):
        competence.measure(ag, _Source(), quantile=0.0)


def test_a_stamped_checkpoint_gives_its_measure_to_the_acting_policy(tmp_path):
    ag = _agents(0)
    path = tmp_path / "c.pt"
    checkpoint.save(path, agents=ag, extra={})
    assert checkpoint.load_policy(path).max_choices is None
    competence.stamp(path, {"max_choices": 3})
    assert checkpoint.load_policy(path).max_choices == 3
    assert checkpoint.policy_arrays(path)[1]["max_choices"] == 3   # what a site agent gets
    competence.stamp(path, {"max_choices": 0})
    with pytest.raises(checkpoint.CheckpointMismatch, match="competence.max_choices"):
        checkpoint.load_policy(path)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_the_acting_policy_refuses_a_bad_max_choices(bad):
    ag = _agents(0)
    cfg = {**ag.cfg.to_dict(), "max_choices": bad}
    with pytest.raises(ValueError, match="max_choices"):
        NumpyPolicy(ag.policy_weights(), cfg)


def test_a_pool_deeper_than_the_competence_makes_every_site_rank_by_the_teacher():
    # the window is narrow enough (max_choices not exceeded), but the pool holds more open
    # tasks than the policy's training pools did: every site with work ranks by the teacher
    ag = _differs_from_teacher()
    pol, ds = _round(ag)
    n_open = len(pol.clearinghouse.ledger.pool)
    ag.max_choices = int(ds[0].obs.mask.sum())
    ag.max_open = n_open - 1
    pol, ds = _round(ag)
    assert ds[0].order.tolist() == _teacher(ds[0])
    assert pol.agents[0].by_teacher == 1
    ag.max_open = n_open                                      # as deep as its training saw
    pol, ds = _round(ag)
    assert ds[0].order.tolist() != _teacher(ds[0]) and pol.agents[0].by_teacher == 0
    ag.max_choices = None                                     # the pool bound alone
    ag.max_open = n_open - 1
    pol, ds = _round(ag)
    assert ds[0].order.tolist() == _teacher(ds[0])
    pol, ds = _round(ag, rng=np.random.default_rng(0))        # never while training
    assert pol.agents[0].by_teacher == 0


def test_measure_gives_the_deepest_pool_of_its_decisions():
    ag = _agents(0)
    ag.max_open = 1
    m = competence.measure(ag, _Source(), episodes=1, quantile=1.0)
    # WL's fifteen tasks arrive at once: the first decisions see all of them open
    assert m["max_open"] == 15 and 0 < m["mean_open"] <= 15
    assert ag.max_open == 1                                   # measured unguarded, then restored


def test_a_stamped_pool_bound_reaches_the_acting_policy(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoint.save(path, agents=_agents(0), extra={})
    competence.stamp(path, {"max_choices": 3})               # measured before the bound: none
    assert checkpoint.load_policy(path).max_open is None
    competence.stamp(path, {"max_choices": 3, "max_open": 40})
    assert checkpoint.load_policy(path).max_open == 40
    assert checkpoint.policy_arrays(path)[1]["max_open"] == 40   # what a site agent gets
    competence.stamp(path, {"max_choices": 3, "max_open": -2})
    with pytest.raises(checkpoint.CheckpointMismatch, match="competence.max_open"):
        checkpoint.load_policy(path)
    ag = _agents(0)
    with pytest.raises(ValueError, match="max_open"):
        NumpyPolicy(ag.policy_weights(), {**ag.cfg.to_dict(), "max_open": 0})
