"""Faults a review of the PBFT core found, each shown with a faulty replica or primary on a
hand-driven network of sans-IO replicas (``pbft_handnet``: a FIFO of envelopes inside the
test, with per-message drops; the replicas, keys and messages are the real ones):

- a faulty new primary put VIEW-CHANGEs in its NEW-VIEW whose signatures were lifted from
  genuine ones onto other payloads (the check cache was keyed by signature alone): backups
  dropped a committed request -- a safety violation;
- a client id of 65,536 bytes in any request a replica forwards raised OverflowError in every
  correct replica that took its digest;
- a primary that ordered one client's requests and dropped another's was never replaced: any
  execution restarted the backups' request timers;
- a PREPARE whose MAC entry was right for one replica only made that replica's prepared
  certificate, and so its VIEW-CHANGE, unacceptable to the others: no view change could
  complete. PREPARE and CHECKPOINT are now signed, and checked by signature.
"""

from __future__ import annotations

import pytest

from agora.coordinator.pbft import byzantine as byz
from agora.coordinator.pbft.app import KVApp
from agora.coordinator.pbft.auth import ClientAuth
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.messages import (MAX_CLIENT_ID_BYTES, NULL_DIGEST,
                                             request_signing_bytes)
from agora.coordinator.pbft.simnet import SimNet
from agora.protos.agora.v1.pbft_pb2 import (Checkpoint, Commit, NewView, PbftEnvelope,
                                            PbftMessage, PbftRequest, PreparedCert, Prepare,
                                            PrePrepare, ViewChange)
from tests.coordinator.pbft_handnet import Net

pytestmark = pytest.mark.timeout(60)


def test_a_new_view_with_lifted_view_change_signatures_is_refused_and_nothing_is_undone():
    net = Net()
    faulty = 1                                   # the primary of view 1
    # view 0: request R prepares everywhere, but only replica 0 gets the COMMITs
    net.drop = lambda src, dst, env: net.kind(env) == "commit" and dst in (2, 3)
    net.request(1, b"set x A")
    net.run()
    assert net.seen.log[0] == {1: [("c0", 1)]} and net.seen.log[2] == {}
    # the backups' timers fire: every correct VIEW-CHANGE for view 1 carries R's certificate
    net.drop = lambda src, dst, env: False
    net.silent = {faulty}
    net.tick(10.0)
    genuine = {i: net.reps[i].vc_latest[i][1] for i in (0, 2, 3)}
    assert all(PbftMessage.FromString(genuine[i].payload).view_change.prepared
               for i in genuine)
    signer = net.reps[faulty].auth

    def lifted(i: int) -> PbftEnvelope:          # an empty VIEW-CHANGE "from i", i's signature
        vc = ViewChange(new_view=1, replica=i, stable_seq=0, stable_digest=b"")
        return PbftEnvelope(sender=i, payload=PbftMessage(view_change=vc).SerializeToString(),
                            signature=genuine[i].signature)

    own = signer.seal(PbftMessage(view_change=ViewChange(new_view=1, replica=faulty)))
    for victim in (2, 3):
        others = [i for i in (0, 2, 3) if i != victim]
        nv = NewView(view=1, view_changes=[lifted(others[0]), lifted(others[1]), own])
        net.deliver(victim, signer.seal(PbftMessage(new_view=nv)))
        assert not (net.reps[victim].view == 1 and net.reps[victim].active), victim
        assert net.reps[victim].rejected.get("bad_new_view", 0) >= 1
    # the faulty primary orders a null batch at seq 1 and votes for it: nothing executes it
    for msg in (PbftMessage(pre_prepare=PrePrepare(view=1, seq=1, digest=NULL_DIGEST)),
                PbftMessage(commit=Commit(view=1, seq=1, digest=NULL_DIGEST, replica=faulty))):
        for victim in (2, 3):
            net.deliver(victim, signer.seal(msg))
    for i in (2, 3):
        assert net.seen.log[i].get(1) in (None, [("c0", 1)]), net.seen.log[i]


OVERLONG = "x" * (MAX_CLIENT_ID_BYTES + 1)


def test_an_overlong_client_id_anywhere_is_refused_without_raising():
    net = Net()
    evil = PbftRequest(client_id=OVERLONG, timestamp=1, op=b"noop", signature=b"\0" * 64)
    sealed = {i: net.reps[i].auth for i in range(4)}
    # alone, from a client
    env = PbftEnvelope(sender=-1, payload=PbftMessage(request=evil).SerializeToString())
    net.reps[1].receive(env, 0.0)
    # in a pre-prepare from the primary of view 0
    pp = PrePrepare(view=0, seq=1, digest=b"\0" * 32, requests=[evil])
    net.reps[1].receive(sealed[0].seal(PbftMessage(pre_prepare=pp)), 0.0)
    assert net.reps[1].rejected.get("bad_request_in_batch") == 1
    # in a prepared certificate of any replica's VIEW-CHANGE
    vc = ViewChange(new_view=1, replica=3, prepared=[PreparedCert(
        view=0, seq=1, digest=b"\0" * 32, requests=[evil])])
    for j in (0, 1, 2):
        net.reps[j].receive(sealed[3].seal(PbftMessage(view_change=vc)), 0.0)
        assert net.reps[j].rejected.get("bad_view_change") == 1
    # in the O set of a NEW-VIEW
    nv = NewView(view=1, view_changes=[], pre_prepares=[pp])
    net.reps[2].receive(sealed[1].seal(PbftMessage(new_view=nv)), 0.0)
    assert net.reps[2].rejected.get("bad_new_view") == 1
    assert all(r.last_executed == 0 for r in net.reps)
    with pytest.raises(ValueError, match="client_id"):
        request_signing_bytes(OVERLONG, 1, b"", False)


def test_a_primary_that_orders_others_and_drops_one_client_is_replaced():
    net = SimNet(PbftConfig(n=4), seed=1, clients=["victim", "busy"])
    net.set_behaviour(0, byz.Censor(client_id="victim"))
    net.submit("victim", [b"set v 1"])
    for k in range(40):                     # one request every 0.5 s: under the 1 s timeout
        net.at(0.5 * k, lambda k=k: net.submit("busy", [f"add n {k}".encode()]))
    net.run_until(20.0)
    assert len(net.clients["victim"].done) == 1, "the dropped client's request executed"
    assert all(net.replica(i).view >= 1 for i in range(1, 4)), "the censor was replaced"
    assert len(net.clients["busy"].done) == 40


def test_a_prepare_whose_mac_fits_one_replica_does_not_stall_the_view_change():
    net = Net()
    faulty = 3
    net.silent = {faulty}
    slow = {"on": True}          # replica 2 gets only the client's request while slow
    net.drop = lambda src, dst, env: slow["on"] and dst == 2 and src != -1
    net.request(1, b"set x A")
    net.run()
    slot = net.reps[1].log[1]
    p = net.reps[faulty].auth.seal(PbftMessage(prepare=Prepare(view=0, seq=1, digest=slot.digest,
                                                               replica=faulty)))
    macs = list(p.macs)
    for j in (0, 2):
        macs[j] = b"\0" * 16                 # right for replica 1 only
    bad = PbftEnvelope(sender=faulty, payload=p.payload, macs=macs, signature=p.signature)
    for j in (0, 1, 2):
        net.deliver(j, bad)
    assert net.reps[1].log[1].prepared_view == 0, "replica 1 prepared on the faulty PREPARE"
    t = 0.0
    while t < 50.0:
        t += 0.25
        slow["on"] = t <= 3.0
        net.tick(t)
    views = {(net.reps[i].view, net.reps[i].active) for i in (0, 1, 2)}
    assert len(views) == 1 and views.pop()[1], [(r.view, r.active) for r in net.reps]
    assert [net.reps[i].last_executed for i in (0, 1, 2)] == [1, 1, 1]


def test_prepares_and_checkpoints_without_their_senders_signature_are_not_counted():
    """An unsigned PREPARE (its MAC right) does not make a replica prepared: it is dropped
    when the certificate would need it, and a signed one from another backup completes it;
    an unsigned CHECKPOINT is refused as it arrives."""
    net = Net()
    r = net.reps[1]
    req = ClientAuth(net.keys.for_client("c0"), "c0").sign_request(1, b"set x A", False)
    from agora.coordinator.pbft.messages import batch_digest

    digest = batch_digest([req])
    r.receive(net.reps[0].auth.seal(PbftMessage(pre_prepare=PrePrepare(
        view=0, seq=1, digest=digest, requests=[req]))), 0.0)
    good = net.reps[2].auth.seal(PbftMessage(prepare=Prepare(view=0, seq=1, digest=digest,
                                                             replica=2)))
    assert good.signature, "prepares are signed"
    r.receive(PbftEnvelope(sender=2, payload=good.payload, macs=good.macs), 0.0)
    assert r.log[1].prepared_view < 0 and r.rejected.get("bad_signature") == 1
    assert 2 not in r.log[1].prepares
    r.receive(net.reps[3].auth.seal(PbftMessage(prepare=Prepare(view=0, seq=1, digest=digest,
                                                                replica=3))), 0.0)
    assert r.log[1].prepared_view == 0
    assert sorted(e.sender for e in r.log[1].cert.prepares) == [1, 3]
    cp = net.reps[2].auth.seal(PbftMessage(checkpoint=Checkpoint(
        seq=net.config.checkpoint_interval, digest=digest, replica=2)))
    r.receive(PbftEnvelope(sender=2, payload=cp.payload, macs=cp.macs), 0.0)
    assert r.rejected.get("bad_signature") == 2
    assert not any(2 in v for v in r.cp_votes.values())


def test_a_late_state_transfer_below_the_water_mark_is_taken_without_moving_it_back():
    """White box: a new view moved this replica's low water mark to 2K while it fetched the
    state of 2K; the answer to an older fetch (K) arrives. The state is certified, so it is
    taken, but the mark stays at 2K."""
    import hashlib

    from agora.coordinator.pbft.checkpoint import checkpoint_bytes
    from agora.protos.agora.v1.pbft_pb2 import StateTransfer

    net = Net()
    r, k = net.reps[1], net.config.checkpoint_interval
    r.h, r.stable_digest = 2 * k, b"\7" * 32            # as _enter_view leaves it
    data = checkpoint_bytes(k, KVApp().snapshot(), {})
    digest = hashlib.sha256(data).digest()
    proof = [net.reps[i].auth.seal(PbftMessage(checkpoint=Checkpoint(
        seq=k, digest=digest, replica=i))) for i in (0, 2, 3)]
    st = StateTransfer(seq=k, state=data, proof=proof, replica=2)
    r.receive(net.reps[2].auth.seal(PbftMessage(state=st)), 0.0)
    assert r.last_executed == k, r.rejected
    assert r.h == 2 * k and r.stable_digest == b"\7" * 32


def test_a_replica_will_not_serve_from_a_log_of_the_unsigned_format(tmp_path):
    """A log written before PREPAREs and CHECKPOINTs were signed holds certificates and
    proofs the other replicas now refuse (a probe's replica, restarted on such a log, stayed
    in a view of its own): such a log is refused at start, naming what to do; a new log is
    stamped and served."""
    import sqlite3

    from agora.coordinator.pbft.storage import LOG_FORMAT, SqliteStorage, old_format_problem

    fresh = SqliteStorage(tmp_path / "new.db")
    assert fresh.format() == LOG_FORMAT and old_format_problem(fresh) is None
    fresh.close()
    old = tmp_path / "old.db"
    SqliteStorage(old).close()
    with sqlite3.connect(old) as db:                 # as an earlier Agora left it
        db.execute("DELETE FROM meta WHERE key = 'format'")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('executed', 5)")
    again = SqliteStorage(old)
    problem = old_format_problem(again)
    again.close()
    assert problem is not None and "log format 1" in problem and "new folder" in problem


def test_a_flood_of_fetch_states_from_one_peer_is_served_one_state_per_interval():
    """82-byte FETCH-STATEs, each answered with the whole state: one faulty replica made a
    correct one queue gigabytes (review). White box: a replica with a stable checkpoint."""
    from agora.coordinator.pbft.messages import Send
    from agora.protos.agora.v1.pbft_pb2 import FetchState

    net = Net()
    r, k = net.reps[1], net.config.checkpoint_interval
    r.h, r.own_checkpoints[k] = k, (b"\1" * 32, b"state" * 1000)
    ask = net.reps[3].auth.seal(PbftMessage(fetch_state=FetchState(seq=k, replica=3)))

    def states(out) -> int:
        return sum(isinstance(a, Send) and Net.kind(a.msg) == "state" for a in out)

    assert sum(states(r.receive(ask, 0.0)) for _ in range(1000)) == 1
    assert r.rejected["fetch_state_rate_limited"] == 999
    assert states(r.receive(ask, net.config.retransmit_interval + 0.01)) == 1
