"""The operator's membership commands in the replicated schedule (a mixin of
``ScheduleState``, whose attributes are its own): ``admit_site`` gives client
``site:<name>`` the public key the site made on its own node, ``remove_site`` revokes it.

The schedule keeps ``members``: site -> its admitted Ed25519 public key, or b"" once
removed; a site absent from it is judged by the key file (a group whose key file lists the
sites' keys, as tests and benchmarks make). The PBFT core asks ``governs`` and
``member_key`` to check every request of a site client against the key its place in the
log gives it (``coordinator/pbft/auth.py``), so an admission, a rotation and a removal take
effect at one point of the order on every correct replica: no request signed with a revoked
key executes after its removal, whichever replica received it first.

A removal also lapses the site at once (its running instances are lost and reopened for the
others; no round waits for it); being revoked, it cannot come back by sending, only by a
new admission.
"""

from __future__ import annotations

from agora.coordinator.pbft.auth import usable_public_key
from agora.coordinator.schedule_rules import (MAX_CANCEL_REASON, OPERATOR, SITE_PREFIX,
                                              Rejected, site_of_client)
from agora.protos.agora.v1 import coordinator_pb2 as pb


class MembershipCommands:
    # ---- what the PBFT core asks ---------------------------------------------------------
    def governs(self, client_id: str) -> bool:
        """Site clients: their keys are the schedule's to give (see module doc)."""
        return site_of_client(client_id) is not None

    def member_key(self, client_id: str) -> bytes | None:
        """The key ``client_id`` must sign with now: the site's admitted key for its client
        ``site:<name>``; b"" (revoked) for a removed site's clients and for the other clients
        of an admitted site (``site:<name>/<k>``: the key file's keys no longer speak for a
        site the log governs); None when the log has said nothing of the site (the key file
        decides). Once a site has an entry it keeps one: the PBFT core relies on that."""
        site = site_of_client(client_id)
        key = self.members.get(site) if site is not None else None
        if key is None:
            return None
        return key if key and client_id == SITE_PREFIX + site else b""

    def _site_status(self, site: str) -> pb.SiteStatus:
        """This update's entry for ``site``, made with its state now if there is none. An
        entry says the whole of a site's standing: lapsed, and removed (the agents stop
        taking a removed site's peer codes -- its certificate is still the CA's, and its
        agent may still run -- and take them again once it is admitted back)."""
        for s in self._update.sites:
            if s.site == site:
                return s
        return self._update.sites.add(site=site, lapsed=self.sites[site].lapsed)

    # ---- commands ------------------------------------------------------------------------
    def _operator_only(self, client_id: str, kind: str) -> None:
        if client_id != OPERATOR:
            raise Rejected(f"{kind}.not_allowed", f"command.{kind}",
                           f"client {client_id!r} may not change who is a member; only the "
                           f"operator ({OPERATOR!r}) admits and removes sites")

    def _member_site(self, site: str, kind: str) -> None:
        if site not in self.site_index:
            raise Rejected(f"{kind}.unknown_site", f"command.{kind}.site",
                           f"unknown site {site!r}; expected one of {sorted(self.site_index)}")

    def _do_admit_site(self, client_id: str, msg: pb.AdmitSite, seq: int,
                       res: pb.Result) -> None:
        self._operator_only(client_id, "admit_site")
        self._member_site(msg.site, "admit_site")
        if not usable_public_key(msg.verify_key):
            raise Rejected("admit_site.bad_key", "command.admit_site.verify_key",
                           f"{len(msg.verify_key)} bytes that are not a usable key; expected "
                           f"the site's 32-byte Ed25519 public key")
        key = bytes(msg.verify_key)
        other = next((s for s in self.site_index if s != msg.site
                      and self.members.get(s) == key), None)
        if other is not None:          # a review: whoever held it spoke for both
            raise Rejected("admit_site.key_in_use", "command.admit_site.verify_key",
                           f"the key is site {other!r}'s; expected a key of site "
                           f"{msg.site!r}'s own (each site signs with its own key)")
        back = self.members.get(msg.site) == b""
        self.members[msg.site] = key
        self.member_changes += 1
        if back:                  # the agents hear its codes again (``_site_status``)
            self._site_status(msg.site)
        res.accepted = 1

    def _do_remove_site(self, client_id: str, msg: pb.RemoveSite, seq: int,
                        res: pb.Result) -> None:
        self._operator_only(client_id, "remove_site")
        self._member_site(msg.site, "remove_site")
        # a probe: a second removal was accepted (and "lost" its work again), and so was the
        # removal of the last site, after which nothing could ever run
        if self.members.get(msg.site) == b"":
            raise Rejected("remove_site.removed_already", "command.remove_site.site",
                           f"site {msg.site!r} was removed already; expected a member site "
                           f"(agora site list; agora site admit brings one back)")
        if not any(self.members.get(s) != b"" for s in self.site_index if s != msg.site):
            raise Rejected("remove_site.last_site", "command.remove_site.site",
                           f"site {msg.site!r} is the last member site: removed, no work "
                           f"could ever run; expected another member site to remain (admit "
                           f"one first)")
        if len(msg.reason) > MAX_CANCEL_REASON:
            raise Rejected("remove_site.bad_reason", "command.remove_site.reason",
                           f"{len(msg.reason)} characters; expected at most "
                           f"{MAX_CANCEL_REASON}")
        self.members[msg.site] = b""
        self.member_changes += 1
        self._lapse(msg.site, msg.reason or f"site {msg.site} removed by the operator")
        self._site_status(msg.site).removed = True
        res.accepted = 1
        self._maybe_close(res)
