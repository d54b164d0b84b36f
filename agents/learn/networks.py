"""The site agent's actor-critic, one set of weights shared by every site (no per-site
parameters: a checkpoint runs on any number of sites).

**Actor** (a pointer network over a variable-size set; Vinyals et al., arXiv 1506.03134):
every candidate slot is encoded by the same MLP, the agent's context is its own features +
a mean over its valid slots + what it heard from its peers, and a slot's
score is an additive-attention compatibility ``v · tanh(W e_slot + U ctx)``. A learned
"pass" score joins the slot scores, so the actor's output is ``k + 1`` logits of which masked
slots are ``-inf`` (they never get a bid, whatever the weights). ``k`` is a window size, not
an output width: the same weights score any number of slots.

**Peer attention** (TarMAC, Das et al., ICML 2019, arXiv 1810.11187): each peer's latest
received code gives a key and a value; the agent's query comes from its own encoding; a
softmax over the peers that have ever sent (itself excluded) gives the message context.
Under ``comm: "global"`` (``global_state``, simulation only) a peer's "code" is its exact
local state: the caller builds the model with ``code_dim = LOCAL_DIM``.

**Critic** (MAPPO, Yu et al., arXiv 2103.01955): a value from a centralised summary of the
whole system (``agents.engine.simulation.STATE_FEATURES``, known only in training: the
simulation engine computes it) together with the agent's own context, one scalar per agent;
``central_critic=False`` withholds the summary (an independent-PPO critic). Acting needs
only the actor: ``agents.step.policy.NumpyPolicy`` runs it without torch.

**Job graphs** (``graph=True``; Decima, Mao et al., SIGCOMM 2019, §5.1): a slot's row goes
on with its job's DAG around the candidate (``agents.step.job_graph``). Node embeddings pass
messages from children to parents, ``e_v = h(x_v) + g(Σ_children f(e_u))``, one step more than
the longest path among the kept nodes (then every embedding is final), for the valid slots
only (the others' are zero); the candidate's own embedding and
the sum over its job's nodes (Decima's per-job summary) join the slot's encoding through one
layer (``mix``); the mean over the slots (``pooled``, below) is the global summary.

Parameter sharing: one set of weights for all sites, which tell themselves apart by their
own features only -- no per-site parameters -- so a policy runs on any number of sites.
``get_weights``/``set_weights`` give every tensor (actor, critic, codec) as a list of numpy
arrays in a fixed order, for federated averaging.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agora.agents.step.job_graph import GRAPH_NODE_FEATURES, path_steps, split

NEG = -1e9


class JobGraph(nn.Module):
    """Message passing over each valid slot's job graph (module docstring) -> the
    candidate's embedding and its job's summary, (B, k, h) each (zero for invalid slots)."""

    def __init__(self, h: int) -> None:
        super().__init__()
        self.node = nn.Sequential(nn.Linear(len(GRAPH_NODE_FEATURES), h), nn.ReLU())
        self.f = nn.Sequential(nn.Linear(h, h), nn.ReLU())
        self.g = nn.Sequential(nn.Linear(h, h), nn.ReLU())

    def forward(self, columns: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = mask.nonzero(as_tuple=True)
        x, adj = split(columns[idx])                                     # (N,M,F), (N,M,M)
        present = x[..., :1]
        base = self.node(x) * present
        e = base
        for _ in range(path_steps(adj.detach().cpu().numpy())):   # data, not weights
            e = base + self.g(adj @ self.f(e)) * present
        h = base.shape[-1]
        zero = columns.new_zeros((*mask.shape, h))
        return zero.index_put(idx, e[:, 0, :]), zero.index_put(idx, e.sum(-2))


class ActorCritic(nn.Module):
    def __init__(self, *, slot_dim: int, own_dim: int, state_dim: int, code_dim: int,
                 hidden: int = 64, central_critic: bool = True, graph: bool = False) -> None:
        super().__init__()
        h = hidden
        self.central_critic = central_critic
        self.slot_dim = slot_dim
        """the slot's own features; with ``graph``, its job graph's columns follow"""
        self.slot_enc = nn.Sequential(nn.Linear(slot_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.own_enc = nn.Sequential(nn.Linear(own_dim, h), nn.ReLU())
        self.q = nn.Linear(h, h)
        self.k = nn.Linear(code_dim, h)
        self.v = nn.Linear(code_dim, h)
        self.ctx = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU())
        self.w_slot = nn.Linear(h, h, bias=False)
        self.w_ctx = nn.Linear(h, h)
        self.ptr = nn.Linear(h, 1, bias=False)
        self.pass_head = nn.Linear(h, 1)
        self.critic = nn.Sequential(nn.Linear(state_dim + h, h), nn.ReLU(), nn.Linear(h, h),
                                    nn.ReLU(), nn.Linear(h, 1))
        self.scale = h ** -0.5
        self.graph = JobGraph(h) if graph else None
        self.mix = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU()) if graph else None

    def forward(self, slots: torch.Tensor, mask: torch.Tensor, own: torch.Tensor,
                peer_codes: torch.Tensor, peer_mask: torch.Tensor,
                state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """slots (B,k,F), mask (B,k) bool, own (B,G), peer_codes (B,S,Z), peer_mask (B,S)
        bool, state (B,D) -> logits (B,k+1) (pass last), value (B,)."""
        e = self.slot_enc(slots[..., :self.slot_dim])                      # (B,k,h)
        if self.graph is not None:
            own_node, job = self.graph(slots[..., self.slot_dim:], mask)
            e = self.mix(torch.cat([e, own_node, job], -1))
        m = mask.unsqueeze(-1).float()
        pooled = (e * m).sum(1) / m.sum(1).clamp(min=1.0)
        o = self.own_enc(own)                                               # (B,h)
        att = (self.k(peer_codes) @ self.q(o).unsqueeze(-1)).squeeze(-1) * self.scale
        att = att.masked_fill(~peer_mask, NEG)
        w = torch.softmax(att, -1) * peer_mask.float()                      # 0 with no peers
        heard = (w.unsqueeze(-1) * self.v(peer_codes)).sum(1)
        c = self.ctx(torch.cat([o, pooled, heard], -1))
        s = self.ptr(torch.tanh(self.w_slot(e) + self.w_ctx(c).unsqueeze(1))).squeeze(-1)
        s = s.masked_fill(~mask, NEG)
        logits = torch.cat([s, self.pass_head(c)], -1)
        if not self.central_critic:               # decentralised: own context only
            state = torch.zeros_like(state)
        value = self.critic(torch.cat([state, c], -1)).squeeze(-1)
        return logits, value


def get_weights(modules: list[nn.Module]) -> list[np.ndarray]:
    """Every parameter and buffer of ``modules`` (actor-critic, codec), in state_dict order."""
    return [t.detach().cpu().numpy().copy() for m in modules for t in m.state_dict().values()]


def set_weights(modules: list[nn.Module], weights: list[np.ndarray]) -> None:
    """Inverse of ``get_weights``; the error names the first tensor whose shape differs."""
    names = [(m, n, t) for m in modules for n, t in m.state_dict().items()]
    if len(names) != len(weights):
        raise ValueError(f"set_weights: got {len(weights)} arrays, the model has {len(names)}")
    for (m, n, t), w in zip(names, weights):
        if tuple(t.shape) != tuple(np.shape(w)):
            raise ValueError(f"set_weights: {type(m).__name__}.{n} has shape {tuple(t.shape)}, "
                             f"got {tuple(np.shape(w))}")
    it = iter(weights)
    for m in modules:
        m.load_state_dict({n: torch.as_tensor(next(it)) for n in m.state_dict()})
