"""The cluster a live schedule was made on, kept beside the replicas' state
(``<out>/coordinator/cluster.json``): ``agora up`` resumes a schedule only on the same sites
and nodes. The replicated state numbers sites and nodes by their place in the cluster file
and holds what runs where; resumed on another cluster (a site added to the file), every job
that had completed went back to open and ran again (a probe of membership changes).
"""

from __future__ import annotations

import json
from pathlib import Path

from agora.agents.domain import Cluster

RECORD = "cluster.json"


def shape(cluster: Cluster) -> dict:
    """Sites in order, each with its nodes in order: name, cpu (millicores), memory (MiB),
    gpus and gpu model -- what the state's numbering and capacity rest on."""
    return {"sites": [{"site": s.name, "nodes": [[n.name, n.cpu, n.mem, n.gpus, n.gpu_model]
                                                 for n in s.nodes]} for s in cluster.sites]}


def check_or_record(folder: Path, cluster: Cluster, cluster_file: str) -> None:
    """Record ``cluster``'s shape in ``folder`` the first time; after, raise ValueError when
    it differs from the one recorded, saying how and what to do."""
    if not check(folder, cluster, cluster_file):
        (folder / RECORD).write_text(json.dumps(shape(cluster)))


def check(folder: Path, cluster: Cluster, cluster_file: str) -> bool:
    """Whether ``folder`` records a cluster (False: none yet, or unreadable -- a state made
    before the record, whose first resume records it); ValueError when it records another
    (``agora up`` asks before it detaches, so the operator reads why, exit 2)."""
    path = folder / RECORD
    now = shape(cluster)
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if before == now:
        return True
    old = [s["site"] for s in before.get("sites", [])]
    new = [s["site"] for s in now["sites"]]
    added = [s for s in new if s not in old]
    gone = [s for s in old if s not in new]
    what = "; ".join(x for x in (
        f"sites added: {', '.join(added)}" if added else "",
        f"sites gone: {', '.join(gone)}" if gone else "",
        "" if added or gone else "sites in another order, or their nodes changed")
        if x)
    raise ValueError(
        f"{cluster_file}: the cluster is not the one the schedule in {folder.parent} was made "
        f"on ({what}); a resumed schedule numbers sites and nodes as it began, and on another "
        f"cluster it would run completed work again. Expected the cluster it began with "
        f"(as recorded in {path}), or a fresh state (another `out` folder) for the new "
        f"cluster; to take a site out of a running schedule, agora site remove")
