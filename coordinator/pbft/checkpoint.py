"""Checkpoints, garbage collection, state transfer and status-driven catch-up (Castro &
Liskov, section 4.3; TOCS 2002, section 5.3).

Every K-th executed sequence number a replica takes a checkpoint: the CheckpointState (app
snapshot, seq, reply table), its SHA-256, a CHECKPOINT broadcast. 2f+1 matching CHECKPOINT
messages make it stable: the low water mark h moves to it and the log at and below it is
dropped. A replica that sees a stable certificate beyond what it has executed (it lagged, or
lost messages beyond the high water mark) fetches that checkpoint's state from a replica of
the certificate (FETCH-STATE / STATE), checks it against the certificate and restores it.

While a replica waits on something it broadcasts a STATUS every ``retransmit_interval``;
peers answer with what it lacks: the NEW-VIEW of a view it missed, their stable checkpoint
proof, or the pre-prepares and every matching vote they hold (their own and forwarded ones)
for sequence numbers it has not executed. A backup whose request timer expires while the
group's executed point is ahead of it, and that is catching up, holds its view change back
(``_behind_group``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from agora.coordinator.pbft.messages import Broadcast, ClientEntry, Send, clients_of
from agora.protos.agora.v1.pbft_pb2 import (
    Checkpoint,
    CheckpointState,
    ClientRecord,
    FetchState,
    PbftEnvelope,
    PbftMessage,
    PbftStatus,
    StateTransfer,
)
from agora.protos.wire import field_header


def checkpoint_bytes(seq: int, app_snapshot: bytes,
                     clients: dict[str, ClientEntry]) -> bytes:
    """The serialised ``CheckpointState`` (deterministic: clients by id), assembled without
    copying the application's snapshot into a message first (it is most of the bytes)."""
    head = CheckpointState(seq=seq).SerializeToString(deterministic=True)
    tail = CheckpointState(clients=[ClientRecord(client_id=c, timestamp=t, result=r, op_digest=d)
                                    for c, (t, r, d) in sorted(clients.items())])
    return b"".join((head, field_header(2, len(app_snapshot)) if app_snapshot else b"",
                     app_snapshot, tail.SerializeToString(deterministic=True)))


@dataclass
class Fetch:
    seq: int
    digest: bytes
    holders: list[int]
    attempt: int = 0


class CheckpointMixin:
    """Checkpoint and state-transfer half of Replica (shares its attributes)."""

    def _take_checkpoint(self, seq: int) -> None:
        data = checkpoint_bytes(seq, self.app.snapshot(), self.clients)
        digest = hashlib.sha256(data).digest()
        self.own_checkpoints[seq] = (digest, data)
        self.storage.save_checkpoint(seq, digest, data)
        env = self._seal(checkpoint=Checkpoint(seq=seq, digest=digest, replica=self.index))
        self.own_cp_env = env
        self.cp_votes.setdefault(seq, {})[self.index] = (digest, env)
        self._out.append(Broadcast(env))
        if self.observer is not None:
            self.observer.checkpoint(self.index, seq, digest)
        self._check_stable(seq)

    def _on_checkpoint(self, cp: Checkpoint, env: PbftEnvelope) -> None:
        if cp.replica != env.sender:
            self._reject("bad_sender")
            return
        if cp.seq <= self.h:
            self._reject("old_checkpoint")
            return
        if cp.seq % self.config.checkpoint_interval or len(cp.digest) != 32:
            self._reject("bad_checkpoint")
            return
        votes = self.cp_votes.get(cp.seq)
        prev = votes.get(env.sender) if votes else None
        if prev is not None:
            if prev[0] != cp.digest:
                self._reject("double_vote")
            return
        if not self.auth.signature_ok(env):
            self._reject("bad_signature")      # it could not go into a proof
            return
        # A sender's votes held are bounded (a faulty one could send one for every multiple
        # of K): past the bound its lowest one goes, not the new one -- a correct replica's
        # checkpoints only move up, and a backup that lagged (it restarted, or lost messages)
        # held its peers' old votes, refused every newer one, its stable proofs among them,
        # and never caught up (found by a simulated restart over a lossy link).
        held = sorted(s for s, v in self.cp_votes.items() if env.sender in v)
        if len(held) > self.config.watermark_window // self.config.checkpoint_interval + 2:
            self.counters["checkpoint_votes_dropped"] = (
                self.counters.get("checkpoint_votes_dropped", 0) + 1)
            if held[0] > cp.seq:
                return
            del self.cp_votes[held[0]][env.sender]
            if not self.cp_votes[held[0]]:
                del self.cp_votes[held[0]]
        self.cp_votes.setdefault(cp.seq, {})[env.sender] = (cp.digest, env)
        self._note_executed(env.sender, cp.seq)
        self._check_stable(cp.seq)

    def _check_stable(self, seq: int) -> None:
        votes = self.cp_votes.get(seq)
        if not votes or seq <= self.h:
            return
        tally: dict[bytes, list[int]] = {}
        for r in sorted(votes):
            tally.setdefault(votes[r][0], []).append(r)
        for digest, holders in sorted(tally.items()):
            if len(holders) < self.config.quorum:
                continue
            proof = [votes[r][1] for r in holders]
            own = self.own_checkpoints.get(seq)
            if own is not None and own[0] == digest:
                self._make_stable(seq, digest, proof)
            elif seq > self.last_executed or own is not None:
                if own is not None:
                    self.counters["checkpoint_divergence"] = \
                        self.counters.get("checkpoint_divergence", 0) + 1
                self._begin_fetch(seq, digest, [r for r in holders if r != self.index])
            return

    def _make_stable(self, seq: int, digest: bytes, proof: list[PbftEnvelope]) -> None:
        """Checkpoint ``seq`` (whose state this replica holds) is stable: garbage-collect."""
        self.h, self.stable_digest, self.stable_proof = seq, digest, list(proof)
        self.storage.save_stable(seq, digest, self.stable_proof)
        self.storage.truncate(seq)
        self._forget_below(seq)

    def _forget_below(self, seq: int) -> None:
        for s in [s for s in self.log if s <= seq]:
            del self.log[s]
        for s in [s for s in self.own_checkpoints if s < seq]:
            del self.own_checkpoints[s]
        for s in [s for s in self.cp_votes if s <= seq]:
            del self.cp_votes[s]
        for k in [k for k in self.sent_votes if k[2] <= seq]:
            del self.sent_votes[k]
        self.next_seq = max(self.next_seq, seq + 1)

    def _proof_ok(self, seq: int, digest: bytes, proof) -> bool:
        """2f+1 CHECKPOINT envelopes for (seq, digest) from distinct replicas, each signed by
        its sender (a MAC entry right for this replica would not do: see ``auth``)."""
        if seq == 0:
            return digest == b""
        if seq < 0 or seq % self.config.checkpoint_interval or len(digest) != 32:
            return False
        seen = set()
        for env in proof:
            if env.sender in seen or not self.auth.signature_ok(env):
                continue
            msg = _parse(env.payload)
            if msg is None or msg.WhichOneof("kind") != "checkpoint":
                continue
            cp = msg.checkpoint
            if cp.seq == seq and cp.digest == digest and cp.replica == env.sender:
                seen.add(env.sender)
        return len(seen) >= self.config.quorum

    # ---- state transfer ----

    def _begin_fetch(self, seq: int, digest: bytes, holders: list[int]) -> None:
        if seq <= self.last_executed or (self.fetch is not None and self.fetch.seq >= seq):
            return
        holders = [r for r in holders if r != self.index] or \
            [r for r in range(self.n) if r != self.index]
        self.fetch = Fetch(seq, digest, holders)
        self._send_fetch()

    def _send_fetch(self) -> None:
        fetch = self.fetch
        to = fetch.holders[fetch.attempt % len(fetch.holders)]
        self._out.append(Send(to, self._seal(fetch_state=FetchState(seq=fetch.seq,
                                                                     replica=self.index))))

    def _retransmit_fetch(self) -> None:
        if self.fetch is not None:
            self.fetch.attempt += 1
            self._send_fetch()

    def _on_fetch_state(self, fs: FetchState, env: PbftEnvelope) -> None:
        own = self.own_checkpoints.get(self.h)
        if fs.replica != env.sender or own is None or self.h < fs.seq or self.h == 0:
            self._reject("cannot_serve_state")
            return
        # One state a peer per stable checkpoint and retransmission interval (its fetch
        # asks again at that pace): a faulty replica's FETCH-STATEs, 82 bytes each, made a
        # replica queue a copy of its whole state for each -- gigabytes (review).
        served = self._state_served.get(env.sender)
        if (served is not None and served[0] == self.h
                and self.now - served[1] < self.config.retransmit_interval):
            self._reject("fetch_state_rate_limited")
            return
        self._state_served[env.sender] = (self.h, self.now)
        self._out.append(Send(env.sender, self._seal(state=StateTransfer(
            seq=self.h, state=own[1], proof=self.stable_proof, replica=self.index))))

    def _on_state(self, st: StateTransfer, env: PbftEnvelope) -> None:
        if st.seq <= self.last_executed:
            return
        digest = hashlib.sha256(st.state).digest()
        if not self._proof_ok(st.seq, digest, st.proof):
            self._reject("bad_state")
            return
        state = CheckpointState()
        try:
            state.ParseFromString(st.state)
        except Exception:  # noqa: BLE001 - a certified digest over garbage: refuse it
            self._reject("bad_state")
            return
        if state.seq != st.seq:
            self._reject("bad_state")
            return
        self.app.restore(state.app_snapshot)
        self.clients = clients_of(state)
        for cid, (ts, result, op) in sorted(self.clients.items()):
            self.storage.save_client(cid, ts, result, op)
            held = self.pending.get(cid)
            if held is not None and held.timestamp <= ts:
                del self.pending[cid]
        self.last_executed = st.seq
        self._forget_unexecutable()
        self.own_checkpoints[st.seq] = (digest, st.state)
        self.storage.save_checkpoint(st.seq, digest, st.state)
        self.storage.save_executed(st.seq)
        if st.seq >= self.h:
            self._make_stable(st.seq, digest, [e for e in st.proof])
        # else: a late answer to an older fetch, after a new view moved the water marks past
        # it (``_enter_view``): the state is certified and taken, the marks stay where they
        # are -- moving them back would reopen sequence numbers already garbage-collected
        if self.fetch is not None and self.fetch.seq <= st.seq:
            self.fetch = None
        self.in_flight = {k for k in self.in_flight
                          if k[1] > self.clients.get(k[0], (0, b""))[0]}
        self.counters["state_transfers"] += 1
        if self.active:
            # a state transfer catches up a replica that was behind a stable checkpoint of
            # the group (never one that keeps up): its request timer starts afresh, as
            # before the timer followed requests, while it asks for what was ordered since
            self.vc_attempt = 0
            self.vc_deadline = self.timed = None
        self.announce = True     # peers then resend what was ordered after the checkpoint
        self._execute_ready()

    # ---- status and catch-up ----

    def _note_executed(self, peer: int, seq: int) -> None:
        if seq > self.peer_executed.get(peer, 0):
            self.peer_executed[peer] = seq

    def _group_executed(self) -> int:
        """The (f+1)-th highest sequence number peers said they executed: at least one
        correct replica executed that far (0 while fewer than f+1 peers said anything)."""
        claims = sorted(self.peer_executed.values(), reverse=True)
        return claims[self.f] if len(claims) > self.f else 0

    def _behind_group(self) -> bool:
        """Called when the request timer expires: whether this backup is behind the group
        and catching up, rather than kept waiting by the primary -- then the timer runs again
        and no view change starts. A restarted backup catching up (a state transfer, then the
        batches ordered since) held client requests the group had long executed; its timer
        fired, it changed view alone and took part again only at the group's next view
        change.

        Evidence is the group's executed point: the (f+1)-th highest sequence number peers
        said they executed (``peer_executed``), which at least one correct replica reached,
        so f faulty peers cannot inflate it. It is at most a retransmission interval old: a
        backup that waits on a request is unsettled, so it sends STATUS every interval, and
        peers ahead of it answer with theirs. When it is above this backup's, the timer runs
        again -- once, and again only while the backup executed something since (the mark,
        fixed when first seen, is the point it catches up to). A batch a correct replica
        executed is not always one this backup can get: a faulty primary can make its
        PRE-PREPARE and COMMITs check out at one correct replica only (MACs) and then stall;
        held for as long as the mark was ahead, the others never changed view (review,
        reproduced in ``tests/coordinator/test_pbft_rejoin.py``). A backup that keeps up
        passes the mark within one timeout, so a primary censoring one client's requests
        while ordering others' is still found, one timeout later. A view change, a state
        transfer or the executed request starts the reckoning afresh (a new ``timed``)."""
        if self.index == self._primary():
            return False
        key = (self.view, self.timed)
        held = self.behind if self.behind is not None and self.behind[:2] == key else None
        if held is None:
            mark = self._group_executed()
            if mark <= self.last_executed:
                self.behind = None
                return False
        else:
            mark, at = held[2], held[3]
            if self.last_executed >= mark or self.last_executed <= at:
                self.behind = None       # caught up, or no progress: the primary's turn
                return False
        self.behind = (*key, mark, self.last_executed)
        self.counters["timer_held_behind"] = self.counters.get("timer_held_behind", 0) + 1
        self.vc_deadline = self.now + self._timeout()
        return True

    def _broadcast_status(self, to: int | None = None) -> None:
        env = self._seal(status=PbftStatus(
            view=self.view, view_active=self.active, last_executed=self.last_executed,
            stable_seq=self.h, replica=self.index, suspects=self.suspecting))
        self._out.append(Broadcast(env) if to is None else Send(to, env))

    def _on_status(self, st: PbftStatus, env: PbftEnvelope) -> None:
        j = env.sender
        if st.replica != j:
            self._reject("bad_sender")
            return
        self._note_executed(j, st.last_executed)
        self._note_suspicion(j, st.view, st.suspects)
        # Answer each peer at most once per half interval: a replayed or faulty STATUS must
        # not turn this replica into an amplifier.
        last = self._status_answered.get(j)
        if last is not None and self.now - last < self.config.retransmit_interval / 2:
            self._reject("status_rate_limited")
            return
        self._status_answered[j] = self.now
        if st.last_executed < self.last_executed:
            # the peer is behind: it learns how far (it may be deciding whether its
            # request timer fired because the primary stalled or because it lags)
            self._broadcast_status(to=j)
        def relay(env: PbftEnvelope) -> None:
            # never a peer's own message back to it: it refuses one naming itself
            # (bad_sender), and a PRE-PREPARE carries its whole batch
            if env.sender != j:
                self._out.append(Send(j, env))

        behind_view = st.view < self.view or (st.view == self.view and not st.view_active)
        if behind_view and self.active and self.new_view_env is not None:
            relay(self.new_view_env)
        elif st.view < self.view and not self.active:
            mine = self.vc_latest.get(self.index)
            if mine is not None:
                relay(mine[1])
        if st.stable_seq < self.h and self.stable_proof:
            for e in self.stable_proof:
                relay(e)
        if (st.view != self.view or not self.active or not st.view_active
                or st.last_executed >= self.last_executed):
            return
        top = min(self.last_executed, st.last_executed + self.config.watermark_window)
        for seq in range(max(st.last_executed, self.h) + 1, top + 1):
            slot = self.log.get(seq)
            if slot is None or slot.view != self.view:
                continue
            if slot.pp_env is not None:
                relay(slot.pp_env)
            # Every matching vote held, not only this replica's: MAC vectors let j check
            # votes forwarded from replicas that have since moved on or crashed.
            for votes in (slot.prepares, slot.commits):
                for r in sorted(votes):
                    if votes[r][0] == slot.digest:
                        relay(votes[r][1])

def _parse(payload: bytes) -> PbftMessage | None:
    msg = PbftMessage()
    try:
        msg.ParseFromString(payload)
    except Exception:  # noqa: BLE001 - DecodeError, or bad UTF-8 in a string field
        return None
    return msg
