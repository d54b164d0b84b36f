"""The acting half of a site agent's policy in numpy: the actor (a pointer network with
TarMAC attention over peers' codes; ``agents.learn.networks.ActorCritic`` is its training
twin in torch), the message encoder (the codec's VAE encoder), and the turn of a ranking
into bids. A site agent runs this with no torch in its process (a fraction of the memory);
``agents/learn`` exports it from a checkpoint (``export_policy``), and a test holds the two
forwards equal.

**The multi-bid action.** An agent's logits are ``k + 1`` scores (slot scores, then "pass";
masked slots score -1e9). Sorting them, after i.i.d. Gumbel noise when sampling, gives a
Plackett-Luce ranking (Kool et al., ICML 2019, arXiv 1903.06059); ``plen`` is the position of
"pass" + 1. Every valid slot bids for its open instances -- as many as the site's free
resources hold together with the bids ranked before it -- at a price that falls with its
position p: ``price_of(2(k + 1) − p)`` before "pass" (the *preferred* tier), ``price_of(k +
1 − p)`` after it (the *reluctant* tier, below every preferred bid of any site). So the
ranking orders the whole round (the clearing serves higher prices first), and "pass" says
*I'd rather another site took what follows* without ever stalling work only this site can
run: the round stays work-conserving.
"""

from __future__ import annotations

import numpy as np

from agora.agents.market import Offer, price_of
from agora.agents.step.codes import dequantise, quantise
from agora.agents.step.job_graph import path_steps, split
from agora.agents.step.neighbours import DEFAULT_PEERS

NEG = -1e9


def sample_orders(logits: np.ndarray, valid: np.ndarray, rng: np.random.Generator | None,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """logits (S, k+1), valid (S, k+1) bool (pass always valid) -> order (S, k+1) item
    indices, valid ones first by descending perturbed score; plen (S,) = position of pass + 1.
    ``rng=None`` is the greedy ranking (no noise)."""
    x = np.where(valid, logits, -np.inf)
    if rng is not None:
        x = x + rng.gumbel(size=x.shape)
        x = np.where(valid, x, -np.inf)
    order = np.argsort(-x, axis=1, kind="stable")
    plen = np.argmax(order == logits.shape[1] - 1, axis=1) + 1
    return order.astype(np.int64), plen.astype(np.int64)


def teacher_orders(keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A heuristic's ranking: valid slots by ascending ``keys`` (S, k), then pass."""
    s, k = keys.shape
    x = np.where(valid[:, :k], keys, np.inf)
    slot_order = np.argsort(x, axis=1, kind="stable")
    nv = valid[:, :k].sum(axis=1)
    order = np.empty((s, k + 1), dtype=np.int64)
    for i in range(s):
        order[i, :nv[i]] = slot_order[i, :nv[i]]
        order[i, nv[i]] = k
        order[i, nv[i] + 1:] = slot_order[i, nv[i]:]
    return order, nv + 1


def log_prob_np(logits: np.ndarray, order: np.ndarray, plen: np.ndarray) -> np.ndarray:
    """Plackett-Luce log-probability of the prefix ``order[:, :plen]`` (S,)."""
    s = np.take_along_axis(logits.astype(np.float64), order, axis=1)
    suffix = np.logaddexp.accumulate(s[:, ::-1], axis=1)[:, ::-1]
    keep = np.arange(order.shape[1])[None, :] < plen[:, None]
    return ((s - suffix) * keep).sum(axis=1)


def bid_price(pos: int, plen: int, k: int) -> int:
    """The price of the slot at position ``pos`` of a ranking whose "pass" is at ``plen - 1``
    (module docstring: the preferred tier above every reluctant one)."""
    return price_of(2 * (k + 1) - pos if pos < plen else k + 1 - pos)


def offers_of(window: list, order: np.ndarray, plen: int, mask: np.ndarray, k: int,
              free: tuple[int, int, int]) -> list[Offer]:
    """One site's bids from its ranking: every valid slot, in ranking order, for as many of
    its open instances as the site's free resources still hold (``free``: milli-cpu, MiB,
    milli-gpu over its alive nodes), so no bid asks for more than the site has."""
    left = list(free)
    out = []
    for pos, item in enumerate(order):
        if item == k or not mask[item]:
            continue
        t = window[item]
        d = t.demand
        n = t.open
        for r, need in enumerate((d.cpu, d.mem, d.gpu)):
            if need > 0:
                n = min(n, left[r] // need)
        if n <= 0:
            continue
        left[0] -= n * d.cpu
        left[1] -= n * d.mem
        left[2] -= n * d.gpu
        out.append(Offer(t.job.job.id, t.task.id, int(n), bid_price(pos, int(plen), k)))
    return out


COMPETENCE_BOUNDS = ("max_choices", "max_open")
"""the bounds of a policy's competence (``agents.learn.competence``), each optional"""


def is_competence_bound(v) -> bool:
    """A bound of a policy's competence (``COMPETENCE_BOUNDS``): a whole number >= 1."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class NumpyPolicy:
    """The actor and the message encoder from exported weights (``weights``: the torch
    state_dict arrays, keys ``model.<name>`` and ``codec.<name>``; ``config``: the
    ``AgentConfig`` fields). It runs the modes a site can run, ``COMMS``: never
    ``global`` (every peer's exact state, a simulation-only experiment:
    ``agents.learn.global_state``)."""

    COMMS = ("trigger", "always", "none")

    def peer_width(self, config: dict) -> int:
        """The width of what the peer attention reads: a code of ``code_dim`` values."""
        return int(config["code_dim"])

    def __init__(self, weights: dict[str, np.ndarray], config: dict) -> None:
        if str(config["comm"]) not in self.COMMS:
            raise ValueError(f"comm {config['comm']!r}: this policy runs {', '.join(self.COMMS)}"
                             f" (comm 'global' is a simulation-only experiment, no site runs it)")
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        heard = self.w.get("model.k.weight")
        if heard is not None and heard.shape[1] != self.peer_width(config):
            raise ValueError(f"the weights attend over peer inputs of width {heard.shape[1]}, "
                             f"not {self.peer_width(config)} (codes of code_dim): a checkpoint "
                             f"trained with comm 'global' runs in the simulator only")
        self.config = dict(config)
        self.k = int(config["k"])
        self.bits = int(config["bits"])
        self.code_dim = int(config["code_dim"])
        self.threshold = float(config["threshold"])
        self.comm = str(config["comm"])
        self.peers = int(config.get("peers", DEFAULT_PEERS))
        """sites each agent listens to at most (``neighbours``; checkpoints from before it
        existed listen to DEFAULT_PEERS)"""
        self.scale = np.float32(int(config["hidden"]) ** -0.5)
        self.graph = config.get("encoder", "mlp") == "graph"
        """the slots carry job graphs (``job_graph``), read by the graph encoder"""
        self.slot_dim = self.w["model.slot_enc.0.weight"].shape[1] \
            if "model.slot_enc.0.weight" in self.w else None
        for name in COMPETENCE_BOUNDS:
            v = config.get(name)
            if v is not None and not is_competence_bound(v):
                raise ValueError(f"{name}: got {v!r}; expected a whole number >= 1 or None")
        self.max_choices: int | None = config.get("max_choices")
        """the most candidates a window may hold for this policy to rank it when acting
        greedily; a wider window is ranked by its teacher (``agents.learn.competence``).
        None: always the policy's own ranking (training, checkpoints without a measure)"""
        self.max_open: int | None = config.get("max_open")
        """the most open tasks the pool may hold for this policy to rank when acting greedily;
        with more, every site ranks by its teacher (``agents.learn.competence``). None: no
        bound (training, checkpoints measured before it existed)"""

    def _lin(self, x: np.ndarray, name: str, bias: bool = True) -> np.ndarray:
        y = x @ self.w[f"model.{name}.weight"].T
        return y + self.w[f"model.{name}.bias"] if bias else y

    def logits(self, slots: np.ndarray, mask: np.ndarray, own: np.ndarray,
               peer_codes: np.ndarray, peer_mask: np.ndarray) -> np.ndarray:
        """slots (B,k,F), mask (B,k) bool, own (B,G), peer_codes (B,S,Z) int8, peer_mask
        (B,S) bool -> logits (B, k+1), pass last."""
        pc = self.peer_inputs(peer_codes)
        own_slots = slots[..., :self.slot_dim] if self.graph else slots
        e = _relu(self._lin(_relu(self._lin(own_slots, "slot_enc.0")), "slot_enc.2"))
        if self.graph:
            graph = self._job_graph(slots[..., self.slot_dim:], mask)
            e = _relu(self._lin(np.concatenate([e, *graph], -1), "mix.0"))
        m = mask[..., None].astype(np.float32)
        pooled = (e * m).sum(1) / np.maximum(m.sum(1), 1.0)
        o = _relu(self._lin(own, "own_enc.0"))
        q = self._lin(o, "q")
        keys, vals = self._lin(pc, "k"), self._lin(pc, "v")
        att = np.einsum("bsh,bh->bs", keys, q) * self.scale
        att = np.where(peer_mask, att, NEG)
        att = att - att.max(axis=1, keepdims=True)
        w = np.exp(att)
        w = w / w.sum(axis=1, keepdims=True) * peer_mask
        heard = np.einsum("bs,bsh->bh", w, vals)
        c = _relu(self._lin(np.concatenate([o, pooled, heard], -1), "ctx.0"))
        h = np.tanh(self._lin(e, "w_slot", bias=False) + self._lin(c, "w_ctx")[:, None, :])
        s = (h @ self.w["model.ptr.weight"].T)[..., 0]
        s = np.where(mask, s, NEG)
        return np.concatenate([s, self._lin(c, "pass_head")], -1).astype(np.float32)

    def _job_graph(self, columns: np.ndarray, mask: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """``networks.JobGraph``'s forward: the candidate's embedding, its job's summary,
        for the valid slots (zero for the others)."""
        x, adj = split(columns[mask])
        present = x[..., :1]
        base = _relu(self._lin(x, "graph.node.0")) * present
        e = base
        for _ in range(path_steps(adj)):
            e = base + _relu(self._lin(adj @ _relu(self._lin(e, "graph.f.0")), "graph.g.0")) \
                * present
        node = np.zeros((*mask.shape, base.shape[-1]), np.float32)
        job = np.zeros_like(node)
        node[mask], job[mask] = e[:, 0, :], e.sum(-2)
        return node, job

    def peer_inputs(self, peer_codes: np.ndarray) -> np.ndarray:
        """What attention reads of the peers' messages: the dequantised wire codes."""
        return dequantise(peer_codes, self.bits)

    def encode(self, local: np.ndarray) -> np.ndarray:
        """Local states (B, LOCAL_DIM) -> wire codes (B, code_dim) int8."""
        w = self.w
        h = _relu(local @ w["codec.enc.0.weight"].T + w["codec.enc.0.bias"])
        out = h @ w["codec.enc.2.weight"].T + w["codec.enc.2.bias"]
        return quantise(out[:, :self.code_dim], self.bits)
