"""The normal case of PBFT (Castro & Liskov, OSDI 1999, sections 4.2 and 4.1): requests,
batching at the primary, PRE-PREPARE / PREPARE / COMMIT, and execution in sequence order
with the exactly-once reply table.

Batching: the primary queues valid requests and sends a pre-prepare at once when no batch is
in flight (a lone request waits for nobody), else when ``batch_size`` are queued or the
oldest has waited ``batch_timeout``, as long as fewer than ``max_outstanding`` batches are
assigned but not executed and the sequence number is within the high water mark.
A backup holds the requests it receives from a client (its view-change timer runs while it
holds one that has not executed) and forwards them to the primary at each retransmission
(``retransmit_interval``) until they execute -- not at once: a client sends each request to
the primary it believes in as well, so an immediate forward would only make the primary
receive and check every request twice.
"""

from __future__ import annotations

from agora.coordinator.pbft.log import Slot
from agora.coordinator.pbft.messages import (Broadcast, Reply, batch_digest_of, op_digest,
                                             op_key, request_digest, request_shape_ok,
                                             reuses_timestamp)
from agora.protos.agora.v1.pbft_pb2 import (
    Commit,
    PbftEnvelope,
    PbftMessage,
    PbftReply,
    PbftRequest,
    PreparedCert,
    PrePrepare,
    Prepare,
)

MAX_QUEUE = 65536
"""Most requests the primary queues; more are refused (clients retransmit)."""


class NormalCaseMixin:
    """Normal-case half of Replica (shares its attributes)."""

    # ---- requests ----

    def _on_request(self, req: PbftRequest, env: PbftEnvelope) -> None:
        if req.client_id not in self.auth.client_verify:
            self._reject("unknown_client")
            return
        if not self.auth.request_ok(req):
            self._reject("bad_signature")
            return
        cid, ts = req.client_id, req.timestamp
        if req.read_only:
            if env.sender == -1:
                self._reply(cid, ts, self.app.query(cid, req.op), req, read_only=True)
            return
        last = self.clients.get(cid)
        if last is not None and ts <= last[0]:
            if ts < last[0]:
                self._reject("stale_request")
            elif reuses_timestamp(last, ts, req.op):
                self._reject("reused_timestamp")    # not the executed request's reply
            else:
                self._reply(cid, ts, last[1], req)
            return
        if self.active and self._primary() == self.index:
            key = (cid, ts)
            if len(self.queue) >= MAX_QUEUE:
                self._reject("queue_full")
            elif key not in self.queue and key not in self.in_flight:
                self.queue[key] = req
                if self.queue_since is None:
                    self.queue_since = self.now
            return
        held = self.pending.get(cid)
        if held is None or held.timestamp < ts:
            self.pending[cid] = req
        # not forwarded now: the client sent it to the primary too (clients send to the
        # primary they believe in and f others); the retransmission timer forwards what is
        # still held (``_retransmit``), which covers a client that cannot reach the primary

    def _reply(self, client_id: str, ts: int, result: bytes, req: PbftRequest, *,
               read_only: bool = False) -> None:
        env = self.auth.to_client(PbftMessage(reply=PbftReply(
            view=self.view, timestamp=ts, client_id=client_id, replica=self.index,
            result=result, read_only=read_only)), client_id)
        if env is not None:
            # the request it answers goes with it: the host hands the reply to that request
            # only, not to another the client sent at the same timestamp (a probe)
            self._out.append(Reply(client_id, env, op_key(req)))

    def _can_propose(self) -> bool:
        return (self.active and self._primary() == self.index and self.fetch is None
                and self.next_seq <= self.h + self.config.watermark_window
                and self.next_seq - 1 - self.last_executed < self.config.max_outstanding)

    def _maybe_propose(self) -> None:
        cfg = self.config
        while self.queue and self._can_propose():
            # an idle pipeline proposes at once (a lone request waits for nobody); while
            # batches are in flight, requests gather until a batch is full or the oldest
            # has waited batch_timeout (Castro & Liskov's batching under load)
            idle = self.next_seq - 1 == self.last_executed
            if (not idle and len(self.queue) < cfg.batch_size
                    and self.now < self.queue_since + cfg.batch_timeout):
                return
            batch, size, cut = [], 0, False
            for key in list(self.queue):
                req = self.queue[key]
                last = self.clients.get(key[0])
                if (last is not None and key[1] <= last[0]) or key in self.in_flight:
                    del self.queue[key]
                    continue
                size += req.ByteSize()
                if batch and size > cfg.batch_bytes:
                    cut = True     # full by bytes: what is left has waited as long
                    break
                del self.queue[key]
                batch.append(req)
                self.in_flight.add(key)
                if len(batch) == cfg.batch_size:
                    break
            if not cut or not self.queue:
                self.queue_since = self.now if self.queue else None
            if batch:
                self._send_pre_prepare(batch)

    def _send_pre_prepare(self, batch: list[PbftRequest]) -> None:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        digest = batch_digest_of([request_digest(r) for r in batch])
        pp = PrePrepare(view=self.view, seq=seq, digest=digest, requests=batch)
        self.storage.save_pre_prepare(pp)
        self.sent_votes[("pre_prepare", self.view, seq)] = digest
        env = self._seal(pre_prepare=pp)
        slot = self._slot(seq)
        slot.accept(self.view, digest, list(pp.requests), env)
        self._out.append(Broadcast(env))
        self._check_prepared(seq, slot)

    # ---- normal case: pre-prepare, prepare, commit ----

    def _on_pre_prepare(self, pp: PrePrepare, env: PbftEnvelope) -> None:
        if env.sender != self.config.primary(pp.view):
            self._reject("not_primary")
            return
        if pp.view != self.view or not self.active:
            self._reject("wrong_view")
            return
        if not self._in_window(pp.seq):
            self._reject("out_of_watermarks")
            return
        slot = self.log.get(pp.seq)
        known = self.sent_votes.get(("pre_prepare", pp.view, pp.seq))
        if known is None and slot is not None and slot.view == pp.view:
            known = slot.digest
        if known is not None:
            if known != pp.digest:
                self._reject("conflicting_pre_prepare")
                self.counters["equivocations"] += 1
                self._suspect()
            return
        if len(pp.requests) > self.config.batch_size:
            self._reject("oversized_batch")
            return
        digests = []
        for r in pp.requests:
            if r.read_only or not request_shape_ok(r):
                self._reject("bad_request_in_batch")
                return
            d = request_digest(r)
            if not self.auth.request_ok(r, d, ordering=True):
                self._reject("bad_request_in_batch")
                return
            digests.append(d)
        if batch_digest_of(digests) != pp.digest:
            self._reject("digest_mismatch")
            return
        self._accept_pre_prepare(pp, env)

    def _accept_pre_prepare(self, pp: PrePrepare, env: PbftEnvelope | None) -> None:
        """Log ``pp`` (already checked) for the current view and vote for it."""
        self.storage.save_pre_prepare(pp)
        self.sent_votes[("pre_prepare", pp.view, pp.seq)] = pp.digest
        slot = self._slot(pp.seq)
        if slot.committed and slot.digest != pp.digest:
            self.counters["safety_alarm"] = self.counters.get("safety_alarm", 0) + 1
            return
        slot.accept(pp.view, pp.digest, list(pp.requests), env)
        if self.index != self.config.primary(pp.view):
            self._send_vote("prepare", pp.seq, slot)
        self._check_prepared(pp.seq, slot)

    def _send_vote(self, kind: str, seq: int, slot: Slot) -> None:
        key = (kind, self.view, seq)
        prev = self.sent_votes.get(key)
        if prev is not None and prev != slot.digest:
            self._reject("would_contradict_own_vote")
            return
        if prev is None:
            self.storage.save_vote(kind, self.view, seq, slot.digest)
            self.sent_votes[key] = slot.digest
        cls = Prepare if kind == "prepare" else Commit
        env = self._seal(**{kind: cls(view=self.view, seq=seq, digest=slot.digest,
                                      replica=self.index)})   # a PREPARE is signed too
        if kind == "prepare":
            slot.my_prepare = env
            slot.prepares[self.index] = (slot.digest, env)
        else:
            slot.my_commit = env
            slot.commits[self.index] = (slot.digest, env)
        self._out.append(Broadcast(env))

    def _on_vote(self, kind: str, vote, env: PbftEnvelope) -> Slot | None:
        if vote.replica != env.sender:
            self._reject("bad_sender")
            return None
        if vote.view != self.view:
            self._reject("wrong_view")
            return None
        if not self._in_window(vote.seq):
            self._reject("out_of_watermarks")
            return None
        slot = self._slot(vote.seq)
        slot.votes_for(self.view)
        votes = slot.prepares if kind == "prepare" else slot.commits
        prev = votes.get(env.sender)
        if prev is not None:
            if prev[0] != vote.digest:
                self._reject("double_vote")
            return None
        votes[env.sender] = (vote.digest, env)
        return slot

    def _on_prepare(self, p: Prepare, env: PbftEnvelope) -> None:
        if env.sender == self.config.primary(p.view):
            self._reject("prepare_from_primary")
            return
        slot = self._on_vote("prepare", p, env)
        if slot is None:
            return
        if slot.view == self.view and p.digest != slot.digest and self.active:
            # f+1 backups prepared another batch: a correct one did, so the primary equivocated.
            others = sum(1 for r, (d, _) in slot.prepares.items() if d != slot.digest)
            if others > self.f:
                self.counters["equivocations"] += 1
                self._suspect()
                return
        self._check_prepared(p.seq, slot)

    def _on_commit(self, c: Commit, env: PbftEnvelope) -> None:
        slot = self._on_vote("commit", c, env)
        if slot is not None:
            self._check_committed(c.seq, slot)

    def _check_prepared(self, seq: int, slot: Slot) -> None:
        if not self.active or slot.view != self.view or slot.prepared_view == self.view:
            return
        primary = self._primary()
        if slot.count(slot.prepares, exclude=primary) < self.prepare_quorum:
            return
        envs = self._signed_prepares(slot, primary)
        if envs is None:
            return
        slot.prepared_view = self.view
        slot.cert = PreparedCert(view=self.view, seq=seq, digest=slot.digest,
                                 requests=slot.requests, prepares=envs)
        self.storage.save_cert(slot.cert)
        self._send_vote("commit", seq, slot)
        self._check_committed(seq, slot)

    def _signed_prepares(self, slot: Slot, primary: int) -> list[PbftEnvelope] | None:
        """``prepare_quorum`` matching PREPAREs of backups whose signatures verify -- what a
        prepared certificate carries, so that every replica can check it (``auth``) -- or
        None while there are not enough. Signatures are checked here, lazily: only as many
        as the certificate needs (this replica's own first), not every PREPARE received. One
        that does not verify is dropped, as if never received, and counted."""
        good: list = []
        if self.prepare_quorum == 0:                  # n = 1: no backups to hear from
            return good
        for r, (d, e) in sorted(slot.prepares.items(), key=lambda kv: (kv[0] != self.index,
                                                                        kv[0])):
            if d != slot.digest or r == primary:
                continue
            if r != self.index and not self.auth.signature_ok(e):
                del slot.prepares[r]
                self._reject("bad_signature")
                continue
            good.append((r, e))
            if len(good) == self.prepare_quorum:
                return [e for _, e in sorted(good, key=lambda x: x[0])]
        return None

    def _check_committed(self, seq: int, slot: Slot) -> None:
        if slot.committed or slot.prepared_view != self.view or slot.view != self.view:
            return
        if slot.count(slot.commits) < self.commit_quorum:
            return
        slot.committed = True
        self.storage.save_committed(seq, slot.view, slot.digest)
        self._execute_ready()

    # ---- requests that can no longer execute ----

    def _drop_held(self, cid: str, ts: int) -> None:
        held = self.pending.get(cid)
        if held is not None and held.timestamp <= ts:
            del self.pending[cid]
        self.in_flight.discard((cid, ts))

    def _forget_unexecutable(self) -> None:
        """After the log changed some client's key (an admission, a removal): drop the held
        and queued requests that no longer verify with their client's key, which would
        never execute and would keep a backup asking for view changes."""
        changes = self.auth.client_verify.changes()
        if changes == getattr(self, "_key_changes_seen", 0):
            return
        self._key_changes_seen = changes
        for cid, req in list(self.pending.items()):
            if not self.auth.executable(req):
                del self.pending[cid]
        for key, req in list(self.queue.items()):
            if not self.auth.executable(req):
                del self.queue[key]
        if not self.queue:
            self.queue_since = None

    # ---- execution ----

    def _execute_ready(self) -> None:
        while True:
            seq = self.last_executed + 1
            slot = self.log.get(seq)
            if slot is None or not slot.committed:
                return
            self._execute(seq, slot, replay=False)

    def _execute(self, seq: int, slot: Slot, *, replay: bool) -> None:
        done = []
        for req in slot.requests:
            cid, ts = req.client_id, req.timestamp
            if not self.auth.executable(req):    # signed with a key the log does not give it
                self.counters["refused_at_execution"] = (
                    self.counters.get("refused_at_execution", 0) + 1)
                if not replay:
                    self._drop_held(cid, ts)
                continue
            last = self.clients.get(cid)
            if last is not None and ts <= last[0]:
                continue
            result = self.app.execute(cid, req.op, seq)
            digest = op_digest(req.op)
            self.clients[cid] = (ts, result, digest)
            done.append((cid, ts))
            if replay:
                continue
            self.storage.save_client(cid, ts, result, digest)
            self._reply(cid, ts, result, req)
            held = self.pending.get(cid)
            if held is not None and held.timestamp <= ts:
                del self.pending[cid]
            self.in_flight.discard((cid, ts))
        self.last_executed = seq
        if self.observer is not None:
            self.observer.executed(self.index, seq, slot.digest, done)
        if replay:
            return
        self._forget_unexecutable()
        self.storage.save_executed(seq)
        self.counters["executed_requests"] += len(done)
        if done and self.active:
            self._progress()
        if seq % self.config.checkpoint_interval == 0:
            self._take_checkpoint(seq)
