"""A PBFT replica (Castro & Liskov, OSDI 1999 / TOCS 2002), sans-IO: messages in, actions out.

    replica = Replica(config, index, keys, app, storage)
    actions = replica.receive(envelope_or_bytes, now)   # handle one message
    actions = replica.tick(now)                         # fire due timers
    replica.next_deadline()                             # when tick is next due (None: idle)
    replica.status()                                    # read-only summary and counters

Each action is ``Send(to, envelope)``, ``Broadcast(envelope)`` (every other replica) or
``Reply(client_id, envelope)``; the caller delivers them. Everything they depend on is in
``storage`` (flushed) before they are returned. The replica never reads a clock, never
sleeps and draws nothing at random: given the same inputs and times it does the same.
Envelopes may be forwarded by other replicas (certificates, catch-up): a transport must not
treat the link a message arrived on as its author; ``envelope.sender`` and the MAC/signature
say who wrote it. Bad input never raises: it is dropped and counted in
``status()["rejected"]`` by reason.

The normal case is in ``normalcase.py``, view changes in ``viewchange.py``, checkpoints,
state transfer and status-driven catch-up in ``checkpoint.py``, restart in ``recovery.py``.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from agora.coordinator.pbft.app import App
from agora.coordinator.pbft.auth import ReplicaAuth
from agora.coordinator.pbft.checkpoint import CheckpointMixin
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.pbft.log import Slot
from agora.coordinator.pbft.messages import Action, Broadcast, ClientEntry, Send, as_envelope
from agora.coordinator.pbft.normalcase import NormalCaseMixin
from agora.coordinator.pbft.recovery import recover
from agora.coordinator.pbft.storage import Storage
from agora.coordinator.pbft.viewchange import ViewChangeMixin
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage, PbftRequest

_MAC_KINDS = ("pre_prepare", "prepare", "commit", "checkpoint", "fetch_state", "state", "status")


class Replica(NormalCaseMixin, CheckpointMixin, ViewChangeMixin):
    """Replica ``index`` (0..n-1) of the group described by ``config`` and ``keys``.

    ``observer`` (optional) gets ``executed(index, seq, digest, requests)`` after each
    executed batch (``requests``: the (client id, timestamp) pairs executed) and
    ``checkpoint(index, seq, digest)`` after each checkpoint it takes; the simulator's
    checker uses it."""

    def __init__(self, config: PbftConfig, index: int, keys: KeySet, app: App,
                 storage: Storage, *, observer=None):
        if keys.n != config.n:
            raise ValueError(f"Replica: the key set is for {keys.n} replicas; config.n is {config.n}")
        if not 0 <= index < config.n:
            raise ValueError(f"Replica.index: got {index}; expected 0..{config.n - 1}")
        self.config, self.index, self.n, self.f = config, index, config.n, config.f
        self.auth = ReplicaAuth(keys, index)
        self.auth.client_verify.attach(app)
        self.prepare_quorum = 2 * self.f
        """PREPAREs from distinct backups that, with the pre-prepare, make a prepared batch."""
        self.commit_quorum = config.quorum
        """Matching COMMITs from distinct replicas that make a batch committed-local."""
        self.app, self.storage, self.observer = app, storage, observer
        self.rejected: dict[str, int] = {}
        self.counters: dict[str, int] = {"view_changes": 0, "executed_requests": 0,
                                         "state_transfers": 0, "equivocations": 0,
                                         "suspicions": 0}
        self.view, self.active = 0, True
        self.log: dict[int, Slot] = {}
        self.top_seq = 0
        """the highest sequence number a slot was ever made for (``_live_slots`` scans up to
        it, not the whole log)"""
        self.h, self.stable_digest = 0, b""
        self.stable_proof: list[PbftEnvelope] = []
        self.last_executed, self.next_seq = 0, 1
        self.clients: dict[str, ClientEntry] = {}
        self.queue: dict[tuple[str, int], PbftRequest] = {}
        self.queue_since: float | None = None
        self.in_flight: set[tuple[str, int]] = set()
        self.pending: dict[str, PbftRequest] = {}
        self.sent_votes: dict[tuple[str, int, int], bytes] = {}
        self.own_checkpoints: dict[int, tuple[bytes, bytes]] = {}
        self.own_cp_env: PbftEnvelope | None = None
        self.cp_votes: dict[int, dict[int, tuple[bytes, PbftEnvelope]]] = {}
        self.vc_latest: dict[int, tuple] = {}
        self.new_view_env: PbftEnvelope | None = None
        self.fetch = None
        self.vc_deadline: float | None = None
        self.timed: tuple | None = None
        """what the request timer waits for: ("request", client, timestamp) or ("slot",
        seq) -- the oldest thing this backup was waiting for when the timer started"""
        self.vc_attempt = 0
        self.suspecting = False
        """whether this replica suspects the primary of its view (``_suspect``)"""
        self.suspicions: dict[int, tuple[int, float]] = {}
        """peer -> (view, when) of its latest STATUS saying it suspects that view's primary"""
        self.peer_executed: dict[int, int] = {}
        """peer -> the highest sequence number it said it executed (STATUS, CHECKPOINT)"""
        self.behind: tuple | None = None
        """(view, timed, mark, executed when last held) while the request timer is held back
        because this backup is behind the group and catching up (``_behind_group``)"""
        self.vc_recent = 0
        """view changes installed recently: each doubles the view-change timeout until a calm
        spell undoes it (``_timeout``)"""
        self.vc_recent_at = 0.0
        self.retransmit_deadline: float | None = None
        self.announce = False
        self._vc_cache: dict[bytes, object] = {}
        self._status_answered: dict[int, float] = {}
        self._state_served: dict[int, tuple[int, float]] = {}
        """peer -> (stable checkpoint, when) of the last state sent it (``_on_fetch_state``)"""
        self._out: list[Action] = []
        self.now = 0.0
        recover(self, storage.load())

    # ---- the sans-IO surface ----

    def receive(self, msg: PbftEnvelope | bytes, now: float) -> list[Action]:
        """Handle one message (an envelope, or its serialized bytes) received at ``now``."""
        self.now = now
        env = as_envelope(msg)
        if env is None:
            self._reject("malformed")
            return self._finish()
        self._dispatch(env)
        return self._finish()

    def tick(self, now: float) -> list[Action]:
        """Fire the timers due at ``now``: batch, view change, retransmission."""
        self.now = now
        if self.vc_deadline is not None and now >= self.vc_deadline:
            self.vc_deadline = None
            if not self.active:
                self.vc_attempt += 1    # the new view did not come: wait twice as long
                self._suspect()
            elif not self._behind_group():
                self._suspect()
        if self.retransmit_deadline is not None and now >= self.retransmit_deadline:
            self.retransmit_deadline = None
            self._retransmit()
        return self._finish()

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has something to do, or None."""
        times = [t for t in (self.vc_deadline, self.retransmit_deadline) if t is not None]
        if self.queue_since is not None and self._can_propose():
            times.append(self.queue_since + self.config.batch_timeout)
        return min(times) if times else None

    def status(self) -> dict:
        """View, primary, progress, water marks and rejection counters (a copy)."""
        committed = [s for s, slot in self.log.items() if slot.committed]
        return {
            "index": self.index, "view": self.view, "view_active": self.active,
            "primary": self.config.primary(self.view), "last_executed": self.last_executed,
            "last_committed": max(committed + [self.last_executed]),
            "stable_checkpoint": self.h, "stable_digest": self.stable_digest.hex(),
            "low_water_mark": self.h, "high_water_mark": self.h + self.config.watermark_window,
            "pending_requests": len(self.pending) + len(self.queue),
            "fetching_state": self.fetch is not None,
            "rejected": dict(sorted(self.rejected.items())), "counters": dict(self.counters),
        }

    # ---- plumbing ----

    def _finish(self) -> list[Action]:
        if self.fetch is not None and self.fetch.seq <= self.last_executed:
            # caught up by executing (not by the transfer): the fetch is over -- a primary
            # with a stale one would never propose again, and every view change after it
            # would meet the same (found by the long explorer scenarios)
            self.fetch = None
        self._maybe_propose()
        self._arm_timers()
        self.storage.flush()
        out, self._out = self._out, []
        return out

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def _primary(self) -> int:
        return self.view % self.n

    def _in_window(self, seq: int) -> bool:
        if seq > self.h + self.config.watermark_window:
            self.announce = True      # maybe lagging: a STATUS brings peers' checkpoint proofs
            return False
        return self.h < seq

    def _timeout(self) -> float:
        """The view-change timeout: doubled for each new view that failed to come
        (``vc_attempt``, Castro & Liskov) and for each view change installed recently
        (``vc_recent``). The second keeps a slow group -- a loaded machine where requests
        often take longer than the base timeout -- from changing views over and over: the
        first execution in a new view resets ``vc_attempt``, but ``vc_recent`` only goes down
        one step per ``calm_timeouts`` (doubled) timeouts without a view change: with the
        defaults (1 s, 60), a group that changed view once waits 2 s for the next 120 s."""
        self._calm_down()
        exp = min(self.vc_attempt + self.vc_recent, self.config.max_backoff_exponent)
        return self.config.view_change_timeout * (2 ** exp)

    def _calm_down(self) -> None:
        while self.vc_recent:
            spell = (self.config.calm_timeouts * self.config.view_change_timeout
                     * (2 ** self.vc_recent))
            if self.now - self.vc_recent_at < spell:
                return
            self.vc_recent -= 1
            self.vc_recent_at += spell

    def _view_installed(self) -> None:
        """A new view is in: one more recent view change (see ``_timeout``)."""
        self._calm_down()
        self.vc_recent = min(self.vc_recent + 1, self.config.max_backoff_exponent)
        self.vc_recent_at = self.now

    def _slot(self, seq: int) -> Slot:
        slot = self.log.get(seq)
        if slot is None:
            slot = self.log[seq] = Slot()
            if seq > self.top_seq:
                self.top_seq = seq
        return slot

    def _live_slots(self):
        """The log's slots above ``last_executed`` (what has not executed yet): in steady
        state a handful (the primary's outstanding batches), so the per-input timer checks
        do not walk the executed slots kept until the next stable checkpoint."""
        log = self.log
        for s in range(self.last_executed + 1, self.top_seq + 1):
            slot = log.get(s)
            if slot is not None:
                yield slot

    def _seal(self, **kind) -> PbftEnvelope:
        return self.auth.seal(PbftMessage(**kind))

    def _dispatch(self, env: PbftEnvelope) -> None:
        sender = env.sender
        if not -1 <= sender < self.n or sender == self.index:
            self._reject("bad_sender")
            return
        msg = PbftMessage()
        try:
            msg.ParseFromString(env.payload)
        except DecodeError:
            self._reject("malformed")
            return
        kind = msg.WhichOneof("kind")
        if kind is None:
            self._reject("malformed")
        elif kind == "request":
            self._on_request(msg.request, env)
        elif sender < 0:
            self._reject("bad_sender")
        elif kind in _MAC_KINDS:
            if not self.auth.mac_ok(env):
                self._reject("bad_mac")
            else:
                getattr(self, "_on_" + kind)(getattr(msg, kind), env)
        elif kind == "view_change":
            self._on_view_change(msg.view_change, env)
        elif kind == "new_view":
            self._on_new_view(msg.new_view, env)
        else:
            self._reject("unexpected_kind")

    def _arm_timers(self) -> None:
        if self.active:
            # A replica fetching state (it restarted, or lagged past its window) is behind,
            # not stalled by the primary: its timer waits until the fetch is over, then runs
            # afresh -- else a restarted backup changes view alone, and stays in a view of its
            # own, executing only at stable checkpoints, until the group changes view.
            waiting = (self.index != self._primary() and self.fetch is None
                       and self._waiting())
            if not waiting:
                self.vc_deadline = self.timed = None
            elif self.vc_deadline is None:
                self.vc_deadline = self.now + self._timeout()
                self.timed = self._oldest_waited()
        elif self.vc_deadline is None and self._vc_quorum():
            # PBFT's liveness rule: the timer for a new view starts once 2f+1 replicas asked
            # for it, so one replica cannot race ahead through views alone.
            self.vc_deadline = self.now + self._timeout()
        if self._unsettled():
            if self.retransmit_deadline is None:
                self.retransmit_deadline = self.now + self.config.retransmit_interval
        else:
            self.retransmit_deadline = None

    def _vc_quorum(self) -> bool:
        """2f+1 replicas asked for this view or a later one (a replica keeps only its latest
        VIEW-CHANGE; one that moved on to a later view has left this one too)."""
        return sum(1 for vc, _ in self.vc_latest.values()
                   if vc.new_view >= self.view) >= self.config.quorum

    def _waiting(self) -> bool:
        """Whether this replica holds a request that has not executed (PBFT's timer rule)."""
        if self.pending:
            return True
        view = self.view
        return any(slot.view == view and slot.requests for slot in self._live_slots())

    def _oldest_waited(self) -> tuple | None:
        """The request this backup has held longest (``pending`` keeps the order in which
        clients were first held), else the lowest batch of this view not yet executed."""
        for cid, req in self.pending.items():
            return ("request", cid, req.timestamp)
        view = self.view
        for s in range(self.last_executed + 1, self.top_seq + 1):
            slot = self.log.get(s)
            if slot is not None and slot.view == view and slot.requests:
                return ("slot", s)
        return None

    def _progress(self) -> None:
        """A request executed. The back-off resets; the request timer restarts only when
        what it was started for is done (Castro & Liskov:
        the timer follows the request the backup waits for). Restarting it on any
        execution let a primary that orders other clients' requests and drops one
        client's stay primary for ever."""
        self.vc_attempt = 0
        t = self.timed
        if t is None:
            done = True
        elif t[0] == "request":
            last = self.clients.get(t[1])
            done = t[1] not in self.pending or (last is not None and last[0] >= t[2])
        else:
            slot = self.log.get(t[1])
            done = (t[1] <= self.last_executed or slot is None or slot.view != self.view)
        if done:
            self.vc_deadline = self.timed = None     # _arm_timers starts it afresh if waiting
            self._withdraw_suspicion()

    def _unsettled(self) -> bool:
        return bool(self.pending or self.queue or not self.active or self.fetch or self.announce
                    or any(slot.view >= 0 for slot in self._live_slots())
                    or (self.own_cp_env is not None and max(self.own_checkpoints, default=0) > self.h))

    # ---- retransmission ----

    def _retransmit(self) -> None:
        if not self._unsettled():
            return
        self.announce = False
        self._broadcast_status()
        if not self.active:
            mine = self.vc_latest.get(self.index)
            if mine is not None and mine[0].new_view == self.view:
                self._out.append(Broadcast(mine[1]))
            else:
                self._send_view_change()
        else:
            top = self.h + self.config.watermark_window
            for seq in sorted(self.log):
                slot = self.log[seq]
                if seq <= self.last_executed or seq > top or slot.view != self.view:
                    continue
                if slot.pp_env is not None and self.index == self._primary():
                    self._out.append(Broadcast(slot.pp_env))
                for env in (slot.my_prepare, slot.my_commit):
                    if env is not None:
                        self._out.append(Broadcast(env))
            if self.pending and self.index != self._primary():
                for req in self.pending.values():
                    self._out.append(Send(self._primary(), PbftEnvelope(
                        sender=self.index, payload=PbftMessage(request=req).SerializeToString())))
        if self.own_cp_env is not None and max(self.own_checkpoints, default=0) > self.h:
            self._out.append(Broadcast(self.own_cp_env))
        self._retransmit_fetch()
