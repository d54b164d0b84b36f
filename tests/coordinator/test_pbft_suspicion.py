"""A view is left only when f+1 replicas suspect its primary (``Replica._suspect``): a backup
whose request timer fires alone -- a loaded machine, a slow link -- says so and stays in the
group's view, where PBFT as written moved it to a view of its own until the group next
changed view (seen in a 64-site replay, docs/coordinator.md)."""

from __future__ import annotations

from agora.coordinator.pbft.explorer import hurried
from agora.coordinator.pbft.messages import batch_digest
from agora.coordinator.pbft.simnet import LinkFaults
from agora.protos.agora.v1.pbft_pb2 import PbftMessage, ViewChange
from tests.pbft_fixtures import Forge, finish, kinds, net, ops, replica


def held_batch(fx: Forge, r, at: float = 0.0):
    req = fx.request("c0", 1)
    r.receive(fx.pre_prepare([req]), at)
    return batch_digest([req])


def test_a_backup_that_times_out_alone_keeps_its_view_and_executes_when_the_batch_commits():
    fx, r = Forge(), replica(3)
    d = held_batch(fx, r)
    out = r.tick(0.5)                                       # its timer: view_change_timeout 0.5
    assert r.view == 0 and r.active and r.counters["suspicions"] == 1
    said = [PbftMessage.FromString(a.msg.payload).status.suspects
            for a in out if kinds([a]) == ["status"]]
    assert said and all(said)
    out = []
    for s in (1, 2):
        out += r.receive(fx.prepare(s, d), 0.6)
    for s in (0, 1, 2):
        out += r.receive(fx.commit(s, d), 0.6)
    assert r.last_executed == 1 and not r.suspecting, "executing what it waited for withdraws it"
    withdrawn = [PbftMessage.FromString(a.msg.payload).status for a in out
                 if kinds([a]) == ["status"]]
    assert withdrawn and not withdrawn[-1].suspects


def test_suspicions_of_f_plus_1_replicas_move_even_a_replica_that_does_not_suspect():
    fx, r = Forge(), replica(3)
    r.receive(fx.suspicion(1), 0.0)
    assert r.view == 0, "one suspicion (f = 1) is not enough"
    r.receive(fx.suspicion(2), 0.1)
    assert r.view == 1 and not r.active


def test_a_withdrawn_or_stale_suspicion_does_not_count():
    fx, r = Forge(), replica(3)
    r.receive(fx.suspicion(1), 0.0)
    r.receive(fx.suspicion(1, suspects=False), 0.1)            # withdrawn
    r.receive(fx.suspicion(2), 0.2)
    assert r.view == 0
    r.receive(fx.suspicion(1), 5.0)                            # 2's is 4.8 s old: stale
    assert r.view == 0
    r.receive(fx.suspicion(2), 5.1)
    assert r.view == 1


def test_a_suspicion_of_another_view_does_not_count_for_this_one():
    fx, r = Forge(), replica(3)
    r.receive(fx.suspicion(1, view=1), 0.0)
    r.receive(fx.suspicion(2, view=1), 0.0)
    assert r.view == 0 and r.active


def test_a_peer_that_already_left_the_view_counts_as_suspecting_it():
    fx, r = Forge(), replica(3)
    held_batch(fx, r)
    r.receive(fx.replicas[2].seal(PbftMessage(view_change=ViewChange(
        new_view=2, replica=2)), sign=True), 0.1)
    assert r.view == 0, "a lone peer in a later view does not move it"
    r.tick(0.5)                                             # its own timer: 2 of f+1
    assert r.view == 1 and not r.active


def test_in_a_group_a_replica_whose_timer_always_fires_first_stays_in_the_view_and_in_step():
    """Replica 3's timer is 50x shorter than the others' (as if its machine were loaded): it
    suspects the primary of nearly every batch, alone, and never leaves view 0."""
    n = net(replica_hook=hurried(3, factor=50), faults=LinkFaults(min_delay=0.005, max_delay=0.02))
    n.submit("c0", ops("c0", 20))
    n.submit("c1", ops("c1", 20))
    finish(n)
    r3, r0 = n.replica(3), n.replica(0)
    assert r3.counters.get("suspicions", 0) > 0, "the test needs replica 3 to time out"
    assert r3.view == 0 and r3.counters["view_changes"] == 0
    assert r3.last_executed == r0.last_executed and r0.view == 0
