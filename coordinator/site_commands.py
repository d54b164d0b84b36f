"""A site's own message (``SiteRound``) in the replicated schedule: the instances that ended
there, its nodes' states, and its decision for the current round -- the half of
``ScheduleState``'s commands that a site sends (a mixin; the state's attributes are its
own). No site can act for another: every end must be an instance running at that site,
every node one of its own, every bid is checked against its own free resources."""

from __future__ import annotations

import math
from typing import Callable

from agora.agents.ledger import TaskEntry
from agora.agents.market import admit_offers
from agora.coordinator.schedule_records import SitePart, change_pb
from agora.coordinator.schedule_rules import (END_KINDS, MAX_REASON_BYTES, SITE_PREFIX, Rejected,
                                              part_over_limit, site_of_client)
from agora.protos.agora.v1 import coordinator_pb2 as pb


class SiteCommands:
    def _do_site_round(self, client_id: str, msg: pb.SiteRound, seq: int,
                       res: pb.Result) -> None:
        where = "command.site_round"
        site = self._sender_is(client_id, msg.site, f"{where}.site")
        over = part_over_limit(msg)
        if over is not None:
            name, count, most = over
            raise Rejected(f"site_round.too_many_{name}", f"{where}.{name}",
                           f"{count} {name}; the limit is {most} per part")
        info = self.sites[msg.site]
        info.last_heard = seq
        info.lapse_votes.clear()
        if info.lapsed:
            info.lapsed = False
            self._update.sites.add(site=msg.site, lapsed=False)
            self._arm()
        opened = self._opened_count
        for i, e in enumerate(msg.ends):
            try:
                self._end(site, msg.site, e, f"{where}.ends[{i}]")
                res.accepted += 1
            except Rejected as r:
                self._count(res, r)
        named: set[str] = set()
        downs: list[tuple[int, str]] = []
        for i, ns in enumerate(msg.nodes):
            try:
                if ns.node in named:       # a node once a part, with its state now
                    raise Rejected("node.repeated", f"{where}.nodes[{i}].node",
                                   f"{ns.node!r} is already in this part; expected each "
                                   f"node once, with its state now")
                named.add(ns.node)
                self._node(site, msg.site, ns, f"{where}.nodes[{i}]", downs)
            except Rejected as r:
                self._count(res, r)
        self._stop_on(downs)
        try:
            if msg.bidding:
                self._decide(site, msg, res, where, counts=self._opened_count == opened)
        finally:
            # the ends and node states above apply even when the decision is refused (a
            # stale round): they may have left every expected site decided
            self._maybe_close(res)

    def _sender_is(self, client_id: str, site: str, where: str) -> int:
        if site not in self.site_index:
            raise Rejected("site_round.unknown_site", where,
                           f"unknown site {site!r}; expected one of {sorted(self.site_index)}")
        if site_of_client(client_id) != site:
            raise Rejected("site_round.wrong_site", where,
                           f"client {client_id!r} may not act for site {site!r}; expected "
                           f"the client id {SITE_PREFIX}{site}")
        return self.site_index[site]

    def _end(self, site: int, site_name: str, e: pb.End, at: str) -> None:
        ts = self.ledger.tasks.get((e.job_id, e.task_id))
        if ts is None:
            raise Rejected("end.unknown_task", f"{at}.task_id",
                           f"no task {e.job_id!r}/{e.task_id!r}")
        if not 0 <= e.instance < ts.task.instances:
            raise Rejected("end.bad_instance", f"{at}.instance",
                           f"{e.instance}; expected 0..{ts.task.instances - 1}")
        placed = ts.placements.get(e.instance)
        if placed is None or self.capacity.node_site[placed[0]] != site:
            raise Rejected("end.not_running", f"{at}.instance",
                           f"instance {e.instance} of {e.job_id}/{e.task_id} is not running "
                           f"at site {site_name!r}; expected an instance it runs")
        run = ts.placed_at.get(e.instance)
        if e.run and e.run != run:
            raise Rejected("end.stale_run", f"{at}.run",
                           f"run {e.run} of instance {e.instance} of {e.job_id}/{e.task_id} "
                           f"is over; it runs now as run {run}; expected the run that ended "
                           f"(a copy of an end sent again after its instance was placed "
                           f"anew ends nothing)")
        kind = END_KINDS.get(e.kind)
        if kind is None:
            raise Rejected("end.bad_kind", f"{at}.kind", f"{e.kind}; expected END_COMPLETED, "
                           f"END_FAILED or END_LOST")
        if not (math.isfinite(e.start_s) and math.isfinite(e.end_s)
                and 0 <= e.start_s <= e.end_s):
            raise Rejected("end.bad_time", f"{at}.end_s", f"start {e.start_s!r}, end "
                           f"{e.end_s!r}; expected finite 0 <= start_s <= end_s")
        if len(e.reason.encode("utf-8", "surrogatepass")) > MAX_REASON_BYTES:
            raise Rejected("end.bad_reason", f"{at}.reason",
                           f"expected at most {MAX_REASON_BYTES} bytes")
        self._stop(ts, e.instance, kind, e.start_s, e.end_s, e.exit_code, e.reason)

    def _stop(self, ts: TaskEntry, inst: int, kind: str, start_s: float, end_s: float,
              exit_code: int, reason: str) -> None:
        """Instance ``inst`` of ``ts`` stopped as ``kind``: release its node, move the ledger
        on, record the change."""
        if kind == "completed":
            node, slots = self.ledger.complete(ts, inst, end_s)
        else:
            (node, slots), reopened = self.ledger.fail(ts, inst, end_s,
                                                      count=kind == "failed", reason=reason,
                                                      mark=kind in ("failed", "lost"))
            if reopened:
                self.opened_seq[ts.key] = self._seq
                self._opened_count += 1
                self.reopened.add(ts.key)
        self.capacity.release(node, ts.demand, slots)
        self._arm()
        site = self.node_site_names[node]
        row = (self._seq, ts.job.job.id, ts.task.id, inst, inst + 1, site, kind, start_s, end_s,
               exit_code, reason)
        self.changes.append(row)
        self._update.changes.append(change_pb(row))

    def _node(self, site: int, site_name: str, ns: pb.NodeState, at: str,
              downs: list[tuple[int, str]]) -> None:
        """Apply a node's state; a node that went down is added to ``downs`` (node, name),
        whose instances ``_stop_on`` stops."""
        node = self.node_index.get(ns.node)
        if node is None or self.capacity.node_site[node] != site:
            raise Rejected("node.not_own", f"{at}.node", f"{ns.node!r} is not a node of site "
                           f"{site_name!r}; expected one of its own")
        if ns.up == (node not in self.nodes_down):
            return                        # no change
        if ns.up:
            self.nodes_down.discard(node)
            self.capacity.set_alive(node, True)
            self._arm()
        else:
            self.nodes_down.add(node)
            self.capacity.set_alive(node, False)
            downs.append((node, ns.node))
        self._update.nodes.add(node=ns.node, up=ns.up)

    def _stop_on(self, downs: list[tuple[int, str]]) -> None:
        """The running instances of the nodes of ``downs`` are lost: node by node in that
        order, each node's in admission and instance order (as one walk per node did), found
        in one walk of the ledger (a review: a part of 4,096 nodes going down walked a ledger
        of 20,000 tasks once per node, ~14 s on every replica, repeatable)."""
        if not downs:
            return
        which = {node for node, _ in downs}
        by_node: dict[int, list[tuple[TaskEntry, int]]] = {}
        for ts, inst in self._running_on(lambda n: n in which):
            by_node.setdefault(ts.placements[inst][0], []).append((ts, inst))
        for node, name in downs:
            for ts, inst in by_node.get(node, ()):
                self._stop(ts, inst, "lost", 0.0, 0.0, 0, f"node {name} went down")

    def _running_on(self, pick: Callable[[int], bool]) -> list[tuple[TaskEntry, int]]:
        """(task, instance) of every running instance whose node ``pick`` accepts, in
        admission and instance order."""
        out = []
        for js in self.ledger.jobs.values():
            for ts in js.tasks:
                if ts.running:
                    out.extend((ts, i) for i in sorted(ts.placements)
                               if pick(ts.placements[i][0]))
        return out

    def _decide(self, site: int, msg: pb.SiteRound, res: pb.Result, where: str, *,
                counts: bool) -> None:
        if msg.round != self.round:
            if msg.round < self.round and not self.armed and \
                    msg.site in self.expected_sites():
                # a late site's decision for a round that closed without it (votes, a
                # lapse) and allocated nothing: the next round is armed for it to decide
                # again (a review: it stayed disarmed, and work only that site could hold
                # waited for an unrelated event). Only a site that does decide re-arms:
                # re-arming for every site late at a close let a site that never decides
                # keep empty rounds going for good (a second review).
                self._arm()
            raise Rejected("site_round.wrong_round", f"{where}.round",
                           f"round {msg.round} is not the current round; expected {self.round}")
        if msg.seen_version < 0:
            raise Rejected("site_round.bad_version", f"{where}.seen_version",
                           f"{msg.seen_version}; expected >= 0")
        offers = msg.bids      # pb.Bid has Offer's fields: no copy per bid
        bids, refused = admit_offers(self.ledger, self.capacity, site, msg.site, offers,
                                     self.live_sites())
        for r in refused:
            self._count(res, Rejected(r.kind, f"{where}.bids[{r.index}].{r.field}", r.reason))
        gone = {r.index for r in refused}
        kept = [o for i, o in enumerate(offers) if i not in gone] if gone else list(offers)
        self.parts[msg.site] = SitePart(min(msg.seen_version, self._seq), kept, bids, counts)
        res.accepted += len(bids)
        res.decided = counts
