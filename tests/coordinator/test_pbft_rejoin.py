"""A backup that restarts behind the group takes part again, in the group's view.

Found with ``python -m bench.replica_rejoin`` (a backup SIGKILLed under load and started
again changed view alone, and followed the group only by state transfers) and made
deterministic here over the simulated network: the restarted backup's links are slow and
lossy, so catching up takes longer than the view-change timeout."""

from __future__ import annotations

import pytest

from agora.coordinator.pbft import byzantine as byz
from agora.coordinator.pbft.checker import Checker
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.simnet import LinkFaults, SimNet
from agora.protos.agora.v1.pbft_pb2 import Checkpoint, PbftMessage
from tests.pbft_fixtures import Forge, config, replica

pytestmark = pytest.mark.timeout(120)
CLIENTS = [f"c{i}" for i in range(4)]


def busy_group(seed: int, requests: int, view_change_timeout: float) -> SimNet:
    """Four clients, each with ``requests`` to send, keep a small-windowed group busy."""
    cfg = PbftConfig(n=4, checkpoint_interval=4, watermark_window=8, batch_size=2,
                     view_change_timeout=view_change_timeout, retransmit_interval=0.05,
                     client_retransmit=0.2, calm_timeouts=0)
    net = SimNet(cfg, seed=seed, clients=CLIENTS)
    for c in CLIENTS:
        net.submit(c, [f"add {c} 1".encode()] * requests)
    return net


def restarted_behind(seed: int) -> SimNet:
    """Backup 2 of a busy group crashes at 1 s, restarts at 2 s, and from then on every
    message to it is delayed 10-500 ms (reordered) and half are lost."""
    net = busy_group(seed, 400, view_change_timeout=0.3)
    net.at(1.0, lambda: net.crash(2))

    def back() -> None:
        net.restart(2)
        for j in (0, 1, 3):
            net.set_link(j, 2, LinkFaults(drop=0.5, min_delay=0.01, max_delay=0.5))
    net.at(2.0, back)
    net.run_until(8.0)
    return net


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_backup_restarted_behind_a_slow_lossy_link_rejoins_without_a_view_change(seed):
    net = restarted_behind(seed)
    Checker(net).assert_ok(liveness=False)
    reps = [net.replica(i) for i in range(4)]
    assert [r.view for r in reps] == [0, 0, 0, 0], "the restarted backup changed view alone"
    assert all(r.counters["view_changes"] == 0 for r in reps)
    top = max(r.last_executed for r in reps)
    assert top > 1000 and reps[2].last_executed >= top - net.config.checkpoint_interval, \
        "the restarted backup did not catch up"
    assert reps[2].counters["state_transfers"] >= 1


def test_the_timer_is_held_back_only_while_the_backup_is_behind():
    held = [restarted_behind(s).replica(2).counters.get("timer_held_behind", 0)
            for s in (0, 1, 2)]
    assert any(held), "the scenario no longer makes the timer fire while catching up"


def test_checkpoint_votes_past_the_bound_replace_the_senders_oldest_ones():
    # Backup 2 holds as many old checkpoint votes of each peer as it keeps (seqs it never
    # got a quorum for); the peers' stable proof of a far later checkpoint must still get
    # in and start a state transfer -- refused as a flood, the backup never caught up.
    cfg = config()
    r = replica(2, cfg=cfg)
    forge = Forge()
    bound = cfg.watermark_window // cfg.checkpoint_interval + 2
    for peer in (0, 1, 3):
        for k in range(1, bound + 2):
            seq = k * cfg.checkpoint_interval
            r.receive(forge.replicas[peer].seal(PbftMessage(checkpoint=Checkpoint(
                seq=seq, digest=bytes([peer + 1]) * 32, replica=peer))), 0.0)
    far = 100 * cfg.checkpoint_interval
    for peer in (0, 1, 3):
        r.receive(forge.replicas[peer].seal(PbftMessage(checkpoint=Checkpoint(
            seq=far, digest=b"\x07" * 32, replica=peer))), 0.0)
    assert r.fetch is not None and r.fetch.seq == far, "the stable proof was refused"
    held = {s for s, votes in r.cp_votes.items() for p in votes if p == 0}
    assert len(held) <= bound + 1 and far in held


def test_a_censoring_primary_that_claims_to_be_far_ahead_is_still_replaced():
    class CensorClaimingAhead(byz.InflatedStatus):
        incoming = byz.Censor(client_id="victim").incoming

    net = SimNet(PbftConfig(n=4), seed=1, clients=["victim", "busy"])
    net.set_behaviour(0, CensorClaimingAhead(seed=1))
    net.submit("victim", [b"set v 1"])
    for k in range(40):                     # one request every 0.5 s: under the 1 s timeout
        net.at(0.5 * k, lambda k=k: net.submit("busy", [f"add n {k}".encode()]))
    net.run_until(20.0)
    assert any(net.replica(i).peer_executed.get(0, 0) >= 10**6 for i in (1, 2, 3)), \
        "the primary's inflated claims did not arrive"
    assert len(net.clients["victim"].done) == 1, "the dropped client's request executed"
    assert all(net.replica(i).view >= 1 for i in range(1, 4)), "the censor was replaced"


@pytest.mark.parametrize("f,seed", [(1, 0), (1, 1), (1, 2), (2, 0)])
def test_a_gap_only_one_correct_replica_could_close_ends_in_a_view_change(f, seed):
    # The group's executed point is past what the other correct backups can ever get: held
    # for as long as it was ahead, they never changed view and the group stopped for good.
    n, s = 3 * f + 1, 3
    cfg = PbftConfig(n=n, checkpoint_interval=4, watermark_window=8, batch_size=1,
                     max_outstanding=1, batch_timeout=0.0, view_change_timeout=0.5,
                     retransmit_interval=0.1, client_retransmit=0.4, calm_timeouts=0)
    net = SimNet(cfg, seed=seed, clients=["c0"])
    if f == 1:
        net.set_behaviour(0, byz.GapThenStall(seed, s, pp_bad=[3], commit_bad=[2, 3]))
    else:
        for i in (0, 6):
            net.set_behaviour(i, byz.GapThenStall(seed + i, s, pp_bad=[4, 5],
                                                  commit_bad=[2, 3, 4, 5]))
    net.submit("c0", [f"add x {k}".encode() for k in range(s + 3)])
    net.run_until(60.0, stop=net.clients_done)
    net.run_until(net.now + 1.0)
    Checker(net).assert_ok()
    assert len(net.clients["c0"].done) == s + 3, "the group stopped"
    assert all(nd.replica.view >= 1 for nd in net.correct_nodes())
    held = [nd.replica.counters.get("timer_held_behind", 0) for nd in net.correct_nodes()]
    assert any(held), "the scenario no longer holds a timer back"


@pytest.mark.parametrize("seed", [0, 1])
def test_catching_a_replica_up_never_sends_it_its_own_messages(seed):
    """A replica that answers a peer's STATUS with what the peer lacks sent the primary its
    own PRE-PREPAREs, and any replica its own CHECKPOINT in a stable proof: a replica refuses
    a message naming itself as the sender (``bad_sender``), so each was wasted bytes (a
    PRE-PREPARE carries its batch) and a false alarm on a counter that should mean a faulty
    peer (3,200 at the primary of a 64-site replay). Here the primary's incoming links are
    slow and lossy, so it executes behind its backups and asks them."""
    net = busy_group(seed, 100, view_change_timeout=2.0)
    for j in (1, 2, 3):
        net.set_link(j, 0, LinkFaults(drop=0.3, min_delay=0.01, max_delay=0.2))
    net.run_until(6.0)
    Checker(net).assert_ok(liveness=False)
    reps = [net.replica(i) for i in range(4)]
    assert max(r.last_executed for r in reps) > 100
    assert [r.rejected.get("bad_sender", 0) for r in reps] == [0, 0, 0, 0]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_replica_restarted_with_an_empty_log_joins_the_groups_later_view(seed):
    """A probe (``agora up``): after a view change, the group stopped and started again, and
    one replica's log moved aside -- it came back empty in view 0, and the others, restarted
    too, held no NEW-VIEW to relay to it (it was not in their logs), so it refused the
    group's messages as of the wrong view until the group's next view change, leaving the
    group with no replica to spare. The NEW-VIEW is kept in the log and relayed again."""
    from agora.coordinator.pbft.storage import MemoryStorage

    net = busy_group(seed, 400, view_change_timeout=0.3)
    net.at(1.0, lambda: net.crash(0))                  # the primary: view 0 -> 1
    net.at(2.0, lambda: net.restart(0))

    def stop_all_and_wipe_2() -> None:
        for i in range(4):
            net.crash(i)
        net.nodes[2].storage = MemoryStorage()           # its log moved aside
        for i in range(4):
            net.restart(i)
    net.at(4.0, stop_all_and_wipe_2)
    net.run_until(9.0)
    Checker(net).assert_ok(liveness=False)
    reps = [net.replica(i) for i in range(4)]
    assert reps[1].view >= 1 and len({r.view for r in reps}) == 1, [r.view for r in reps]
    top = max(r.last_executed for r in reps)
    assert reps[2].last_executed >= top - 2 * net.config.checkpoint_interval, \
        (reps[2].last_executed, top)


@pytest.mark.parametrize("seed", [3, 12])
def test_a_restarted_primary_that_takes_the_new_view_catches_up_with_no_request_coming(seed):
    """A probe (``agora up``): the primary, killed and restarted by its keeper, took the
    NEW-VIEW its peers relayed and stayed behind what they ordered in the new view for as
    long as no request came (70 against 75, 45 s). Entering a view, a replica says its
    STATUS there, and peers resend what it lacks. (Seeds where it lagged before: 2 of 90.)"""
    net = busy_group(seed, 20, view_change_timeout=0.3)
    net.at(0.3, lambda: net.crash(0))
    net.at(1.0, lambda: net.restart(0))
    net.run_until(10.0)
    Checker(net).assert_ok(liveness=False)
    assert net.clients_done()
    reps = [net.replica(i) for i in range(4)]
    assert reps[0].view == reps[1].view >= 1
    assert len({r.last_executed for r in reps}) == 1, [r.last_executed for r in reps]
