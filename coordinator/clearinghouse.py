"""The cluster engine's ``Clearinghouse`` for one site agent: the PBFT coordinator, through
the site's own client.

- **The committed schedule, as this site sees it**: the agent's ``Ledger``, rebuilt from a
  ledger query (f+1 matching answers) when it starts and kept up to date from the watch
  stream (each update once f+1 replicas sent it identically), with the very transitions the
  coordinator's ledger makes (``agents.ledger_codec.apply_update``). A restarted agent
  rebuilds it the same way: nothing the agent keeps can be lost.
- **Its messages**: the site's ``SiteRound`` (its ends, its nodes, its decision), signed with
  the site's own key by the client and ordered by PBFT. One request is in flight at a time
  (PBFT's client model); a newer decision replaces a queued one, and the ends and node
  changes of both are sent together.
- **Liveness**: a signed heartbeat to every replica every ``heartbeat_s`` (never ordered).

Built in the agent's own process from ``ClearinghouseSpec`` -- plain data handed over by the
launcher (through Ray): the coordinator's configuration and the site's own keys, never a path
on another node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import grpc

from agora.agents.aio import cancel_and_wait
from agora.agents.domain import Cluster
from agora.agents.ledger import Ledger, TaskEntry
from agora.agents.ledger_codec import apply_update, restore_ledger, start_position
from agora.agents.step.seams import RoundInfo, SitePart
from agora.coordinator.client import CoordinatorClient
from agora.coordinator.client_errors import CoordinatorError, is_refusal
from agora.coordinator.config import config_from_dict
from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.site_messages import END_BYTES, merge, split_part, to_message
from agora.coordinator.site_standing import SiteStanding
from agora.coordinator.watch_merge import WatchRefused, rebuilt
from agora.protos.agora.v1 import coordinator_pb2 as pb

log = logging.getLogger(__name__)

MIN_BUDGET = 16 * 1024
"""the smallest budget of ends a message is split to before a refusal over a limit is final"""
CONTENT_REFUSALS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
"""refusals of what a message says (a fresh agent would not say it again), not of its key"""



@dataclass(frozen=True)
class ClearinghouseSpec:
    """What a site agent needs to reach the coordinator: plain data, picklable."""

    config: dict
    """the coordinator configuration (``CoordinatorConfig.to_dict()``)"""
    keys: dict
    """the group's public keys (``KeySet.public().to_dict()``) when ``identity`` is set;
    else the site client's key set holding its own secret (``KeySet.for_client``)"""
    client_id: str
    tls_pem: tuple[bytes, bytes, bytes] | None = None
    """with mutual TLS: (CA certificate, the site's certificate, its private key) as bytes,
    handed over through Ray (the agent's node need not have the head's certificate folder;
    it gets its own site's pair only)"""
    heartbeat_s: float = 3.0
    identity: Any = None
    """the site's own keys, made and kept on the agent's node
    (``coordinator.site_key.NodeIdentity``): the operator admits its public key
    (``public_key``) by an ordered command, and no secret leaves the node; None: ``keys``
    holds the site's secret"""

    def public_key(self) -> bytes | None:
        """The site's public key, its key made on this node first when missing (None: the
        key set given holds the secret)."""
        return None if self.identity is None else self.identity.public_key()

    def build(self, cluster: Cluster) -> PbftClearinghouse:
        cfg = dict(self.config)
        cfg.pop("source", None)
        config = config_from_dict(cfg)
        creds = None
        if self.tls_pem is not None:
            ca, cert, key = self.tls_pem
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                 certificate_chain=cert)
        keys = KeySet.from_dict(self.keys)
        if self.identity is not None:
            keys = keys.with_own_key(self.client_id, bytes(self.identity.signing_key()))
        return PbftClearinghouse(cluster=cluster, client=CoordinatorClient(
            config, keys, self.client_id, credentials=creds),
            heartbeat_s=self.heartbeat_s)


class PbftClearinghouse:
    """See the module docstring. ``on_update(started)`` is called after every update is
    applied, with the allocations it carried ((task, instance, node) triples)."""

    def __init__(self, *, cluster: Cluster, client: CoordinatorClient,
                 heartbeat_s: float = 3.0) -> None:
        self.cluster = cluster
        self.client = client
        self.heartbeat_s = heartbeat_s
        self.site_index = {s: i for i, s in enumerate(cluster.site_names)}
        self.node_index = {n.name: i for i, n in enumerate(cluster.nodes)}
        self.ledger = Ledger(max_attempts=cluster.faults.max_attempts)
        self.version = 0
        self._position = (0, -1)
        """(version, sub) of the last update applied"""
        self.round = RoundInfo(round=0, armed=False, armed_version=0, version=0)
        self.standing = SiteStanding()
        self.lapsed, self.nodes_down = self.standing.lapsed, self.standing.nodes_down
        self.removed_sites = self.standing.removed
        """the sites the operator removed (and did not admit back), kept as this one set
        (the agent's peer exchange refuses their codes: ``GrpcExchange.exclude``)"""
        self.on_update: Callable[[list[tuple[TaskEntry, int, int]]], None] = lambda s: None
        self._pending: SitePart | None = None
        self.redecide_at: int | None = None
        """a version at which this site must decide again for the round (see ``Result``)"""
        self._has_pending = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.trace: list[tuple[str, float, int]] | None = [] if os.environ.get(
            "AGORA_TRACE") else None
        self.removed: str | None = None
        """why this site's key is no longer the group's (the operator removed the site, or
        admitted another key for it), once f+1 replicas said so twice: its agent stops what
        it runs and acts no more (``_heartbeats``)"""
        self.lost_track: Callable[[str], None] | None = None
        """called (with why) when the committed schedule can no longer be followed from
        this view (its history was compacted away): the site agent restarts itself, which
        reads the ledger afresh (``agents/cluster/site_actor.py``)"""
        self.results: list[pb.Result] = []
        """the last few results of this site's messages (rejections are logged)"""
        self.sent = 0
        self.updates = 0

    # ---- lifecycle ----------------------------------------------------------------------
    async def _first_ledger(self, patience_s: float = 180.0):
        """The ledger, asked again while no f+1 replicas answer (UNAVAILABLE: the group is
        still starting, or busy with many agents starting at once), for up to
        ``patience_s``; also while its key is not admitted yet (UNAUTHENTICATED: the
        operator admits a site's key once its agent made it); any other refusal at once."""
        deadline = time.monotonic() + patience_s
        delay = 0.5
        while True:
            try:
                return await self.client.ledger()
            except CoordinatorError as e:
                waiting = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)
                if e.code not in waiting or time.monotonic() > deadline:
                    if e.code == grpc.StatusCode.UNAUTHENTICATED:
                        raise CoordinatorError(e.code, f"{e.message} -- client "
                                               f"{self.client.client_id!r} was not admitted "
                                               f"within {patience_s:g} s (agora site admit)",
                                               e.errors) from None
                    raise
                log.info("ledger query refused for now (%s); again in %.1f s", e.message, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
    async def start(self, on_update: Callable[[list[tuple[TaskEntry, int, int]]], None]
                    ) -> list[tuple[TaskEntry, int, int]]:
        """Rebuild the ledger from the coordinator, then follow its updates; returns every
        instance the ledger says is running (for the agent to reconcile with its executor)."""
        self.on_update = on_update
        view = await self._first_ledger()
        self.ledger = restore_ledger(view, self.site_index, len(self.node_index),
                                     self.cluster.faults.max_attempts)
        self.version = view.version
        self._position = start_position(view)
        r = view.round
        self.round = RoundInfo(round=r.round, armed=r.armed, armed_version=r.armed_version,
                               version=view.version)
        self.standing.take(view)
        self._tasks = [asyncio.create_task(self._follow(), name="watch"),
                       asyncio.create_task(self._send_loop(), name="send"),
                       asyncio.create_task(self._heartbeats(), name="heartbeat")]
        return [(ts, i, node) for ts in self.ledger.tasks.values()
                for i, (node, _) in ts.placements.items()]

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        await self.client.close()

    # ---- the seam --------------------------------------------------------------------------
    def round_info(self) -> RoundInfo:
        return self.round

    def submit(self, part: SitePart) -> None:
        self._pending = merge(self._pending, part)
        self._has_pending.set()

    @property
    def busy(self) -> bool:
        """A message is queued or in flight."""
        return self._pending is not None or self._in_flight

    _in_flight = False

    # ---- background ------------------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            try:
                async for u in self.client.watch(since_version=self._position[0]):
                    if (u.version, u.sub) <= self._position:
                        continue
                    if self.trace is not None:
                        self.trace.append(("update", time.time(), u.round.round, u.version))
                    try:
                        started = apply_update(self.ledger, u, self.site_index,
                                               self.node_index)
                    except Exception as e:  # noqa: BLE001 - this view is wrong: read anew
                        # it was skipped for good before (the watch reopened past it)
                        if self._lost(f"the update of version {u.version} does not "
                                      f"apply to this agent's view ({type(e).__name__}: {e})"):
                            return
                        raise
                    self._position = (u.version, u.sub)
                    self.version = u.version
                    r = u.round
                    self.round = RoundInfo(round=r.round, armed=r.armed,
                                           armed_version=r.armed_version,
                                           version=u.version)
                    self.standing.apply(u)
                    if rebuilt(u) and self._standing is None:
                        self._standing = asyncio.ensure_future(self._read_standing())
                        self._tasks = [t for t in self._tasks if not t.done()]
                        self._tasks.append(self._standing)
                    self.updates += 1
                    self.on_update(started)
            except asyncio.CancelledError:
                raise
            except WatchRefused as e:
                # fell behind the replicas' recent updates past compacted history: only a
                # fresh ledger read (a restarted agent) can follow again
                if self._lost(f"cannot follow the schedule from version "
                              f"{self._position[0]} ({e})"):
                    return
                await asyncio.sleep(10.0)
                continue
            except Exception:  # noqa: BLE001 - the watch is reopened from where it stopped
                log.exception("watch of the committed schedule failed; reopening")
            await asyncio.sleep(0.2)

    _standing: asyncio.Future | None = None

    async def _read_standing(self, tries: int = 3) -> None:
        """The sites' standing (lapsed, removed) and the nodes down, read anew from a ledger
        query: a version rebuilt from history (``watch_history.history``: a watch resumed past
        the replicas' kept updates -- cut off behind, or the replicas restarted) holds none
        of it. A review: a removal the agent met only rebuilt left the removed site's codes
        moving its decisions until the agent restarted."""
        try:
            for _ in range(tries):
                try:
                    view = await self.client.ledger()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the next rebuilt update asks again
                    log.exception("reading the sites' standing after a rebuilt update failed")
                    return
                if view.version >= self.version:  # (not behind what this view applied)
                    self.standing.take(view)
                    return
        finally:
            self._standing = None

    def _lost(self, why: str) -> bool:
        """This agent's view cannot follow the schedule any more: tell the agent (it restarts
        and reads the ledger afresh); False when nothing listens (logged)."""
        if self.lost_track is not None:
            self.lost_track(why)
            return True
        log.error("%s; restart this site's agent", why)
        return False

    _budget = END_BYTES
    """bytes of ends a message carries (``split_part``); smaller after a request over a
    limit"""

    async def _send_loop(self) -> None:
        while True:
            await self._has_pending.wait()
            self._has_pending.clear()
            part, self._pending = self._pending, None
            if part is None:
                continue
            part, rest = split_part(part, self._budget)
            if rest is not None:      # the rest goes next (its decision last of all)
                self._pending = merge(rest, self._pending) if self._pending else rest
                self._has_pending.set()
            self._in_flight = True
            try:
                if self.trace is not None:
                    self.trace.append(("send", time.time(), part.round))
                res = await self.client.submit_round(to_message(part))
                if self.trace is not None:
                    self.trace.append(("reply", time.time(), part.round))
                self.sent += 1
                self.results = (self.results + [res])[-16:]
                if part.bidding and not res.decided and res.round == part.round:
                    # its own ends opened work it did not see: decide again once it does
                    self.redecide_at = res.version
                    self.on_update([])
                for r in res.rejections:
                    log.info("site %s: %s: %s", part.site, r.field, r.reason)
            except CoordinatorError as e:
                if e.code == grpc.StatusCode.RESOURCE_EXHAUSTED and is_refusal(e.code,
                                                                              e.message) \
                        and self._budget > MIN_BUDGET:
                    # over a limit of what a request may hold: in smaller messages
                    self._budget = max(MIN_BUDGET, self._budget // 4)
                    self._pending = merge(part, self._pending) if self._pending else part
                    self._has_pending.set()
                    continue
                if e.code in CONTENT_REFUSALS and is_refusal(e.code, e.message):
                    # f+1 replicas refuse what it says: sent again, it was refused again,
                    # and every later part merged into it, for good (a review). Its ends
                    # are still at the runners: a fresh agent reports them again. (A key
                    # refused is not this: the heartbeats find a removed site out.)
                    log.error("site %s: message refused (%s)", part.site, e)
                    if self._lost(f"a message of this site was refused: {e.message}"):
                        return
                    continue
                # maybe executed, maybe not: send its reports again (a second copy of an end
                # is refused, harmlessly); its decision only if nothing newer replaced it
                log.warning("site %s: message not confirmed (%s); sending it again",
                            part.site, e)
                self._pending = merge(part, self._pending) if self._pending else part
                self._has_pending.set()
                await asyncio.sleep(0.5)
            except Exception as e:  # noqa: BLE001 - a part that cannot be written: start afresh
                log.exception("site %s: message not sent", part.site)
                if self._lost(f"a message of this site could not be sent: {e}"):
                    return
            finally:
                self._in_flight = False

    async def _heartbeats(self) -> None:
        """Beat; after beats no replica took, ask whether this site's key is still the
        group's: a removed site's agent went on running its work (unreported, the
        schedule had placed it again elsewhere: it ran twice) and knocking for good (a
        probe). Refused twice, 2f+1 replicas agreeing, the agent is told (``on_update``) and
        the watch and the beats stop."""
        unheard = refused = 0
        while True:
            try:
                took = await self.client.heartbeat(wait_s=self.heartbeat_s)
                unheard = 0 if took else unheard + 1
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the next beat may get through
                log.debug("heartbeat failed: %s", e)
            if unheard:
                why = await self._key_refused()
                refused = refused + 1 if why else 0
                if refused >= 2:
                    self.removed = why
                    log.warning("site %s: the group no longer has this site's key (%s): "
                                "stopping its work; restart the agent once it is admitted "
                                "again", self.client.client_id, why)
                    for t in self._tasks:
                        if t is not asyncio.current_task():
                            t.cancel()
                    self.on_update([])
                    return
            await asyncio.sleep(self.heartbeat_s)

    async def _key_refused(self) -> str | None:
        """The refusal 2f+1 replicas agree on (``client.refusal_need``) when this site's key
        is not the group's (None: it is, or too few answer to tell). The question is a
        query of one job id no job has: its signature is checked like any request's, and
        its answer (no such job) costs next to nothing -- beats refused for another reason
        (a clock far off) would otherwise read the whole ledger every few seconds."""
        try:
            await self.client.schedule(job_id=KEY_CHECK_JOB)
        except CoordinatorError as e:
            # no key (removed), or another key (the operator admitted a new one: this agent
            # signs with the old one until it is restarted with the new)
            if e.code == grpc.StatusCode.UNAUTHENTICATED and (
                    "no key for client" in e.message
                    or "does not verify with the key of client" in e.message):
                return e.message
        except Exception:  # noqa: BLE001 - not an answer: ask again later
            pass
        return None


KEY_CHECK_JOB = "agora-key-check"
"""the job id a site's key check asks for (``PbftClearinghouse._key_refused``)"""
