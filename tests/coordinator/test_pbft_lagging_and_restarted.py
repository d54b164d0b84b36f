"""Two liveness holes a review of the PBFT core found (a network driven by hand:
``pbft_handnet``): a backup behind a site's admission refused every correct NEW-VIEW, and a
replica restarted before sending its checkpoint vote never sent it."""

from __future__ import annotations

from agora.coordinator.pbft.config import PbftConfig
from tests.coordinator.pbft_handnet import GovApp, Net


def test_a_backup_behind_an_admission_takes_a_correct_new_view():
    """Replica 3 misses the COMMITs of site:x's admission (seq 1), so it refuses site:x's
    first request (seq 2), which commits at 0, 1, 2 -- a delay, as documented. The primary
    of view 0 then crashes while 3 is cut off. Every view-change quorum carries seq 2's
    prepared certificate; 3, still without the admission, refused each NEW-VIEW for
    re-checking the request's signature against keys it did not have yet, and nothing
    committed until the view whose primary is 3 itself (view 3)."""
    net = Net(clients=("op", "site:x"), app=GovApp, static_clients={"op"})
    site_pub = net.keys.client_verify["site:x"].hex()
    net.drop = lambda s, d, e: d == 3 and net.kind(e) == "commit"
    net.request(1, f"admit site:x {site_pub}".encode(), client="op", run=True)
    assert [r.last_executed for r in net.reps] == [1, 1, 1, 0]
    net.request(1, b"set y 1", client="site:x", run=True)
    assert [r.last_executed for r in net.reps] == [2, 2, 2, 0]
    assert net.reps[3].rejected.get("bad_request_in_batch") == 1
    net.down = {0}
    net.drop = lambda s, d, e: s != -1 and 3 in (s, d)      # 3 hears only clients
    net.request(2, b"set z 1", client="op", to=[1, 2, 3], run=True)
    net.run_for(20.0)
    assert [(r.view, r.active) for r in net.reps[1:3]] == [(1, False), (1, False)]
    net.drop = lambda s, d, e: False
    while net.now < 60.0 and not all(r.clients.get("op", (0,))[0] == 2 for r in net.reps[1:]):
        net.tick(round(net.now + 0.05, 6))
    assert net.reps[3].rejected.get("bad_new_view", 0) == 0
    assert all(r.clients.get("op", (0,))[0] == 2 for r in net.reps[1:])
    assert net.reps[1].view == 1                            # no view was skipped


def test_a_replica_restarted_before_its_checkpoint_vote_went_out_sends_it():
    """K = L = 4 (a window of one checkpoint, which the config allows), replica 3 down:
    replica 2 logged checkpoint 4 and crashed before its vote went out. Restarted on its
    log it never sent the vote, checkpoint 4 never became stable, and seq 5 (above h + L)
    could never be proposed: the group stalled for good with 2f+1 correct replicas up."""
    cfg = PbftConfig(n=4, checkpoint_interval=4, watermark_window=4, batch_size=1,
                     max_outstanding=4, batch_timeout=0.0, view_change_timeout=0.5,
                     retransmit_interval=0.1)
    net = Net(config=cfg)
    net.down = {3}
    net.drop = lambda s, d, e: 2 in (s, d) and net.kind(e) == "checkpoint"
    for ts in range(1, 5):
        net.request(ts, f"add x {ts}".encode(), to=[0, 1, 2], run=True)
    assert [r.last_executed for r in net.reps[:3]] == [4, 4, 4]
    assert [r.h for r in net.reps[:3]] == [0, 0, 0]
    net.drop = lambda s, d, e: False
    net.restart(2)                                          # on its own storage
    assert net.reps[2].last_executed == 4 and 4 in net.reps[2].own_checkpoints
    net.request(5, b"add x 5", to=[0, 1, 2], run=True)
    net.run_for(10.0)
    assert [r.h for r in net.reps[:3]] == [4, 4, 4]
    assert all(r.last_executed >= 5 for r in net.reps[:3])
