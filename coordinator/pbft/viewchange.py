"""View changes (Castro & Liskov, OSDI 1999, section 4.4), with signed messages.

A backup whose timer expires (a request it holds did not execute) or that sees the primary
equivocate *suspects* the primary: it says so in its STATUS and keeps working in its view. A
replica moves to view v+1 once f+1 replicas (itself included) suspect view v's primary or have
left view v (``Replica._check_suspicions``: a pre-vote, so one replica timing out alone on a
loaded machine does not leave the group's view for one of its own), or when it sees f+1
VIEW-CHANGE messages for higher views (then to the lowest view f+1 replicas are at): it stops
normal-case work and broadcasts a signed VIEW-CHANGE with its stable checkpoint proof and its
prepared certificates. The new
primary, with 2f+1 valid VIEW-CHANGEs for v+1, computes O (``compute_o``) and broadcasts a
signed NEW-VIEW; backups check every VIEW-CHANGE inside it, recompute O and refuse the
NEW-VIEW unless it matches. The timeout doubles with each consecutive view change that does
not lead to a newly executed request (up to ``max_backoff_exponent``); as in PBFT's liveness
rule (section 4.5), a replica's timer for view v+1 starts only once it holds 2f+1
VIEW-CHANGEs for v+1, so one replica cannot run ahead through views on its own.

Prepared certificates carry the PREPARE envelopes themselves, signed: a certificate needs 2f
prepares whose signatures verify (at least f of them from correct replicas, which with the
primary's pre-prepare is what the safety argument uses), and every replica judges a
certificate alike -- with MAC entries alone, one faulty backup could make a correct
replica's certificate unverifiable for the others (see ``auth``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agora.coordinator.pbft.checkpoint import _parse
from agora.coordinator.pbft.messages import (NULL_DIGEST, Broadcast, Send, batch_digest_of,
                                             request_digest, request_shape_ok)
from agora.protos.agora.v1.pbft_pb2 import (
    NewView,
    PbftEnvelope,
    PbftMessage,
    PreparedCert,
    PrePrepare,
    ViewChange,
)


@dataclass(frozen=True)
class NewViewPlan:
    """What a NEW-VIEW does: the checkpoint it starts from and the pre-prepares O."""
    min_s: int
    min_digest: bytes
    proof: tuple
    entries: tuple  # (seq, digest, requests) for seq in (min_s, max_s]


def compute_o(view_changes: list[ViewChange], batch_size: int) -> NewViewPlan:
    """O of PBFT: from the highest stable checkpoint in the view changes, for each later
    sequence number the batch of its highest-view prepared certificate, or a null request."""
    best = max(view_changes, key=lambda vc: (vc.stable_seq, vc.replica))
    min_s = best.stable_seq
    chosen: dict[int, PreparedCert] = {}
    for vc in view_changes:
        for cert in vc.prepared:
            if cert.seq <= min_s:
                continue
            cur = chosen.get(cert.seq)
            if cur is None or (cert.view, cur.digest) > (cur.view, cert.digest):
                chosen[cert.seq] = cert
    max_s = max(chosen, default=min_s)
    entries = []
    for seq in range(min_s + 1, max_s + 1):
        cert = chosen.get(seq)
        if cert is None:
            entries.append((seq, NULL_DIGEST, ()))
        else:
            entries.append((seq, cert.digest, tuple(cert.requests)))
    return NewViewPlan(min_s, best.stable_digest, tuple(best.checkpoint_proof), tuple(entries))


class ViewChangeMixin:
    """View-change half of Replica (shares its attributes)."""

    # ---- suspicion: a view is left when f+1 replicas suspect its primary ----

    def _suspect(self) -> None:
        """This replica suspects the primary (its request timer fired; the primary
        equivocated): it says so in a STATUS and moves to the next view only once f+1
        replicas suspect the same view (``_check_suspicions``) -- at least one of them
        correct. A pre-vote, as in Raft's: in PBFT as written, a backup that alone timed out
        (a loaded machine, a slow link) moved to view v+1 by itself and, since nobody
        followed, stayed out of the group's view until the group next changed view, so the
        group ran on 2f+1 of its 3f+1 replicas (seen in a 64-site replay, docs/coordinator.md).
        A faulty primary is still replaced: every correct backup holding a request it
        withholds times out, and 2f+1 > f. A replica changing view whose timer for the new
        view expires suspects that view's primary the same way (it does not deliver the
        NEW-VIEW) and waits in the view change, where its STATUS brings the NEW-VIEW from
        peers that installed it, until f+1 replicas suspect it too."""
        if not self.suspecting:
            self.counters["suspicions"] += 1
        self.suspecting = True
        self._broadcast_status()
        self._check_suspicions()

    def _withdraw_suspicion(self) -> None:
        if self.suspecting:
            self.suspecting = False
            self._broadcast_status()

    def _note_suspicion(self, j: int, view: int, suspects: bool) -> None:
        if suspects:
            self.suspicions[j] = (view, self.now)
            self._check_suspicions()
        else:                       # a withdrawal only lowers the count: nothing to check
            self.suspicions.pop(j, None)

    def _check_suspicions(self) -> None:
        """Move to the next view when f+1 replicas (this one included) suspect this view's
        primary now or have left this view. A peer's suspicion counts for one timeout after
        its last STATUS saying so (it repeats it every retransmission interval while it
        holds), so a suspicion whose withdrawal was lost does not add up with another one
        much later."""
        window, view = self._timeout(), self.view
        out = {j for j, (v, t) in self.suspicions.items() if v == view and self.now - t <= window}
        # a peer that sent a VIEW-CHANGE for a later view has left this one: it counts too
        # (one whose timer for the new view expired before the NEW-VIEW reached it is there)
        out.update(j for j, (vc, _) in self.vc_latest.items()
                   if j != self.index and vc.new_view > view)
        if len(out) + self.suspecting > self.f:
            self._start_view_change(self.view + 1)

    def _start_view_change(self, new_view: int) -> None:
        if new_view < self.view or (new_view == self.view and not self.active):
            return
        self.view, self.active = new_view, False
        self.suspecting = False
        self.counters["view_changes"] += 1
        self.storage.save_view(new_view, False)
        self.vc_deadline = None     # armed once 2f+1 VIEW-CHANGEs for new_view are in
        self._unqueue()
        self.new_view_env = None
        for slot in self.log.values():
            slot.votes_for(new_view)
        self._send_view_change()

    def _unqueue(self) -> None:
        """A primary leaving its view holds its queued requests like a backup."""
        for key, req in self.queue.items():
            held = self.pending.get(key[0])
            if held is None or held.timestamp < req.timestamp:
                self.pending[key[0]] = req
        self.queue.clear()
        self.queue_since = None
        self.in_flight.clear()

    def _send_view_change(self) -> None:
        new_view = self.view
        vc = ViewChange(new_view=new_view, replica=self.index, stable_seq=self.h,
                        stable_digest=self.stable_digest, checkpoint_proof=self.stable_proof,
                        prepared=[self.log[s].cert for s in sorted(self.log)
                                  if s > self.h and self.log[s].cert is not None])
        env = self.auth.seal(PbftMessage(view_change=vc), sign=True)
        self.vc_latest[self.index] = (vc, env)
        self._out.append(Broadcast(env))
        self._try_new_view()

    def _vc_valid(self, vc: ViewChange, env: PbftEnvelope) -> bool:
        """Sender, signature, checkpoint proof and every prepared certificate. The signature
        is checked before the cache is asked, and the cache is keyed by sender and payload:
        a NEW-VIEW may carry VIEW-CHANGEs this replica never received on their own, and one
        whose signature was lifted from a genuine VIEW-CHANGE onto another payload must not
        pass for the genuine one (a faulty new primary could otherwise drop a committed
        request from O)."""
        if vc.replica != env.sender or not self.auth.signature_ok(env):
            return False
        key = env.sender.to_bytes(2, "big") + hashlib.sha256(env.payload).digest()
        if key in self._vc_cache:
            return True
        cfg = self.config
        if not self._proof_ok(vc.stable_seq, vc.stable_digest, vc.checkpoint_proof):
            return False
        seqs = set()
        for cert in vc.prepared:
            if (cert.seq in seqs or not vc.stable_seq < cert.seq <= vc.stable_seq + cfg.watermark_window
                    or not 0 <= cert.view < vc.new_view or not self._cert_ok(cert)):
                return False
            seqs.add(cert.seq)
        if len(self._vc_cache) > 4096:
            self._vc_cache.clear()
        self._vc_cache[key] = True
        return True

    def _cert_ok(self, cert: PreparedCert) -> bool:
        if (len(cert.requests) > self.config.batch_size
                or not all(request_shape_ok(r) for r in cert.requests)):
            return False
        if batch_digest_of([request_digest(r) for r in cert.requests]) != cert.digest:
            return False
        primary = self.config.primary(cert.view)
        seen = set()
        for env in cert.prepares:
            s = env.sender
            if s == primary or s in seen or not self.auth.signature_ok(env):
                continue
            msg = _parse(env.payload)
            if msg is None or msg.WhichOneof("kind") != "prepare":
                continue
            p = msg.prepare
            if (p.view, p.seq, p.digest, p.replica) == (cert.view, cert.seq, cert.digest, s):
                seen.add(s)
        return len(seen) >= self.prepare_quorum

    def _on_view_change(self, vc: ViewChange, env: PbftEnvelope) -> None:
        sender = env.sender
        if vc.replica != sender:
            self._reject("bad_sender")
            return
        if vc.new_view > self.view + self.config.max_view_ahead:
            self._reject("inflated_view")
            return
        prev = self.vc_latest.get(sender)
        if prev is not None and prev[0].new_view >= vc.new_view:
            return
        if vc.new_view < self.view:
            return
        if not self.auth.signature_ok(env):
            self._reject("bad_signature")
            return
        if not self._vc_valid(vc, env):
            self._reject("bad_view_change")
            return
        self.vc_latest[sender] = (vc, env)
        higher = sorted((v.new_view for r, (v, _) in self.vc_latest.items()
                         if r != self.index and v.new_view > self.view), reverse=True)
        if len(higher) > self.f:
            self._start_view_change(higher[self.f])
        else:
            self._check_suspicions()
        if not self.active and vc.new_view == self.view:
            self._try_new_view()

    def _try_new_view(self) -> None:
        if self.active or self.config.primary(self.view) != self.index:
            return
        vcs = [(vc, env) for r, (vc, env) in sorted(self.vc_latest.items(), key=lambda kv: kv[0])
               if vc.new_view == self.view]
        if len(vcs) < self.config.quorum:
            return
        vcs = vcs[:self.config.quorum]
        plan = compute_o([vc for vc, _ in vcs], self.config.batch_size)
        nv = NewView(view=self.view, view_changes=[env for _, env in vcs], pre_prepares=[
            PrePrepare(view=self.view, seq=seq, digest=d, requests=reqs)
            for seq, d, reqs in plan.entries])
        env = self.auth.seal(PbftMessage(new_view=nv), sign=True)
        self._out.append(Broadcast(env))
        self._enter_view(nv, env, plan)

    def _on_new_view(self, nv: NewView, env: PbftEnvelope) -> None:
        if env.sender != self.config.primary(nv.view):
            self._reject("not_primary")
            return
        if nv.view < self.view or (nv.view == self.view and self.active):
            return
        if nv.view > self.view + self.config.max_view_ahead:
            self._reject("inflated_view")
            return
        if not self.auth.signature_ok(env):
            self._reject("bad_signature")
            return
        plan = self._check_new_view(nv)
        if plan is None:
            self._reject("bad_new_view")
            return
        self._enter_view(nv, env, plan)

    def _check_new_view(self, nv: NewView) -> NewViewPlan | None:
        vcs, senders = [], set()
        for e in nv.view_changes:
            msg = _parse(e.payload)
            if msg is None or msg.WhichOneof("kind") != "view_change":
                return None
            vc = msg.view_change
            if vc.new_view != nv.view or e.sender in senders or not self._vc_valid(vc, e):
                return None
            senders.add(e.sender)
            vcs.append(vc)
        if len(vcs) < self.config.quorum:
            return None
        plan = compute_o(vcs, self.config.batch_size)
        if len(plan.entries) != len(nv.pre_prepares):
            return None
        for (seq, digest, _), pp in zip(plan.entries, nv.pre_prepares):
            if pp.view != nv.view or pp.seq != seq or pp.digest != digest:
                return None
            if not all(request_shape_ok(r) for r in pp.requests):
                return None
            ds = [request_digest(r) for r in pp.requests]
            if batch_digest_of(ds) != digest:
                return None
            # no client signature is checked again: the digest is certified (2f+1 replicas
            # accepted these requests, f+1 of them correct); a backup that has not yet
            # executed a site's admission refused every correct NEW-VIEW carrying the site's
            # first request (a review). Execution still judges a governed client's key.
            if any(r.read_only for r in pp.requests):
                return None
        return plan

    def _enter_view(self, nv: NewView, env: PbftEnvelope, plan: NewViewPlan) -> None:
        """Install view ``nv.view``: move the water marks to O's checkpoint, adopt O."""
        self._unqueue()
        self.view, self.active = nv.view, True
        self._withdraw_suspicion()
        self.storage.save_view(nv.view, True)
        self.storage.save_new_view(nv.view, env.SerializeToString())
        self.new_view_env = env
        self.vc_deadline = None
        # a STATUS in the new view: peers then resend what they ordered in it past O (a probe:
        # a primary restarted by its keeper took the NEW-VIEW relayed to it and stayed 5
        # behind for as long as no request came)
        self.announce = True
        self._view_installed()
        if plan.min_s > self.h:
            own = self.own_checkpoints.get(plan.min_s)
            if own is not None and own[0] == plan.min_digest:
                self._make_stable(plan.min_s, plan.min_digest, list(plan.proof))
            else:
                self.h, self.stable_digest = plan.min_s, plan.min_digest
                self.stable_proof = list(plan.proof)
                self._forget_below(plan.min_s)
                self._begin_fetch(plan.min_s, plan.min_digest,
                                  sorted({e.sender for e in plan.proof}))
        max_s = plan.entries[-1][0] if plan.entries else plan.min_s
        for seq in [s for s, slot in self.log.items() if s > max_s and not slot.committed]:
            del self.log[seq]
        for slot in self.log.values():
            slot.votes_for(nv.view)
        for pp in nv.pre_prepares:
            if pp.seq > self.h:   # O may start below a checkpoint this replica holds stable
                self._accept_pre_prepare(pp, None)
        self._forget_unexecutable()
        if self.index == self.config.primary(nv.view):
            self.next_seq = max(max_s, self.h, self.last_executed) + 1
            self.in_flight = {(r.client_id, r.timestamp) for s, slot in self.log.items()
                              if s > self.last_executed for r in slot.requests}
            for cid, req in self.pending.items():
                key = (cid, req.timestamp)
                if key not in self.in_flight:
                    self.queue[key] = req
            self.pending.clear()
            if self.queue:
                self.queue_since = self.now
        else:
            primary = self.config.primary(nv.view)
            for req in self.pending.values():
                self._out.append(Send(primary, PbftEnvelope(
                    sender=self.index, payload=PbftMessage(request=req).SerializeToString())))
