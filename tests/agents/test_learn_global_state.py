"""comm 'global' (agents/learn/global_state.py): each agent's peer attention reads every other
site's exact local state of the round (not a code), training reads the same states back, a
checkpoint keeps the mode and its width, and no site of the cluster engine runs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agora.agents.learn import checkpoint
from agora.agents.learn.global_state import GlobalStatePolicy
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.learn.loop import run_episode
from agora.agents.learn.ppo import flatten
from agora.agents.learn.ranking import log_prob
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.step.observe import LOCAL_DIM
from agora.agents.step.policy import NumpyPolicy
from agora.agents.step.simulation import AgentsPolicy
from agora.agents.step.step import act
from agora.agents.workloads.synthetic import generate
from tests.agents.test_step import CL, midway

torch.set_num_threads(1)   # tests share a 2-core machine


def global_agents(seed: int = 0) -> Agents:
    torch.manual_seed(seed)
    return Agents(AgentConfig(k=4, hidden=32, comm="global"))


def test_attention_reads_the_peers_exact_states_of_the_round():
    ag = global_agents()
    assert ag.peer_dim == LOCAL_DIM and ag.model.k.in_features == LOCAL_DIM
    sim = midway(generate(CL, seed=2, jobs=25, load=0.95), 8)
    pol = AgentsPolicy(ag.policy())
    pol.reset(sim)
    ds = act(pol.agents, pol.clearinghouse.round_info(), submit=False)
    states = np.stack([d.obs.local for d in ds])
    assert ds[0].codes.dtype == np.float32 and np.array_equal(ds[0].codes, states)
    assert ds[0].has.all()
    # the acted log-probabilities are the torch actor's with the exact states as peer inputs
    # (dequantised codes, or states quantised on the way, give other logits)
    n = len(ds)
    peer = torch.from_numpy(np.broadcast_to(states, (n, *states.shape)).copy())
    pm = torch.from_numpy(ds[0].has[None, :] & pol.observer.listening)
    with torch.no_grad():
        logits, _ = ag.model(torch.from_numpy(np.stack([d.obs.slots for d in ds])),
                             torch.from_numpy(np.stack([d.obs.mask for d in ds])),
                             torch.from_numpy(np.stack([d.obs.own for d in ds])), peer, pm,
                             torch.zeros(n, ag.state_dim))
        lp = log_prob(logits, torch.from_numpy(np.stack([d.order for d in ds])),
                      torch.tensor([d.plen for d in ds]))
    active = [d.obs.active for d in ds]
    assert any(active)
    np.testing.assert_allclose(lp.numpy()[active], np.array([d.logp for d in ds])[active],
                               rtol=1e-4, atol=1e-4)
    # a peer's state moves the others' decision: change site 2's, site 0's logits change
    other = states.copy()
    other[2] += 1.0
    base = pol.policy.logits(*(np.stack([getattr(d.obs, f) for d in ds])
                               for f in ("slots", "mask", "own")),
                             np.broadcast_to(states, (n, *states.shape)), pm.numpy())
    moved = pol.policy.logits(*(np.stack([getattr(d.obs, f) for d in ds])
                                for f in ("slots", "mask", "own")),
                              np.broadcast_to(other, (n, *other.shape)), pm.numpy())
    assert not np.allclose(base[0], moved[0]) and np.allclose(base[2], moved[2])


def test_training_reads_back_the_states_it_acted_on():
    ag = global_agents(1)
    wl = generate(CL, seed=3, jobs=15, load=0.9)
    res, rec, pol = run_episode(ag, CL, wl, seed=0, rng=np.random.default_rng(0))
    assert pol.sent_frac == 1.0              # every state reached every peer
    ep = rec.arrays()
    b = flatten(ep, ag.cfg.bits)
    t_len, s = ep["mask"].shape[:2]
    want = np.broadcast_to(ep["local"][:, None], (t_len, s, s, LOCAL_DIM)).reshape(t_len * s, s, -1)
    assert torch.equal(b["peer_codes"], torch.from_numpy(np.ascontiguousarray(want)))
    assert_reads_back(ag, b)


def assert_reads_back(ag: Agents, b: dict) -> None:
    """Training's forward on a flattened episode ``b`` gives the log-probabilities the
    acting policy recorded."""
    with torch.no_grad():
        logits, _ = ag.model(b["slots"], b["mask"], b["own"], b["peer_codes"], b["peer_mask"],
                             b["state"])
        lp = log_prob(logits, b["order"], b["plen"])
    a = b["active"]
    np.testing.assert_allclose(lp[a].numpy(), b["logp"][a].numpy(), rtol=1e-4, atol=1e-4)


def test_a_checkpoint_keeps_the_mode_and_its_width(tmp_path):
    ag = global_agents(2)
    path = tmp_path / "g.pt"
    checkpoint.save(path, agents=ag, extra={})
    back, blob = checkpoint.load_agents(path)
    assert back.cfg.comm == "global" and back.peer_dim == LOCAL_DIM == blob["peer_dim"]
    for x, y in zip(ag.model.state_dict().values(), back.model.state_dict().values()):
        assert torch.equal(x, y)
    pol = checkpoint.load_policy(path)
    assert isinstance(pol, GlobalStatePolicy)
    wl = generate(CL, seed=4, jobs=12, load=0.9)
    r1 = Simulator(CL, wl, SimConfig()).run(AgentsPolicy(ag.policy()))
    r2 = Simulator(CL, wl, SimConfig()).run(AgentsPolicy(pol))
    assert r1.metrics["jct_mean_s"] == r2.metrics["jct_mean_s"]
    assert r1.metrics["makespan_s"] == r2.metrics["makespan_s"]


def test_the_cluster_policy_refuses_the_mode(tmp_path):
    path = tmp_path / "g.pt"
    checkpoint.save(path, agents=global_agents(), extra={})
    weights, config = checkpoint.policy_arrays(path)       # what a launcher hands a site
    with pytest.raises(ValueError, match="comm 'global'"):
        NumpyPolicy(weights, config)
    # nor do its weights run under another comm (an up/replay config's comm: override)
    with pytest.raises(ValueError, match="peer inputs of width"):
        NumpyPolicy(weights, {**config, "comm": "trigger"})
    from agora.deploy.up_config import COMMS
    assert "global" not in COMMS


def test_no_mode_switches_into_or_out_of_global():
    with pytest.raises(ValueError, match="comm 'none'"):
        global_agents().policy(comm="none")
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="comm 'global'"):
        Agents(AgentConfig(k=4, hidden=32)).policy(comm="global")
