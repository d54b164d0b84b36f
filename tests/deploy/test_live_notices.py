"""``agora up`` says when a node goes down or comes back and when a site lapses (a probe: a
node whose Ray node died was placed around in silence, the web view still listing its agent
as normal). The notices come from the committed updates the operator's client follows."""

from __future__ import annotations

import collections

from agora.deploy.live_progress import Follower
from agora.protos.agora.v1 import coordinator_pb2 as pb


def test_node_and_site_changes_become_one_line_each():
    f = Follower.__new__(Follower)          # its update handler alone: no system behind it
    f.notices, f.lapsed = collections.deque(maxlen=10), set()
    f._noticed(pb.ScheduleUpdate(version=7, nodes=[pb.NodeState(node="edge-c/n0", up=False)],
                                 sites=[pb.SiteStatus(site="edge-c", lapsed=True)]))
    f._noticed(pb.ScheduleUpdate(version=9, nodes=[pb.NodeState(node="edge-c/n0", up=True)],
                                 sites=[pb.SiteStatus(site="edge-c"),
                                        pb.SiteStatus(site="dc-a", key=b"k"),   # admitted
                                        pb.SiteStatus(site="gone", removed=True)]))
    assert f.drain() == [
        "node edge-c/n0 is down (its site says so); what ran there is placed again",
        "site edge-c lapsed (its agent went silent, or it held an instance past its "
        "timeout_s); its running work is placed again",
        "node edge-c/n0 is up again (its site says so)",
        "site edge-c is back"]
    assert f.drain() == []
