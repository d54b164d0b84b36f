"""Rounds in the replicated schedule: when a round closes, what closing it clears, and the
replicas' own votes (``close_round``, ``site_lapsed``) -- the half of ``ScheduleState``'s
commands that the replicas send and the clearing every command may trigger (a mixin; the
state's attributes are its own). A round closes once every expected site -- a live site that
can hold some open task now -- has decided, or on f+1 distinct replica votes; a site lapses
on f+1 votes that name the moment it was last heard."""

from __future__ import annotations

from agora.agents.ledger_book import LedgerBook
from agora.agents.market import clear
from agora.agents.sim.fitting import fitting_sites
from agora.coordinator.schedule_records import AllocationRow, runs
from agora.coordinator.schedule_rules import REPLICA_PREFIX, Rejected, replica_of_client
from agora.protos.agora.v1 import coordinator_pb2 as pb


class RoundCommands:
    def _do_close_round(self, client_id: str, msg: pb.CloseRound, seq: int,
                        res: pb.Result) -> None:
        voter = self._voter(client_id, "close_round")
        if msg.round != self.round:
            raise Rejected("close_round.wrong_round", "command.close_round.round",
                           f"round {msg.round} is not the current round {self.round}")
        if not self.armed:
            raise Rejected("close_round.idle", "command.close_round.round",
                           f"round {msg.round} is not armed: nothing to close")
        self.close_votes.add(voter)
        res.accepted = 1
        if len(self.close_votes) >= self.votes_needed:
            self._close(res)

    def _do_site_lapsed(self, client_id: str, msg: pb.SiteLapsed, seq: int,
                        res: pb.Result) -> None:
        voter = self._voter(client_id, "site_lapsed")
        info = self.sites.get(msg.site)
        if info is None:
            raise Rejected("site_lapsed.unknown_site", "command.site_lapsed.site",
                           f"unknown site {msg.site!r}")
        if msg.last_heard != info.last_heard:
            raise Rejected("site_lapsed.stale", "command.site_lapsed.last_heard",
                           f"{msg.last_heard}; the site was last heard at {info.last_heard}")
        if msg.withdraw:
            info.lapse_votes.discard(voter)
            res.accepted = 1
            return
        if info.lapsed:
            return
        info.lapse_votes.add(voter)
        res.accepted = 1
        if len(info.lapse_votes) < self.votes_needed:
            return
        self._lapse(msg.site, f"site {msg.site} lapsed")
        self._maybe_close(res)

    def _lapse(self, site: str, reason: str) -> None:
        """Site ``site`` is gone: its running instances are lost (and reopened), its part of
        the round dropped, and no round waits for it until it sends again."""
        info = self.sites[site]
        if info.lapsed:
            return
        info.lapsed, info.lapse_votes = True, set()
        sl = self.capacity.site_slice[self.site_index[site]]
        for ts, inst in self._running_on(lambda n: sl.start <= n < sl.stop):
            self._stop(ts, inst, "lost", 0.0, 0.0, 0, reason)
        self.parts.pop(site, None)
        self._update.sites.add(site=site, lapsed=True)

    def _voter(self, client_id: str, kind: str) -> int:
        i = replica_of_client(client_id, self.n_replicas)
        if i is None:
            raise Rejected(f"{kind}.not_a_replica", f"command.{kind}",
                           f"client {client_id!r} may not vote; only the replicas "
                           f"({REPLICA_PREFIX}0..{self.n_replicas - 1}) close rounds and "
                           f"lapse sites")
        return i

    # ---- rounds -----------------------------------------------------------------------
    def live_sites(self) -> list[bool]:
        """Per site, in cluster order: live (not lapsed)."""
        return [not self.sites[s].lapsed for s in self.site_names]

    def expected_sites(self) -> list[str]:
        """Live sites that can hold some open task now (each must decide before the round
        closes on its own)."""
        cap, pool = self.capacity, self.ledger.pool
        live = [i for i, ok in enumerate(self.live_sites()) if ok]
        # kept until the open shapes, the free capacity or the lapsed sites change: every
        # site part asks, and a site that opened 20,000 shapes no site can hold made each
        # ask walk them all (a review: 0.13 s a heartbeat on every replica)
        key = (pool.shape_version, cap.version, tuple(live))
        if self._expected is not None and self._expected[0] == key:
            return list(self._expected[1])
        found = fitting_sites(cap, pool.shapes(), set(live))
        out = [self.site_names[i] for i in live if i in found]
        self._expected = (key, tuple(out))
        return out

    def decided(self) -> list[str]:
        """Sites whose decision counts for the current round."""
        return [s for s in self.site_names if s in self.parts and self.parts[s].counts]

    def _maybe_close(self, res: pb.Result) -> None:
        if not self.armed or not self.parts:
            return
        decided = set(self.decided())
        if all(s in decided for s in self.expected_sites()):
            self._close(res)

    def _close(self, res: pb.Result) -> None:
        """Clear every decision of the round together, and open the next round."""
        book = LedgerBook(self.ledger, self.capacity, self.pref,
                          live=self.live_sites(), reopened=self.reopened)
        bids = [b for s in self.site_names if s in self.parts for b in self.parts[s].bids]
        cleared = clear(bids, book)
        for _, why in cleared.rejected:
            self.rejected["clearing." + why.split(":")[0].replace(" ", "_")] += 1
        by_task: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for ts, i, node in book.placed:
            by_task.setdefault(ts.key, []).append((i, node))
        new: list[AllocationRow] = []
        site_names, node_names, seq, rnd = (self.node_site_names, self.node_names, self._seq,
                                            self.round)
        first, add = len(res.allocations), res.allocations.add
        for (job, task), placed in by_task.items():   # insertion order = clearing order
            for b, e, node in runs(placed):
                site, name = site_names[node], node_names[node]
                new.append((job, task, b, e, site, name, seq, rnd))
                add(job_id=job, task_id=task, instance_begin=b, instance_end=e, site=site,
                    node=name, version=seq, round=rnd)
        self.allocations.extend(new)
        self._update.allocations.extend(res.allocations[first:])
        self.closed_round_armed_seq = self.armed_version
        self.round += 1
        self.parts.clear()
        self.reopened.clear()
        self.close_votes.clear()
        # a deferred bid held back (its task reopened in this round) is for the next one
        self.armed = bool(new) or self.rearm or book.held_back > 0
        self.rearm = False
        if self.armed:
            self.armed_version = self._seq
