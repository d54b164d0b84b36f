"""Byzantine behaviours for SimNet: hooks around one replica node's traffic.

A behaviour has ``outgoing(node, actions, now) -> actions`` (rewrite what the replica sends;
it may use the node's own keys, ``node.replica.auth``, as a real faulty replica could) and
``incoming(node, env, now) -> env | None`` (drop or alter what it receives). Each draws from
its own ``random.Random(seed)``. ``BEHAVIOURS`` names them for the explorer and the bench.
"""

from __future__ import annotations

import hashlib
import random

from agora.coordinator.pbft.checkpoint import _parse
from agora.coordinator.pbft.messages import Broadcast, Send, batch_digest
from agora.protos.agora.v1.pbft_pb2 import (NewView, PbftEnvelope, PbftMessage, PbftStatus,
                                            PrePrepare, ViewChange)


class Behaviour:
    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def outgoing(self, node, actions, now):
        return actions

    def incoming(self, node, env, now):
        return env

    @staticmethod
    def envelopes(actions):
        for a in actions:
            if isinstance(a, (Send, Broadcast)):
                yield a, a.msg, _parse(a.msg.payload)


class Silent(Behaviour):
    """Sends nothing (a silent primary or backup); still receives."""

    def outgoing(self, node, actions, now):
        return []


class Equivocate(Behaviour):
    """As primary, sends one pre-prepare to a random part of the backups and a different
    batch (one request fewer, or a null request) for the same (view, seq) to the rest."""

    def outgoing(self, node, actions, now):
        out = []
        for a, env, msg in self.envelopes(actions):
            if not isinstance(a, Broadcast) or msg is None or msg.WhichOneof("kind") != "pre_prepare":
                out.append(a)
                continue
            pp = msg.pre_prepare
            reqs = list(pp.requests)[:-1]
            alt = PrePrepare(view=pp.view, seq=pp.seq, digest=batch_digest(reqs), requests=reqs)
            alt_env = node.replica.auth.seal(PbftMessage(pre_prepare=alt))
            others = [i for i in range(node.replica.n) if i != node.index]
            split = self.rng.randrange(1, len(others)) if len(others) > 1 else 1
            self.rng.shuffle(others)
            for k, i in enumerate(others):
                out.append(Send(i, env if k < split else alt_env))
        out.extend(a for a in actions if not isinstance(a, (Send, Broadcast)))
        return out


class DoubleVote(Behaviour):
    """Every PREPARE / COMMIT is followed by a second one for another digest."""

    def outgoing(self, node, actions, now):
        out = list(actions)
        for a, env, msg in self.envelopes(actions):
            kind = msg.WhichOneof("kind") if msg is not None else None
            if kind in ("prepare", "commit"):
                vote = getattr(msg, kind)
                vote.digest = hashlib.sha256(vote.digest).digest()
                out.append(Broadcast(node.replica.auth.seal(msg)))
        return out


class ForgeAuth(Behaviour):
    """Sends corrupted copies of everything: a flipped MAC vector, a broken signature, and
    the same payload claiming another replica as its sender. Its honest traffic is dropped,
    so the replica counts as silent plus forger."""

    def outgoing(self, node, actions, now):
        out = []
        for a, env, msg in self.envelopes(actions):
            bad = PbftEnvelope()
            bad.CopyFrom(env)
            bad.macs[:] = [bytes(b ^ 0x55 for b in m) for m in env.macs]
            if env.signature:
                bad.signature = bytes(b ^ 0x55 for b in env.signature)
            imp = PbftEnvelope()
            imp.CopyFrom(env)
            imp.sender = (env.sender + 1) % node.replica.n
            out += [Broadcast(bad), Broadcast(imp)]
        return out


class Replay(Behaviour):
    """Behaves, and also re-sends random old envelopes it sent or received."""

    def __init__(self, seed: int = 0, per_step: int = 2):
        super().__init__(seed)
        self.history: list[PbftEnvelope] = []
        self.per_step = per_step

    def incoming(self, node, env, now):
        if len(self.history) < 400:
            self.history.append(env)
        return env

    def outgoing(self, node, actions, now):
        out = list(actions)
        for _, env, _ in self.envelopes(actions):
            if len(self.history) < 400:
                self.history.append(env)
        for _ in range(self.per_step if self.history and self.rng.random() < 0.3 else 0):
            out.append(Broadcast(self.rng.choice(self.history)))
        return out


class _Mutate(Behaviour):
    """Re-seals some outgoing messages after ``mutate(node, kind, body)`` (None: leave)."""

    kinds: tuple[str, ...] = ()
    keep_original = False

    def mutate(self, node, kind, body) -> bool:
        raise NotImplementedError

    def outgoing(self, node, actions, now):
        out = []
        for a in actions:
            msg = _parse(a.msg.payload) if isinstance(a, (Send, Broadcast)) else None
            kind = msg.WhichOneof("kind") if msg is not None else None
            if kind not in self.kinds or not self.mutate(node, kind, getattr(msg, kind)):
                out.append(a)
                continue
            if self.keep_original:
                out.append(a)
            env = node.replica.auth.seal(msg, sign=bool(a.msg.signature))
            out.append(Broadcast(env) if isinstance(a, Broadcast) else Send(a.to, env))
        return out


class WrongDigest(_Mutate):
    """Pre-prepares, prepares and commits carry a digest that matches no batch."""

    kinds = ("pre_prepare", "prepare", "commit")

    def mutate(self, node, kind, body):
        body.digest = hashlib.sha256(b"wrong" + body.digest).digest()
        return True


class OutOfWatermarks(_Mutate):
    """Pre-prepares and votes for sequence numbers beyond the high water mark (and 0)."""

    kinds = ("pre_prepare", "prepare", "commit")
    keep_original = True

    def mutate(self, node, kind, body):
        r = node.replica
        body.seq = 0 if self.rng.random() < 0.3 else r.h + r.config.watermark_window + 1 + self.rng.randrange(5)
        return True


class InflatedView(Behaviour):
    """Behaves, and adds a VIEW-CHANGE and votes for a far higher view."""

    def outgoing(self, node, actions, now):
        out = list(actions)
        r = node.replica
        for a, env, msg in list(self.envelopes(actions)):
            kind = msg.WhichOneof("kind") if msg is not None else None
            if kind in ("prepare", "commit"):
                getattr(msg, kind).view += 10**6
                out.append(Broadcast(r.auth.seal(msg)))
        if self.rng.random() < 0.3:
            for jump in (10**6, r.config.max_view_ahead // 2):
                vc = ViewChange(new_view=r.view + jump, replica=r.index, stable_seq=r.h,
                                stable_digest=r.stable_digest, checkpoint_proof=r.stable_proof)
                out.append(Broadcast(r.auth.seal(PbftMessage(view_change=vc), sign=True)))
        return out


class BogusNewView(Behaviour):
    """Behaves, and now and then sends a signed NEW-VIEW for a view it would lead without
    2f+1 view changes behind it (its own VIEW-CHANGE repeated) and a made-up O."""

    def outgoing(self, node, actions, now):
        out = list(actions)
        r = node.replica
        if self.rng.random() < 0.2:
            view = r.view + 1
            while r.config.primary(view) != r.index:
                view += 1
            vc = ViewChange(new_view=view, replica=r.index, stable_seq=r.h,
                            stable_digest=r.stable_digest, checkpoint_proof=r.stable_proof)
            vc_env = r.auth.seal(PbftMessage(view_change=vc), sign=True)
            fake = PrePrepare(view=view, seq=r.h + 1, digest=batch_digest([]), requests=[])
            nv = NewView(view=view, view_changes=[vc_env] * r.config.quorum,
                         pre_prepares=[fake])
            out.append(Broadcast(r.auth.seal(PbftMessage(new_view=nv), sign=True)))
            nv2 = NewView(view=view, view_changes=[vc_env], pre_prepares=[])
            out.append(Broadcast(r.auth.seal(PbftMessage(new_view=nv2), sign=True)))
        return out


class Censor(Behaviour):
    """Drops every request of one client (directly sent or forwarded), as a primary that
    censors it would."""

    def __init__(self, seed: int = 0, client_id: str = "c0"):
        super().__init__(seed)
        self.client_id = client_id

    def incoming(self, node, env, now):
        msg = _parse(env.payload)
        if (msg is not None and msg.WhichOneof("kind") == "request"
                and msg.request.client_id == self.client_id):
            return None
        return env


class InflatedStatus(Behaviour):
    """Behaves, and its STATUS messages claim it executed a million sequence numbers more
    than it did (to hold correct backups' request timers back: ``CheckpointMixin._behind_group``)."""

    def outgoing(self, node, actions, now):
        out = []
        for a in actions:
            msg = _parse(a.msg.payload) if isinstance(a, (Send, Broadcast)) else None
            if msg is not None and msg.WhichOneof("kind") == "status":
                msg.status.last_executed += 10**6
                env = node.replica.auth.seal(msg)
                a = Broadcast(env) if isinstance(a, Broadcast) else Send(a.to, env)
            out.append(a)
        if self.rng.random() < 0.3:      # and unasked, now and then
            r = node.replica
            out.append(Broadcast(r.auth.seal(PbftMessage(status=PbftStatus(
                view=r.view, view_active=r.active, last_executed=r.last_executed + 10**6,
                stable_seq=r.h, replica=r.index)))))
        return out


class GapThenStall(Behaviour):
    """At sequence number ``s`` its PRE-PREPARE checks out (MACs) at all but the replicas of
    ``pp_bad`` and its COMMIT at none of ``commit_bad``, so one correct replica may execute
    ``s`` while others never can; then it proposes nothing more and stays out of view
    changes. Unset, ``s`` is drawn from 1-3, ``commit_bad`` is every replica but one other,
    and ``pp_bad`` one of those. (A review's attack on the request timer's hold-back,
    2026-12-02: ``CheckpointMixin._behind_group``.)"""

    def __init__(self, seed: int = 0, s: int | None = None, pp_bad: list[int] | None = None,
                 commit_bad: list[int] | None = None):
        super().__init__(seed)
        self.s = self.rng.randint(1, 3) if s is None else s
        self.pp_bad, self.commit_bad = pp_bad, commit_bad

    @staticmethod
    def _corrupt(env: PbftEnvelope, bad: list[int]) -> PbftEnvelope:
        out = PbftEnvelope()
        out.CopyFrom(env)
        macs = list(out.macs)
        for i in bad:
            if 0 <= i < len(macs):
                macs[i] = b"\0" * len(macs[i])
        out.macs[:] = macs
        return out

    def outgoing(self, node, actions, now):
        if self.commit_bad is None:
            r = node.replica
            others = [i for i in range(r.n) if i != r.index]
            self.rng.shuffle(others)
            self.commit_bad = others[1:]
            self.pp_bad = others[-1:] if self.pp_bad is None else self.pp_bad
        out = [a for a in actions if not isinstance(a, (Send, Broadcast))]
        for a, env, msg in self.envelopes(actions):
            kind = msg.WhichOneof("kind") if msg is not None else None
            if kind == "pre_prepare":
                if msg.pre_prepare.seq > self.s:
                    continue                       # then stalls
                if msg.pre_prepare.seq == self.s:
                    env = self._corrupt(env, self.pp_bad or [])
            elif kind == "commit" and msg.commit.seq == self.s:
                env = self._corrupt(env, self.commit_bad)
            elif kind in ("view_change", "new_view"):
                continue                           # and stays out of view changes
            out.append(Broadcast(env) if isinstance(a, Broadcast) else Send(a.to, env))
        return out


BEHAVIOURS = {
    "silent": Silent, "equivocate": Equivocate, "double_vote": DoubleVote,
    "forge": ForgeAuth, "replay": Replay, "wrong_digest": WrongDigest,
    "out_of_watermarks": OutOfWatermarks, "inflated_view": InflatedView,
    "bogus_new_view": BogusNewView, "censor": Censor, "inflated_status": InflatedStatus,
    "gap_then_stall": GapThenStall,
}
