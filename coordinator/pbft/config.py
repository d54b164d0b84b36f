"""Configuration of a PBFT replica group (Castro & Liskov, OSDI 1999): n = 3f+1 replicas.

Times are seconds on whatever clock the caller passes as ``now`` (virtual time in the
simulator, ``time.monotonic()`` under a real transport).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True, kw_only=True)
class PbftConfig:
    """Protocol parameters shared by every replica and client of one group."""

    n: int = 4
    """Number of replicas, 3f+1 (4, 7, 10, ...); tolerates f = (n-1)//3 Byzantine ones."""
    checkpoint_interval: int = 16
    """K: a checkpoint is taken after executing every K-th sequence number, >= 1."""
    watermark_window: int = 32
    """L: sequence numbers in (h, h+L] are accepted, h the last stable checkpoint; a multiple
    of K, >= K (2K is typical: ordering goes on while the next checkpoint stabilises)."""
    batch_size: int = 16
    """Most requests in one pre-prepare, >= 1."""
    batch_bytes: int = 8 * 1024 * 1024
    """Most bytes of requests in one pre-prepare, >= 1 (a larger request goes alone): a
    batch counted by requests alone could outgrow what a peer link carries in one message
    (batch_size maximum-size requests), and such a pre-prepare never reached anyone."""
    batch_timeout: float = 0.002
    """Seconds the primary waits for a batch to fill before sending a partial one, >= 0."""
    max_outstanding: int = 8
    """Most batches the primary has assigned but not yet executed, >= 1."""
    view_change_timeout: float = 1.0
    """Seconds a backup waits for a request it holds to execute before moving to the next
    view; doubles with each consecutive view change (see max_backoff_exponent), > 0."""
    max_backoff_exponent: int = 5
    """The view-change timeout grows to at most view_change_timeout * 2**this."""
    calm_timeouts: float = 60.0
    """Each view change installed doubles the view-change timeout for this many (doubled)
    timeouts without another one, so a group on a slow machine stops changing views over and
    over (``Replica._timeout``); >= 0, 0: the timeout is back to its base at the first
    execution in a new view."""
    retransmit_interval: float = 0.2
    """Seconds between status/retransmission rounds while a replica waits on something, > 0."""
    max_view_ahead: int = 1024
    """VIEW-CHANGE and NEW-VIEW messages for views more than this beyond a replica's own are
    rejected as inflated."""
    client_retransmit: float = 1.0
    """Seconds a client waits for f+1 matching replies before resending to every replica."""

    def __post_init__(self) -> None:
        if self.n < 1 or (self.n - 1) % 3 != 0:
            raise ValueError(f"PbftConfig.n: got {self.n}; expected 3f+1 replicas (1, 4, 7, ...)")
        if self.checkpoint_interval < 1:
            raise ValueError(f"PbftConfig.checkpoint_interval: got {self.checkpoint_interval}; "
                             f"expected an integer >= 1")
        if (self.watermark_window < self.checkpoint_interval
                or self.watermark_window % self.checkpoint_interval):
            raise ValueError(f"PbftConfig.watermark_window: got {self.watermark_window}; expected "
                             f"a multiple of checkpoint_interval ({self.checkpoint_interval})")
        for name in ("batch_size", "batch_bytes", "max_outstanding", "max_view_ahead"):
            if getattr(self, name) < 1:
                raise ValueError(f"PbftConfig.{name}: got {getattr(self, name)}; expected >= 1")
        for name in ("view_change_timeout", "retransmit_interval", "client_retransmit"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PbftConfig.{name}: got {getattr(self, name)}; expected > 0")
        if self.batch_timeout < 0 or self.max_backoff_exponent < 0 or not self.calm_timeouts >= 0:
            raise ValueError("PbftConfig: batch_timeout, max_backoff_exponent and calm_timeouts "
                             "must be >= 0")

    @property
    def f(self) -> int:
        """Byzantine replicas tolerated."""
        return (self.n - 1) // 3

    @property
    def quorum(self) -> int:
        """2f+1: commits, checkpoints and view changes that make a certificate."""
        return 2 * self.f + 1

    def primary(self, view: int) -> int:
        """Index of the primary of ``view``."""
        return view % self.n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PbftConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"PbftConfig: unknown fields {unknown}; expected some of {sorted(known)}")
        return cls(**data)
