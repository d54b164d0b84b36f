"""What each reader of the schedule sees (issue 16, finding 3).

The operator, auditors (``auditor:<name>``) and the replicas read everything. A site's client
(``site:<name>``) reads what concerns it, and of the rest only what the market needs:

- **in full**: everything about its own jobs (origin = the site), wherever they run, and
  everything that runs or ran on its own nodes;
- **the market**: every job as submitted (the open work every bidder must see to bid), the
  round, which sites are lapsed or removed, and each instance's state (waiting, open,
  running, done) -- a site's view of the ledger must move exactly as the coordinator's;
- **redacted**: where another site's work runs (in the ledger, the watch stream and the
  results of its own commands -- a round its decision closed -- which carry every
  instance's state: an allocation's site and node, a placement's node and gpus are
  ``FOREIGN_NODE`` / ""), why it ended (reasons, exit codes), cancellation reasons of
  others' jobs, and other sites' nodes going down;
- **left out**: others' allocations in schedule answers (``GetSchedule``: asked by site,
  a blank row would still say where): there it reads its own rows only.

Every correct replica redacts the same way (a pure function of its state and the reader; an
update of the watch stream, of the update and the reader: ``ScheduleUpdate.job_origins``), so
an answer f+1 replicas agree on is still the answer. Offline reads (``coordinator/offline.py``)
need the replicas' databases: whoever has them reads everything.
"""

from __future__ import annotations

from agora.agents.ledger_codec import FOREIGN_NODE
from agora.coordinator.schedule_rules import site_of_client
from agora.protos.agora.v1 import coordinator_pb2 as pb

__all__ = ["FOREIGN_NODE", "Scope", "reader_site", "scope_for"]


def reader_site(client_id: str) -> str | None:
    """The site whose view ``client_id`` gets; None: it reads everything."""
    return site_of_client(client_id)


class Scope:
    """Redaction for site ``site`` over the state ``st`` (its jobs' origins, its nodes)."""

    def __init__(self, st, site: str) -> None:
        self.st, self.site = st, site
        sl = st.capacity.site_slice[st.site_index[site]] if site in st.site_index else None
        self.own_nodes = range(sl.start, sl.stop) if sl is not None else range(0)
        self.own_node_names = {st.node_names[i] for i in self.own_nodes}

    def own_job(self, job_id: str) -> bool:
        js = self.st.ledger.jobs.get(job_id)
        return js is not None and js.job.origin == self.site

    # ---- rows ----------------------------------------------------------------------------
    def concerns(self, a: pb.Allocation) -> bool:
        """Whether allocation ``a`` is the site's business: on its nodes, or its job."""
        return a.site == self.site or self.own_job(a.job_id)

    def allocation(self, a: pb.Allocation) -> None:
        if not self.concerns(a):
            a.site, a.node = "", ""

    def only_own(self, rows) -> None:
        """Drop from the repeated field ``rows`` the allocations that are not the site's
        business (schedule answers)."""
        keep = [a for a in rows if self.concerns(a)]
        if len(keep) != len(rows):
            del rows[:]
            rows.extend(keep)

    def update(self, u: pb.ScheduleUpdate) -> pb.ScheduleUpdate:
        """A redacted copy of ``u`` (``u`` itself when nothing in it is another's). Whose a
        job is comes from the update itself (``job_origins``, as it was when it was made),
        not from the state now: a job since compacted, or its id submitted again by another
        site, reads the same at every replica, whenever the update is sent."""
        if not (u.allocations or u.changes or u.nodes or u.cancelled):
            return u
        out = pb.ScheduleUpdate()
        out.CopyFrom(u)
        own_jobs = {o.job_id for o in u.job_origins if o.site == self.site}
        for a in out.allocations:
            if a.site != self.site and a.job_id not in own_jobs:
                a.site, a.node = "", ""
        for c in out.changes:
            if c.site != self.site and c.job_id not in own_jobs:
                c.site, c.reason, c.exit_code = "", "", 0
        for c in out.cancelled:
            if c.job_id not in own_jobs:
                c.reason = ""
        mine = [n for n in out.nodes if n.node in self.own_node_names]
        if len(mine) != len(out.nodes):
            del out.nodes[:]
            out.nodes.extend(mine)
        return out

    def job_record(self, rec: pb.JobRecord) -> None:
        for t in rec.tasks:
            t.turns = 0          # the coordinator's own (a follower cannot count it)
        if rec.job.origin == self.site:
            return
        rec.reason = ""
        for t in rec.tasks:
            t.reason = ""
            own = [n for n in t.failed_nodes if n in self.own_nodes]
            if len(own) != len(t.failed_nodes):
                del t.failed_nodes[:]
                t.failed_nodes.extend(own)
            for p in t.running:
                if p.node not in self.own_nodes:
                    p.node = FOREIGN_NODE
                    del p.gpu_index[:]
                    del p.gpu_milli[:]

    def answer(self, out: pb.QueryResult) -> pb.QueryResult:
        if out.HasField("schedule"):
            self.only_own(out.schedule.allocations)
        if out.HasField("job_status") and out.job_status.origin != self.site:
            out.job_status.reason = ""
            for t in out.job_status.tasks:
                t.reason = ""
        if out.HasField("ledger"):
            for rec in out.ledger.jobs:
                self.job_record(rec)
            mine = [n for n in out.ledger.nodes_down if n in self.own_node_names]
            del out.ledger.nodes_down[:]
            out.ledger.nodes_down.extend(mine)
        return out


def scope_for(st, client_id: str) -> Scope | None:
    """``client_id``'s scope over ``st`` (None: it reads everything); kept per site."""
    site = reader_site(client_id)
    if site is None:
        return None
    scope = st.scopes.get(site)
    if scope is None:
        scope = Scope(st, site)
        if site in st.site_index:   # kept for the cluster's sites only (a review: one
            st.scopes[site] = scope  # kept for every 'site:<name>' a client named)
    return scope
