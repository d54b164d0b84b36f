"""Unit tests of the PBFT core's normal case, driven by hand-built messages: prepare and
commit quorums, water marks, authentication, exactly-once execution, view-change timers and
view changes pulled along by f+1 replicas, read-only queries, checkpoints, and batching."""

from __future__ import annotations

import pytest

from agora.coordinator.pbft.messages import Reply, Send, batch_digest
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage, ViewChange
from tests.pbft_fixtures import Forge, config, finish, kinds, net, ops, replica

pytestmark = pytest.mark.timeout(60)


# ---- the normal case, by hand ----

def test_backup_prepares_then_commits_at_2f_prepares_and_executes_at_2f_plus_1_commits():
    fx, r = Forge(), replica(1)
    req = fx.request("c0", 1, b"add x 5")
    d = batch_digest([req])
    assert kinds(r.receive(fx.pre_prepare([req]), 0.0)) == ["prepare"]
    assert kinds(r.receive(fx.prepare(3, d), 0.0)) == ["commit"]      # own + 1 = 2f prepares
    assert r.receive(fx.commit(0, d), 0.0) == []                       # 2 commits: not yet
    assert r.last_executed == 0
    out = r.receive(fx.commit(2, d), 0.0)                              # 2f+1 commits
    assert r.last_executed == 1 and r.app.data == {"x": "5"}
    assert [type(a) for a in out] == [Reply]
    reply = PbftMessage.FromString(out[0].msg.payload).reply
    assert (reply.result, reply.timestamp, reply.replica) == (b"5", 1, 1)


def test_prepares_from_the_primary_and_double_votes_do_not_count():
    fx, r = Forge(), replica(1)
    req = fx.request()
    d = batch_digest([req])
    r.receive(fx.pre_prepare([req]), 0.0)
    r.receive(fx.prepare(0, d), 0.0)                    # the primary does not prepare
    r.receive(fx.prepare(3, b"\1" * 32), 0.0)           # 3 votes for something else first
    assert kinds(r.receive(fx.prepare(3, d), 0.0)) == []  # ... then double-votes
    assert r.rejected["prepare_from_primary"] == 1 and r.rejected["double_vote"] == 1
    assert r.log[1].prepared_view == -1
    assert kinds(r.receive(fx.prepare(2, d), 0.0)) == ["commit"]


def test_water_marks_reject_and_count_sequence_numbers_outside_h_H():
    fx, r = Forge(), replica(1)
    req = fx.request()
    for seq in (0, -3, 9, 100):       # L = 8: (0, 8] accepted
        assert r.receive(fx.pre_prepare([req], seq=seq), 0.0) == []
    assert r.rejected["out_of_watermarks"] == 4
    assert kinds(r.receive(fx.pre_prepare([req], seq=8), 0.0)) == ["prepare"]


def test_bad_mac_bad_signature_wrong_digest_and_foreign_key_are_rejected_and_counted():
    fx, r = Forge(), replica(1)
    req = fx.request()
    env = fx.pre_prepare([req])
    env.macs[1] = bytes(16)
    r.receive(env, 0.0)
    r.receive(fx.pre_prepare([req], digest=b"\2" * 32), 0.0)
    r.receive(fx.pre_prepare([req], sender=2), 0.0)
    forged = fx.request("c1", 1)
    forged.client_id = "c0"                              # signed with c1's key
    r.receive(PbftEnvelope(sender=-1, payload=PbftMessage(request=forged).SerializeToString()), 0)
    r.receive(fx.pre_prepare([forged]), 0.0)
    unknown = fx.request("c0")
    unknown.client_id = "nobody"
    r.receive(PbftEnvelope(sender=-1, payload=PbftMessage(request=unknown).SerializeToString()), 0)
    vc = PbftEnvelope(sender=2, payload=PbftMessage(view_change=ViewChange(
        new_view=1, replica=2)).SerializeToString(), signature=bytes(64))
    r.receive(vc, 0.0)
    r.receive(b"\xff\x00garbage", 0.0)
    assert r.rejected == {"bad_mac": 1, "digest_mismatch": 1, "not_primary": 1,
                          "bad_signature": 2, "bad_request_in_batch": 1,
                          "unknown_client": 1, "malformed": 1}
    assert r.last_executed == 0 and r.view == 0


def test_a_request_timestamp_past_the_logs_integers_is_refused_in_a_pre_prepare():
    """A signed request with a timestamp of 2^63 or more (the field is a uint64; the durable
    log's integers are signed 64-bit) once killed every replica that executed it: a primary
    that orders one now has its pre-prepare refused, and the largest timestamp still orders."""
    fx = Forge()
    for ts in (2**63, 2**64 - 1):
        r = replica(1)
        assert r.receive(fx.pre_prepare([fx.request("c0", ts)]), 0.0) == []
        assert r.rejected == {"bad_request_in_batch": 1}
    r = replica(1)
    assert kinds(r.receive(fx.pre_prepare([fx.request("c0", 2**63 - 1)]), 0.0)) == ["prepare"]


def test_conflicting_pre_prepare_is_equivocation_and_starts_a_view_change_once_f_plus_1_suspect():
    fx, r = Forge(), replica(1)
    a, b = fx.request("c0", 1), fx.request("c1", 1)
    r.receive(fx.pre_prepare([a]), 0.0)
    out = r.receive(fx.pre_prepare([b]), 0.0)
    assert r.rejected["conflicting_pre_prepare"] == 1 and r.counters["equivocations"] == 1
    assert r.view == 0 and r.suspecting and kinds(out) == ["status"]
    assert PbftMessage.FromString(out[0].msg.payload).status.suspects
    out = r.receive(fx.suspicion(2), 0.1)                  # f+1 = 2 suspect view 0
    assert r.view == 1 and not r.status()["view_active"] and "view_change" in kinds(out)


def test_exactly_once_duplicates_get_the_cached_reply_and_are_not_re_executed():
    fx, r = Forge(), replica(1)
    req = fx.request("c0", 2, b"add x 1")
    d = batch_digest([req, req])
    r.receive(fx.pre_prepare([req, req], digest=d), 0.0)   # a faulty primary repeats it
    for s in (2, 3):
        r.receive(fx.prepare(s, d), 0.0)
    for s in (0, 2):
        r.receive(fx.commit(s, d), 0.0)
    assert r.app.data == {"x": "1"} and r.counters["executed_requests"] == 1
    out = r.receive(fx.request_env("c0", 2, b"add x 1"), 0.0)       # client resends
    assert [type(a) for a in out] == [Reply] and r.app.data == {"x": "1"}
    assert PbftMessage.FromString(out[0].msg.payload).reply.result == b"1"
    assert r.receive(fx.request_env("c0", 1, b"add x 9"), 0.0) == []  # older: stale
    assert r.rejected["stale_request"] == 1


def test_a_timestamp_reused_for_another_op_is_refused_not_answered_with_the_first_reply():
    """A client that gives two requests one timestamp (a clock of one-second resolution, a
    client in another language) used to get the first one's result for the second: a
    submission it believed answered, never executed. Now refused and counted; the same
    request again still gets its cached reply."""
    fx, r = Forge(), replica(1)
    req = fx.request("c0", 7, b"add x 1")
    d = batch_digest([req])
    r.receive(fx.pre_prepare([req]), 0.0)
    r.receive(fx.prepare(3, d), 0.0)
    for s in (0, 2):
        r.receive(fx.commit(s, d), 0.0)
    assert r.app.data == {"x": "1"}
    assert r.receive(fx.request_env("c0", 7, b"add y 2"), 0.0) == []
    assert r.rejected["reused_timestamp"] == 1 and r.app.data == {"x": "1"}
    out = r.receive(fx.request_env("c0", 7, b"add x 1"), 0.0)
    assert [type(a) for a in out] == [Reply]
    assert PbftMessage.FromString(out[0].msg.payload).reply.result == b"1"


def test_a_reply_table_entry_without_an_op_digest_answers_as_before():
    """Entries restored from a log written before the digest was kept (b"") cannot tell two
    requests apart: the cached reply, as before, rather than refusing a client's retry."""
    fx, r = Forge(), replica(1)
    r.clients["c0"] = (7, b"1", b"")
    out = r.receive(fx.request_env("c0", 7, b"add y 2"), 0.0)
    assert [type(a) for a in out] == [Reply] and "reused_timestamp" not in r.rejected


def test_backup_holds_a_request_forwards_it_at_retransmission_and_arms_its_view_change_timer():
    fx, r = Forge(), replica(3)
    out = r.receive(fx.request_env("c0", 1), 0.0)
    assert out == []              # not at once: the client sent it to the primary as well
    assert r.next_deadline() == pytest.approx(0.1)       # retransmission first
    assert r.vc_deadline == pytest.approx(0.5)
    forwarded = [a for a in r.tick(0.1) if isinstance(a, Send) and a.to == 0
                 and PbftMessage.FromString(a.msg.payload).WhichOneof("kind") == "request"]
    assert len(forwarded) == 1 and forwarded[0].msg.sender == 3
    r.tick(0.5)
    assert r.view == 0 and r.suspecting, "alone, a backup suspects and stays"
    r.receive(fx.suspicion(2), 0.55)
    assert r.view == 1 and r.counters["view_changes"] == 1
    assert r.vc_deadline is None, "no timer for view 1 before 2f+1 replicas ask for it"

    def vc(sender, view):
        return fx.replicas[sender].seal(PbftMessage(view_change=ViewChange(
            new_view=view, replica=sender)), sign=True)

    r.receive(vc(0, 1), 0.6)
    r.receive(vc(2, 1), 0.6)
    assert r.vc_deadline == pytest.approx(1.1)           # T: NEW-VIEW from 1 never comes
    r.tick(1.1)
    assert r.view == 1 and r.suspecting, "alone, it waits in the view change for view 1"
    r.receive(fx.suspicion(0, view=1), 1.15)
    assert r.view == 2
    r.receive(vc(0, 2), 1.2)
    r.receive(vc(1, 2), 1.2)
    assert r.vc_deadline == pytest.approx(1.2 + 1.0)     # backoff: 2T


def test_f_plus_1_view_changes_for_higher_views_pull_a_replica_along():
    fx, r = Forge(), replica(2)

    def vc(sender, view):
        return fx.replicas[sender].seal(PbftMessage(view_change=ViewChange(
            new_view=view, replica=sender)), sign=True)

    r.receive(vc(0, 10**6), 0.0)
    assert r.rejected["inflated_view"] == 1
    r.receive(vc(0, 5), 0.0)
    assert r.view == 0                                   # one replica (maybe faulty): no
    out = r.receive(vc(3, 4), 0.0)
    assert r.view == 4 and "view_change" in kinds(out)   # f+1: join the lowest of them


def test_read_only_query_is_answered_at_once_without_ordering():
    fx, r = Forge(), replica(1)
    out = r.receive(fx.request_env("c0", 1, b"get x", read_only=True), 0.0)
    reply = PbftMessage.FromString(out[0].msg.payload).reply
    assert reply.read_only and reply.result == b"" and r.last_executed == 0


# ---- checkpoints ----

def test_checkpoints_stabilise_at_2f_plus_1_and_truncate_the_log():
    n = net()
    n.submit("c0", ops("c0", 10))
    finish(n)
    for nd in n.nodes.values():
        r = nd.replica
        assert r.h == (r.last_executed // 4) * 4 and r.h >= 8
        assert min(r.log) > r.h and all(s >= r.h for s in r.own_checkpoints)
        assert all(seq > r.h for (_, seq) in nd.storage.state.pre_prepares)
        assert nd.storage.state.stable[0] == r.h and len(nd.storage.state.stable[2]) >= 3
    digests = {nd.replica.stable_digest for nd in n.nodes.values()}
    assert len(digests) == 1


# ---- batching ----

def test_a_lone_request_is_proposed_at_once_and_requests_batch_while_one_is_in_flight():
    """Castro & Liskov's batching: the primary with nothing in flight pre-prepares a request
    at once (it waits for no batch_timeout); while that batch is in flight, new requests
    gather until batch_size or batch_timeout."""
    fx = Forge()
    primary = replica(0, cfg=config(batch_size=4, batch_timeout=0.5))
    out = primary.receive(fx.request_env("c0", 1), now=0.0)
    assert kinds(out).count("pre_prepare") == 1                  # idle: at once
    out = primary.receive(fx.request_env("c1", 1), now=0.01)
    assert "pre_prepare" not in kinds(out)                        # one in flight: it waits
    out = primary.tick(0.6)                                       # ... for batch_timeout
    seqs = [PbftMessage.FromString(a.msg.payload).pre_prepare.seq for a in out
            if PbftMessage.FromString(a.msg.payload).WhichOneof("kind") == "pre_prepare"]
    assert 2 in seqs                   # (the first one's may be retransmitted beside it)
