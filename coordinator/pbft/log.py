"""One sequence number's slot of the PBFT message log (Castro & Liskov, section 4.2)."""

from __future__ import annotations

from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftRequest, PreparedCert


class Slot:
    """What a replica knows about one sequence number.

    ``view``/``digest``/``requests``: the pre-prepare it accepted (view -1: none yet).
    ``prepares``/``commits``: votes of ``vote_view`` by replica, (digest, envelope); one vote
    per replica and view (a second, different one is a double vote and is refused)."""

    __slots__ = ("view", "digest", "requests", "pp_env", "vote_view", "prepares", "commits",
                 "prepared_view", "committed", "cert", "my_prepare", "my_commit")

    def __init__(self) -> None:
        self.view = -1
        self.digest = b""
        self.requests: list[PbftRequest] = []
        self.pp_env: PbftEnvelope | None = None
        self.vote_view = -1
        self.prepares: dict[int, tuple[bytes, PbftEnvelope]] = {}
        self.commits: dict[int, tuple[bytes, PbftEnvelope]] = {}
        self.prepared_view = -1
        self.committed = False
        self.cert: PreparedCert | None = None
        self.my_prepare: PbftEnvelope | None = None
        self.my_commit: PbftEnvelope | None = None

    def votes_for(self, view: int) -> None:
        """Drop votes of another view: only the current view's count."""
        if self.vote_view != view:
            self.vote_view = view
            self.prepares = {}
            self.commits = {}
            self.my_prepare = self.my_commit = None

    def accept(self, view: int, digest: bytes, requests: list[PbftRequest],
               env: PbftEnvelope | None) -> None:
        self.votes_for(view)
        self.view, self.digest, self.requests, self.pp_env = view, digest, requests, env

    def count(self, votes: dict[int, tuple[bytes, PbftEnvelope]], exclude: int = -1) -> int:
        d = self.digest
        return sum(1 for r, (vd, _) in votes.items() if vd == d and r != exclude)
