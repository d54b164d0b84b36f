"""A replica's watch over the sites (the mixin of ``round_keeper.RoundKeeper``): their
signed heartbeats (unordered), and its ``SiteLapsed`` votes -- for a site that owes something
and is silent here for ``site_timeout_s``, or holds an instance past its task's timeout --
and their withdrawal once the site is heard again. The attributes are the keeper's."""

from __future__ import annotations

import logging
import struct
import time

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from agora.coordinator.read_auth import WINDOW_MS
from agora.coordinator.schedule_rules import client_id_problem
from agora.coordinator.schedule_state import site_of_client
from agora.protos.agora.v1 import coordinator_pb2 as pb

log = logging.getLogger(__name__)

HEARTBEAT_DOMAIN = b"agora.v1.Heartbeat"
OVERDUE_EVERY_S = 5.0
"""How often a replica looks for instances running past their timeout (a walk over the
running instances of tasks with a ``timeout_s``)."""


STALL_S = 2.0
"""A gap longer than this between a replica's two checks (every 0.25 s) means the replica did
not run -- stopped, or its event loop held -- and heard no one meanwhile: that time is not
counted as the sites' silence (``SiteLapses._discount_stall``)."""


def overdue_s(timeout_s: float) -> float:
    """How long an instance of a task with ``timeout_s`` may run, as a replica sees it (from
    the execution of its allocation), before its site is voted lapsed: the timeout, a tenth
    more, and a minute for the site to start it and to report its end."""
    return timeout_s * 1.1 + 60.0


def heartbeat_bytes(client_id: str, timestamp_us: int) -> bytes:
    return (HEARTBEAT_DOMAIN + b"\x00" + client_id.encode("utf-8", "surrogatepass") + b"\x00"
            + struct.pack("<q", timestamp_us))


def sign_heartbeat(signer: SigningKey, client_id: str,
                   timestamp_us: int) -> pb.HeartbeatRequest:
    sig = signer.sign(heartbeat_bytes(client_id, timestamp_us)).signature
    return pb.HeartbeatRequest(client_id=client_id, timestamp_us=timestamp_us, signature=sig)


class SiteLapses:
    def heartbeat(self, hb: pb.HeartbeatRequest) -> str | None:
        """Record a site's heartbeat; returns why it was refused, or None."""
        bad = client_id_problem(hb.client_id)
        if bad is not None:
            return f"client_id: {bad}"
        vk = (self._verify.get(hb.client_id) if site_of_client(hb.client_id) is not None
              else None)
        if vk is None:
            return (f"client_id: {hb.client_id!r} is not a site client of the key file nor an "
                    f"admitted site")
        if len(hb.signature) != 64:
            return "signature: expected 64 bytes (Ed25519)"
        now_us = time.time_ns() // 1000
        if abs(hb.timestamp_us - now_us) > WINDOW_MS * 1000:
            return (f"timestamp_us: {hb.timestamp_us} is {abs(hb.timestamp_us - now_us) // 1000} "
                    f"ms from this replica's clock; expected the sender's current time in "
                    f"microseconds, within {WINDOW_MS} ms (check the clock)")
        try:
            vk.verify(heartbeat_bytes(hb.client_id, hb.timestamp_us), hb.signature)
        except (BadSignatureError, ValueError):
            return f"signature: does not verify with the key of {hb.client_id!r}"
        if hb.timestamp_us <= self._last_ts.get(hb.client_id, 0):
            return "timestamp_us: not newer than the last heartbeat (a replay)"
        self._last_ts[hb.client_id] = hb.timestamp_us
        self.heard[site_of_client(hb.client_id)] = time.monotonic()
        return None

    async def _vote_lapses(self, now: float) -> None:
        """Vote lapsed each owing site silent here for ``site_timeout_s`` or holding an
        overdue instance; take back the votes for sites heard again."""
        app = self.app
        self._discount_stall(now)
        overdue = self._overdue(now)
        await self._withdraw_votes(now)
        for site in self._owing():
            info = app.sites[site]
            last = self._heard_at(site)
            if now - last < self.site_timeout_s and site not in overdue:
                continue
            prev = self._voted_lapse.get(site)
            if prev is not None and prev[0] == info.last_heard and \
                    now - prev[1] < self.site_timeout_s:
                continue
            self._voted_lapse[site] = (info.last_heard, now)
            if site in overdue:
                log.warning("replica %d: site %s holds %s past its timeout_s; voting it "
                            "lapsed", self.index, site, overdue[site])
            else:
                log.warning("replica %d: no heartbeat from site %s for %.1f s; voting it "
                            "lapsed", self.index, site, now - last)
            await self._send("site_lapsed", pb.SiteLapsed(site=site,
                                                          last_heard=info.last_heard))

    def _discount_stall(self, now: float) -> None:
        """After a gap of more than ``STALL_S`` since the last check, when sites were last
        heard moves on by the gap (to now at most): a probe stopped two replicas for 60 s
        (SIGSTOP); resumed, they counted the minute as every site's silence and voted each
        lapsed, f+1 votes, and healthy sites' runs were killed and run again."""
        last, self._last_check = self._last_check, now
        gap = now - last if last is not None else 0.0
        if gap <= STALL_S:
            return
        for site, heard in self.heard.items():
            self.heard[site] = min(heard + gap, now)
        self.started = min(self.started + gap, now)
        log.warning("replica %d: did not run for %.1f s (stopped, or its event loop held); "
                    "that time is not counted as the sites' silence", self.index, gap)

    async def _withdraw_votes(self, now: float) -> None:
        """Take back a lapse vote for a site this replica hears again (and that holds
        nothing overdue): a vote stood until the site's next ordered message, which a site
        busy with long work may not send for hours -- two short silences at two replicas
        hours apart lapsed it (a review). Sent again every ``site_timeout_s`` while the vote
        still counts."""
        app = self.app
        for site, (last_heard, voted_at) in list(self._voted_lapse.items()):
            info = app.sites.get(site)
            if info is None or info.lapsed or info.last_heard != last_heard:
                del self._voted_lapse[site]     # moot: lapsed, or heard in order since
                self._withdrawn.pop(site, None)
                continue
            if self.index not in info.lapse_votes or site in self._overdue_now or \
                    self.heard.get(site, float("-inf")) <= voted_at:
                continue
            sent = self._withdrawn.get(site)
            if sent is not None and now - sent < self.site_timeout_s:
                continue
            self._withdrawn[site] = now
            log.info("replica %d: site %s is heard again; withdrawing its lapse vote",
                     self.index, site)
            await self._send("site_lapsed", pb.SiteLapsed(site=site, last_heard=last_heard,
                                                          withdraw=True))

    def _overdue(self, now: float) -> dict[str, str]:
        """Sites holding an instance that has run here longer than its task's ``timeout_s``
        allows (``overdue_s``): site -> the first such instance. Its node's runner kills it
        at ``timeout_s`` and the site reports the end, so a site that holds it longer is
        stuck or faulty (a review: a site that won instances and never reported their ends
        held them, and their job, for good). Checked every ``OVERDUE_EVERY_S``."""
        if now < self._next_overdue:
            return {}
        self._next_overdue = now + OVERDUE_EVERY_S
        app = self.app
        nodes = app.cluster.nodes
        out: dict[str, str] = {}
        seen: dict[tuple, float] = {}
        for ts in app.ledger.tasks.values():
            run = ts.task.run
            if not ts.running or run is None or run.timeout_s is None:
                continue
            limit = overdue_s(run.timeout_s)
            for inst, version in ts.placed_at.items():
                began = self.exec_time.get(version)
                if began is None:     # not since then, here: counted from when first seen
                    # (a review: from this replica's start, which voted a site lapsed 600 s
                    # into a one-hour task once a day-old replica pruned its version)
                    key = (ts.key, inst, version)
                    began = seen[key] = self._first_seen.get(key, now)
                site = nodes[ts.placements[inst][0]].site
                if now - began > limit and site not in out:
                    out[site] = f"{ts.job.job.id}/{ts.task.id}[{inst}] ({now - began:.0f} s)"
        self._first_seen = seen
        self._overdue_now = out
        return out

    def silent(self, now: float) -> list[str]:
        """Live sites whose heartbeats have not reached this replica for ``site_timeout_s``
        (one never heard since this replica started: for the longer of that and
        ``site_start_grace_s``), whether or not they owe anything -- a site that owes
        nothing is not voted lapsed, so without this its agent could be gone for good (a
        site ``agora up`` started without one: its Ray node was dead) while ``agora site
        list`` called it live (a probe). For the replica's status; never ordered."""
        out = []
        for site in self.app.site_names:
            if self.app.sites[site].lapsed:
                continue
            if now - self._heard_at(site) >= self.site_timeout_s:
                out.append(site)
        return out

    def _heard_at(self, site: str) -> float:
        """When this replica last heard ``site``; for one not heard since it started, a
        time that makes it silent only after the longer of ``site_timeout_s`` and
        ``site_start_grace_s``."""
        last = self.heard.get(site)
        if last is None:
            return self.started + max(0.0, self.site_start_grace_s - self.site_timeout_s)
        return last

    def _owing(self) -> list[str]:
        """Live sites that hold running work or are expected to decide now."""
        app, cap = self.app, self.app.capacity
        expected = set(app.expected_sites()) if app.armed else set()
        out = []
        for i, site in enumerate(app.site_names):
            if app.sites[site].lapsed:
                continue
            sl = cap.site_slice[i]
            busy = bool((cap.free_cpu[sl] < cap.cap_cpu[sl]).any()
                        or (cap.free_mem[sl] < cap.cap_mem[sl]).any()
                        or (cap.free_gpu[sl] < cap.cap_gpu[sl]).any())
            if busy or site in expected:
                out.append(site)
        return out
