"""Restart: rebuild a Replica from its storage (the Replica constructor calls ``recover``).

The application is restored from the latest own checkpoint at or below the last executed
sequence number, then the committed batches above it are re-executed (silently: no replies,
no storage writes) from the stored pre-prepares. The votes it sent are reloaded so it never
votes differently for a (view, seq) it already voted on, and the slots above the last executed
one come back with their pre-prepares, prepared certificates and commit state.

``replay`` (the application part of ``recover``) and ``rebuild_app`` also serve offline
reads (``coordinator/offline.py``): an App rebuilt from a stored log at a chosen sequence
number, with no replica, keys or network.
"""

from __future__ import annotations

import hashlib

from agora.coordinator.pbft.auth import ClientKeys, RequestAuth
from agora.coordinator.pbft.app import App
from agora.coordinator.pbft.log import Slot
from agora.coordinator.pbft.messages import ClientEntry, batch_digest, clients_of
from agora.coordinator.pbft.normalcase import NormalCaseMixin
from agora.coordinator.pbft.storage import CorruptLog, StoredState
from agora.protos.agora.v1.pbft_pb2 import (Checkpoint, CheckpointState, Commit, PbftEnvelope,
                                            PbftMessage, Prepare)


def recover(replica, st: StoredState) -> None:
    if st.empty:
        return
    r = replica
    r.view, r.active = st.view, st.view_active
    if st.new_view is not None and st.new_view[0] == st.view and st.view_active:
        r.new_view_env = PbftEnvelope.FromString(st.new_view[1])   # to relay (storage.py)
    r.h, r.stable_digest, proof = st.stable
    r.stable_proof = list(proof)
    r.own_checkpoints = {s: v for s, v in st.checkpoints.items() if s >= r.h}
    for seq, (digest, state) in sorted(r.own_checkpoints.items()):
        # its own log is all that vouches for them: a state that is not its digest (a damaged
        # or altered log) would be restored, and its CHECKPOINT vote sent again with the
        # stored digest, not one of the state it holds
        if hashlib.sha256(state).digest() != digest:
            raise CorruptLog(f"its checkpoint {seq}: the state stored does not match its digest")
        if seq == r.h and digest != r.stable_digest:
            raise CorruptLog(f"its checkpoint {seq}: its digest is not the stable checkpoint's")
    try:
        replay(r, st, st.executed, verify=True)
    except KeyError as e:       # it says it executed what its log does not hold
        key = e.args[0] if e.args else "?"
        raise CorruptLog(f"it executed {st.executed}, but batch "
                         f"{key[1] if isinstance(key, tuple) else key} is not in it") from None
    r.sent_votes = dict(st.votes)
    latest: dict[int, int] = {}
    for (view, seq), pp in st.pre_prepares.items():
        r.sent_votes[("pre_prepare", view, seq)] = pp.digest
        if seq > r.h and view >= latest.get(seq, -1):
            latest[seq] = view
    for seq in sorted(latest):
        view = latest[seq]
        pp = st.pre_prepares[(view, seq)]
        slot = r._slot(seq)
        slot.accept(view, pp.digest, list(pp.requests), None)
        cert = st.certs.get(seq)
        if cert is not None and cert.digest == pp.digest:
            slot.cert = cert
            if cert.view == view:
                slot.prepared_view = view
        done = st.committed.get(seq)
        slot.committed = done is not None and done == (view, pp.digest)
        if view == r.view:
            for kind, cls in (("prepare", Prepare), ("commit", Commit)):
                if st.votes.get((kind, view, seq)) == pp.digest:
                    env = r.auth.seal(PbftMessage(**{kind: cls(
                        view=view, seq=seq, digest=pp.digest, replica=r.index)}))
                    setattr(slot, "my_" + kind, env)
                    getattr(slot, kind + "s")[r.index] = (pp.digest, env)
    for seq, cert in st.certs.items():
        if seq > r.h and seq not in r.log:
            r._slot(seq).cert = cert
    r.next_seq = max([s for (v, s) in st.pre_prepares if v == r.view]
                     + [r.h, r.last_executed]) + 1
    r.clients.update({c: v for c, v in st.clients.items()
                      if v[0] > r.clients.get(c, (0, b""))[0]})
    top = max(r.own_checkpoints, default=0)
    if top > r.h:
        # its vote for a checkpoint not yet stable, sent again like any (a review: a
        # replica that crashed before sending it never did, and with a window of one
        # checkpoint the group could not pass it)
        digest = r.own_checkpoints[top][0]
        r.own_cp_env = r._seal(checkpoint=Checkpoint(seq=top, digest=digest, replica=r.index))
        r.cp_votes.setdefault(top, {})[r.index] = (digest, r.own_cp_env)
    r.announce = True


def replay_plan(st: StoredState, upto: int) -> tuple[int, bytes | None, list[tuple[int, Slot]]]:
    """What ``replay`` does to reach sequence number ``upto`` from ``st``: the latest own
    checkpoint at or below it (its seq, 0 for none, and its serialized CheckpointState) and
    the committed batches above it, in order, as executable slots. Raises KeyError when a
    batch in that range is not in ``st`` (``upto`` above what was executed, or below the
    stable checkpoint, whose log was truncated)."""
    base = max((s for s in st.checkpoints if s <= upto), default=0)
    batches = []
    for seq in range(base + 1, upto + 1):
        view, digest = st.committed[seq]
        pp = st.pre_prepares[(view, seq)]
        slot = Slot()
        slot.accept(view, digest, list(pp.requests), None)
        slot.committed = True
        batches.append((seq, slot))
    return base, (st.checkpoints[base][1] if base else None), batches


def replay(r, st: StoredState, upto: int, *, verify: bool = False) -> None:
    """Bring ``r.app`` and ``r.clients`` (the reply table) to sequence number ``upto`` from
    ``st``: restore the latest own checkpoint at or below ``upto``, then re-execute the
    committed batches above it in order (``r._execute(..., replay=True)``: no replies, no
    storage writes); ``replay_plan`` says which. ``r``: a Replica, or anything with its
    execution (``_Replayer``). KeyError as ``replay_plan``."""
    base, checkpoint, batches = replay_plan(st, upto)
    if verify:      # (``recover``) each batch is the one committed, as when it was accepted
        for seq, slot in batches:
            if batch_digest(slot.requests) != slot.digest:
                raise CorruptLog(f"batch {seq}: its requests are not the digest committed")
    if checkpoint is not None:
        state = CheckpointState.FromString(checkpoint)
        r.app.restore(state.app_snapshot)
        r.clients = clients_of(state)
    r.last_executed = base
    for seq, slot in batches:
        r._execute(seq, slot, replay=True)
    r.last_executed = upto


class _Replayer(NormalCaseMixin):
    """What ``replay`` needs of a Replica: its execution, over an app and a reply table."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.auth = RequestAuth(ClientKeys({}))    # keys the log gave: all it needs
        self.auth.client_verify.attach(app)
        self.counters: dict[str, int] = {}
        self.clients: dict[str, ClientEntry] = {}
        self.last_executed = 0
        self.observer = None


def rebuild_app(app: App, st: StoredState, upto: int) -> dict[str, tuple[int, bytes]]:
    """Bring the fresh ``app`` to sequence number ``upto`` of the stored log ``st`` exactly as
    a restarting replica does (``replay``); returns the reply table at ``upto`` (client id ->
    (timestamp, result)). Raises KeyError when ``st`` cannot give that state (see
    ``replay``), or what ``app.restore`` raises for a checkpoint it refuses."""
    r = _Replayer(app)
    replay(r, st, upto)
    return r.clients
