"""The cluster a live schedule was made on, kept beside the replicas' state
(``<out>/coordinator/cluster.json``): ``agora up`` resumes a schedule only on the same sites
and nodes. The replicated state numbers sites and nodes by their place in the cluster file
and holds what runs where; resumed on another cluster (a site added to the file), every job
that had completed went back to open and ran again (a probe of membership changes).

Beside it, the state machine's rules that come from the configuration (``rules``:
``retain_finished_jobs``, ``max_unfinished_jobs_per_site``): replicas resume from
checkpoints of their own and replay their logs after them, so a rule changed between two
runs would make them replay the same log to different states.
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


LEGACY_RULES = {"retain_finished_jobs": 0, "max_unfinished_jobs_per_site": 0}
"""The rules of a state recorded before rules were (or before a rule was): it kept every
job, and bounded no site's unfinished jobs."""


def rules(coordinator: dict, folder: Path | None = None) -> dict:
    """The state machine's rules an ``agora up`` configuration's ``coordinator:`` overrides
    give: a rule it sets, else the one recorded for the state in ``folder`` (a resumed state
    goes on by its own rule, ``LEGACY_RULES`` for a record without rules), else the
    default."""
    from agora.coordinator.config import CoordinatorConfig

    recorded = recorded_rules(folder) if folder is not None else None
    out = {}
    for name in LEGACY_RULES:
        # a state recorded before the rule was went on without it: its log replays alike
        default = (LEGACY_RULES[name] if recorded is not None
                   else CoordinatorConfig.__dataclass_fields__[name].default)
        out[name] = coordinator.get(name, (recorded or {}).get(name, default))
    return out


def recorded_rules(folder: Path) -> dict | None:
    """The rules recorded for the state in ``folder``: ``LEGACY_RULES`` for a record without
    them, or for replicas' databases without a record (a state older than both); None for a
    fresh state."""
    try:
        before = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return LEGACY_RULES if any((folder / "data").glob("replica-*.sqlite")) else None
    return before.get("rules", LEGACY_RULES) if isinstance(before, dict) else None


def check_or_record(folder: Path, cluster: Cluster, cluster_file: str,
                    state_rules: dict | None = None) -> None:
    """Record ``cluster``'s shape (and ``state_rules``) in ``folder`` the first time; after,
    raise ValueError when it differs from the one recorded, saying how and what to do."""
    if not check(folder, cluster, cluster_file, state_rules):
        record = shape(cluster)
        if state_rules is not None:
            record["rules"] = state_rules
        (folder / RECORD).write_text(json.dumps(record))


def check(folder: Path, cluster: Cluster, cluster_file: str,
          state_rules: dict | None = None) -> bool:
    """Whether ``folder`` records a cluster and the rules (False: none yet, or unreadable --
    a state made before the record, whose first resume records it); ValueError when it
    records another cluster or other rules (``agora up`` asks before it detaches, so the
    operator reads why, exit 2)."""
    path = folder / RECORD
    now = shape(cluster)
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(before, dict) or not isinstance(before.get("sites", []), list) or \
            not all(isinstance(s, dict) and "site" in s for s in before.get("sites", [])) or \
            not isinstance(before.get("rules", {}), dict):
        return False     # JSON, but no record (a review: AttributeError in agora up): as
                         # unreadable, recorded anew
    kept = before.pop("rules", None)
    if before == now:
        if state_rules is None:
            return True
        # recorded before rules were, or before one of them was: by the legacy value
        legacy = kept is None or any(k not in kept for k in LEGACY_RULES)
        kept = {**LEGACY_RULES, **(kept or {})}
        changed = [f"{k}: {kept.get(k)!r} -> {v!r}" for k, v in state_rules.items()
                   if kept.get(k) != v]
        if changed:
            raise ValueError(
                f"coordinator: {'; '.join(changed)}: the schedule in {folder.parent} was made "
                f"with the rule as recorded in {path}, and its replicas replay their logs by "
                f"it; expected the same value, or a fresh state (another `out` folder)")
        return not legacy          # a record without (all) rules takes them (the same values)
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
