"""Unit tests of the PBFT core: quorums, water marks, authentication, exactly-once,
checkpoints, storage, restart, the client, and fuzzing Replica.receive."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.coordinator.pbft.client import Client
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.keys import KeySet, generate_keys
from agora.coordinator.pbft.messages import Broadcast, Completed, Reply, Send, batch_digest
from agora.coordinator.pbft.storage import MemoryStorage, SqliteStorage
from agora.protos.agora.v1.pbft_pb2 import (
    PbftEnvelope,
    PbftMessage,
    PbftReply,
    ViewChange,
)
from tests.pbft_fixtures import Forge, config, finish, keys, kinds, net, ops, replica

pytestmark = pytest.mark.timeout(60)


# ---- configuration and keys ----

def test_config_requires_3f_plus_1_and_a_window_of_whole_checkpoints():
    assert PbftConfig(n=7).f == 2 and PbftConfig(n=7).quorum == 5
    with pytest.raises(ValueError, match="3f\\+1"):
        PbftConfig(n=5)
    with pytest.raises(ValueError, match="multiple of checkpoint_interval"):
        PbftConfig(checkpoint_interval=4, watermark_window=6)
    assert PbftConfig.from_dict(PbftConfig(n=4).to_dict()) == PbftConfig(n=4)
    with pytest.raises(ValueError, match="unknown fields"):
        PbftConfig.from_dict({"n": 4, "bogus": 1})


def test_keys_round_trip_through_json_and_strip_secrets():
    ks = generate_keys(4, ["a", "b"])
    again = KeySet.from_dict(json.loads(json.dumps(ks.to_dict())))
    assert again == ks
    mine = ks.for_replica(2)
    assert mine.replica_signing[2] == ks.replica_signing[2]
    assert all(s is None for i, s in enumerate(mine.replica_signing) if i != 2)
    assert not mine.client_signing and all(2 in k for k in mine.replica_macs)
    assert set(ks.for_client("a").client_signing) == {"a"}
    assert generate_keys(4, ["a"], seed=b"x") == generate_keys(4, ["a"], seed=b"x")
    with pytest.raises(ValueError, match="appears twice"):
        d = ks.to_dict()
        d["clients"].append(dict(d["clients"][0]))
        KeySet.from_dict(d)


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


def test_conflicting_pre_prepare_is_equivocation_and_starts_a_view_change():
    fx, r = Forge(), replica(1)
    a, b = fx.request("c0", 1), fx.request("c1", 1)
    r.receive(fx.pre_prepare([a]), 0.0)
    out = r.receive(fx.pre_prepare([b]), 0.0)
    assert r.rejected["conflicting_pre_prepare"] == 1 and r.counters["equivocations"] == 1
    assert r.view == 1 and not r.status()["view_active"] and kinds(out) == ["view_change"]


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
    assert r.view == 1 and r.counters["view_changes"] == 1
    assert r.vc_deadline is None, "no timer for view 1 before 2f+1 replicas ask for it"

    def vc(sender, view):
        return fx.replicas[sender].seal(PbftMessage(view_change=ViewChange(
            new_view=view, replica=sender)), sign=True)

    r.receive(vc(0, 1), 0.6)
    r.receive(vc(2, 1), 0.6)
    assert r.vc_deadline == pytest.approx(1.1)           # T: NEW-VIEW from 1 never comes
    r.tick(1.1)
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


# ---- storage and restart ----

@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_storage_round_trip(tmp_path, kind):
    fx = Forge()
    s = MemoryStorage() if kind == "memory" else SqliteStorage(tmp_path / "r.db")
    env = fx.pre_prepare([fx.request()])
    pp = PbftMessage.FromString(env.payload).pre_prepare
    s.save_view(3, False)
    s.save_pre_prepare(pp)
    s.save_vote("prepare", 0, 1, pp.digest)
    s.save_committed(1, 0, pp.digest)
    s.save_executed(1)
    s.save_client("c0", 1, b"1")
    s.save_checkpoint(4, b"d" * 32, b"state")
    s.save_stable(4, b"d" * 32, [env, env])
    s.flush()
    if kind == "sqlite":
        s.close()
        s = SqliteStorage(tmp_path / "r.db")
        mode = s.db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal" and s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    st = s.load()
    assert (st.view, st.view_active, st.executed) == (3, False, 1)
    assert st.pre_prepares[(0, 1)] == pp and st.votes[("prepare", 0, 1)] == pp.digest
    assert st.committed[1] == (0, pp.digest) and st.clients["c0"] == (1, b"1")
    assert st.checkpoints[4] == (b"d" * 32, b"state")
    assert st.stable[0] == 4 and st.stable[2] == [env, env]
    s.truncate(4)
    s.flush()
    st = s.load()
    assert not st.pre_prepares and not st.committed and 4 in st.checkpoints


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_restart_never_contradicts_an_earlier_vote(tmp_path, kind):
    fx = Forge()
    storage = MemoryStorage() if kind == "memory" else SqliteStorage(tmp_path / "r1.db")
    r = replica(1, storage=storage)
    a, b = fx.request("c0", 1), fx.request("c1", 1)
    assert kinds(r.receive(fx.pre_prepare([a]), 0.0)) == ["prepare"]
    if kind == "sqlite":
        storage.close()
        storage = SqliteStorage(tmp_path / "r1.db")
    again = replica(1, storage=storage)                  # crash: memory gone, storage kept
    assert again.receive(fx.pre_prepare([b]), 1.0) == [] or again.view == 1
    assert again.rejected["conflicting_pre_prepare"] == 1
    assert ("prepare", 0, 1) in again.sent_votes
    assert again.sent_votes[("prepare", 0, 1)] == batch_digest([a])


def test_restart_rebuilds_the_app_from_checkpoint_and_committed_log(tmp_path):
    storages = {i: SqliteStorage(tmp_path / f"r{i}.db") for i in range(4)}
    n = net(storage_factory=lambda i: storages[i])
    n.submit("c0", ops("c0", 7))
    finish(n)
    before = n.replica(2)
    data, executed, clients = dict(before.app.data), before.last_executed, dict(before.clients)
    storages[2].close()
    storages[2] = SqliteStorage(tmp_path / "r2.db")
    n.nodes[2].storage = storages[2]
    n.crash(2)
    n.restart(2)
    after = n.replica(2)
    assert after.app.data == data and after.last_executed == executed
    assert after.clients == clients and after.h == before.h


# ---- the client ----

def test_client_needs_f_plus_1_matching_authentic_replies():
    cfg, fx = config(), Forge()
    c = Client(cfg, "c0", keys().for_client("c0"))
    out = c.submit(b"add x 1", 0.0)
    assert [type(a) for a in out] == [Send] and out[0].to == 0

    def reply(i, result, mac_ok=True):
        msg = PbftMessage(reply=PbftReply(view=0, timestamp=1, client_id="c0", replica=i,
                                          result=result))
        env = fx.replicas[i].to_client(msg, "c0")
        if not mac_ok:
            env.macs[0] = bytes(16)
        return env

    assert c.receive(reply(1, b"1"), 0.0) == []
    assert c.receive(reply(2, b"1", mac_ok=False), 0.0) == [] and c.rejected["bad_mac"] == 1
    assert c.receive(reply(1, b"1"), 0.0) == []            # same replica twice: still one
    assert c.receive(reply(3, b"666"), 0.0) == []
    done = c.receive(reply(2, b"1"), 0.0)
    assert done == [Completed("c0", 1, b"1", False)] and not c.busy


def test_client_retransmits_to_all_and_read_only_falls_back_on_disagreement():
    cfg, fx = config(), Forge()
    c = Client(cfg, "c0", keys().for_client("c0"))
    c.submit(b"add x 1", 0.0)
    assert [type(a) for a in c.tick(cfg.client_retransmit)] == [Broadcast]
    c2 = Client(cfg, "c1", keys().for_client("c1"))
    assert [type(a) for a in c2.submit(b"get x", 0.0, read_only=True)] == [Broadcast]

    def reply(i, result):
        return fx.replicas[i].to_client(PbftMessage(reply=PbftReply(
            view=0, timestamp=1, client_id="c1", replica=i, result=result, read_only=True)), "c1")

    c2.receive(reply(0, b"a"), 0.0)
    c2.receive(reply(1, b"b"), 0.0)
    out = c2.receive(reply(2, b"c"), 0.0)      # 2f+1 = 3 matching can no longer come
    assert [type(a) for a in out] == [Send]
    assert not PbftMessage.FromString(out[0].msg.payload).request.read_only


def test_read_only_fast_path_end_to_end():
    n = net()
    n.submit("c0", [b"set k v", (b"get k",)])
    finish(n)
    assert [d.result for d in n.clients["c0"].done] == [b"ok", b"v"]
    assert n.clients["c0"].done[1].read_only


# ---- fuzzing receive ----

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _primed():
    """A backup that has executed one batch, and valid messages to mutate."""
    fx, r = Forge(), replica(1)
    req = fx.request("c0", 1, b"add x 5")
    d = batch_digest([req])
    msgs = [fx.pre_prepare([req]), fx.prepare(3, d), fx.commit(0, d), fx.commit(2, d)]
    for m in msgs:
        r.receive(m, 0.0)
    assert r.last_executed == 1
    nxt = fx.request("c1", 1, b"add y 1")
    msgs += [fx.pre_prepare([nxt], seq=2), fx.prepare(2, batch_digest([nxt]), seq=2),
             fx.request_env("c1", 2, b"add y 2")]
    return r, msgs


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_nor_change_committed_state(data):
    r, _ = _primed()
    before = sum(r.rejected.values())
    r.receive(data, 1.0)
    assert r.last_executed == 1 and r.app.data == {"x": "5"}
    assert sum(r.rejected.values()) == before + 1


@FUZZ
@given(st.integers(0, 6), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                   min_size=1, max_size=6))
def test_mutated_messages_never_raise_and_are_counted_when_not_authentic(which, flips):
    r, msgs = _primed()
    raw = bytearray(msgs[which].SerializeToString())
    for pos, val in flips:
        raw[pos % len(raw)] = val
    before = (sum(r.rejected.values()), r.last_executed, dict(r.app.data))
    r.receive(bytes(raw), 1.0)
    assert r.last_executed == 1 and r.app.data == {"x": "5"}
    env = PbftEnvelope()
    try:
        env.ParseFromString(bytes(raw))
        # a client request is authenticated by the client's signature inside the payload,
        # whoever relays it (any replica forwards requests): its envelope may say anything
        request = PbftMessage.FromString(msgs[which].payload).WhichOneof("kind") == "request"
        authentic = env.payload == msgs[which].payload and (
            request or (env.sender == msgs[which].sender
                        and (env.sender == -1 or env.macs[1:2] == msgs[which].macs[1:2])))
    except Exception:  # noqa: BLE001
        authentic = False
    if not authentic:
        assert sum(r.rejected.values()) == before[0] + 1


@FUZZ
@given(st.sampled_from(["pre_prepare", "prepare", "commit", "checkpoint", "view_change",
                        "new_view", "status", "state", "fetch_state"]),
       st.integers(-5, 10**9), st.integers(-5, 10**9), st.binary(max_size=40))
def test_structurally_odd_but_authentic_messages_never_raise(kind, a, b, blob):
    """Messages with valid MACs (as from a faulty replica) but absurd fields."""
    fx = Forge()
    r, _ = _primed()
    msg = PbftMessage()
    body = getattr(msg, kind)
    for name, value in (("view", a), ("seq", b), ("new_view", a), ("stable_seq", b),
                        ("last_executed", b), ("digest", blob), ("stable_digest", blob),
                        ("state", blob)):
        if name in body.DESCRIPTOR.fields_by_name:
            setattr(body, name, value)
    if "replica" in body.DESCRIPTOR.fields_by_name:
        body.replica = 2
    env = fx.replicas[2].seal(msg, sign=kind in ("view_change", "new_view"))
    r.receive(env, 1.0)
    r.tick(50.0)
    assert r.app.data == {"x": "5"} or r.last_executed > 1


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
