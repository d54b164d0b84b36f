"""What a federation's server checks of every train reply before Flower's strategy aggregates
it, in process (``SiteGrid``) and deployed (the ``Grid`` a SuperLink hands the ServerApp)
alike: the organisations do not trust each other, and none may take the shared model over.
A probe (2026-12-04) found the deployed server checked nothing (one member's NaN made the
final model NaN; a wrong shape crashed the run, which still exited 0) and, in process,
finite but huge weights (1e30) took FedAvg and the trimmed mean over -- the honest members,
training from them, were then refused as the culprits.

A reply is refused (logged with its node and why, kept in ``refused``, left out of the
aggregate) unless

- its arrays are as many as were sent, each of the shape and dtype sent, finite and at most
  ``MAX_ABS_WEIGHT`` in magnitude (``learner.check_weights``);
- its sample count (what FedAvg weighs by) is a whole number >= 1 (a negative count
  extrapolated; one that cancelled the others divided by zero);
- its metrics are finite numbers.

Sample counts are taken at most at ``COUNT_CAP`` times the round's median count (with two
replies, the other's): a member claiming 10^12 samples froze the model at its own update; now
it weighs at most twice what a typical member does, and members within that keep their own
weights. A round
with fewer usable replies than ``min_fraction`` asks keeps the model as it was (Flower's
``min_train_nodes`` bounds the nodes sampled, not the replies that came back: 2 of 5
replies were aggregated where 3 were asked for).

Aggregation itself stays Flower's (``FedAvg``, ``FedMedian``, ``FedTrimmedAvg``); FedAvg
still averages what passes, so a member within the bounds moves it -- ``median`` or
``trimmed`` bound what f members can do.
"""

from __future__ import annotations

import math
from logging import INFO, WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedMedian, FedTrimmedAvg

from agora.federation.learner import WeightError, check_weights


def reply_problem(msg: Message, sent: list[np.ndarray], count_key: str,
                  who: str | None = None, names: list[str] | None = None,
                  keys: list[str] | None = None) -> str | None:
    """Why train reply ``msg`` cannot be aggregated against the arrays ``sent`` (None: it
    can); ``count_key``: the metric FedAvg weighs by; ``who``, ``names``: how the sender
    and its tensors are named (default: its node id, "tensor i"); ``keys``: the names the
    arrays were sent under (Flower aggregates by name: another name crashed the round)."""
    content = msg.content
    arrays = list(content.array_records.values())
    metrics = list(content.metric_records.values())
    if len(arrays) != 1 or len(metrics) != 1:
        return (f"{len(arrays)} array records and {len(metrics)} metric records; expected "
                f"one of each")
    if keys is not None and list(arrays[0].keys()) != list(keys):
        got = list(arrays[0].keys())
        return (f"arrays named {got[:3]}{' ...' if len(got) > 3 else ''}; expected the "
                f"names they were sent under, {list(keys)[:3]}{' ...' if len(keys) > 3 else ''}")
    try:
        check_weights(who or f"node {msg.metadata.src_node_id}",
                      names or [f"tensor {i}" for i in range(len(sent))], sent,
                      arrays[0].to_numpy_ndarrays())
    except WeightError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - arrays that do not even convert
        return f"arrays that cannot be read ({type(e).__name__}: {e})"
    return metrics_problem(metrics[0], count_key)


def metrics_problem(rec: MetricRecord, count_key: str) -> str | None:
    """Why a reply's metrics cannot be aggregated (None: they can): its sample count is no
    whole number >= 1, or a metric is no finite number (a list where the others send a
    number crashed Flower's mean)."""
    count = rec.get(count_key)
    if (not isinstance(count, (int, float)) or isinstance(count, bool)
            or not math.isfinite(count) or count != int(count) or count < 1):
        return f"metric {count_key!r} is {count!r}; expected a whole number of samples >= 1"
    for k, v in rec.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return f"metric {k!r} is {v!r}; expected a finite number"
    return None


def common_metrics(replies: list[Message]) -> None:
    """Each reply's metrics, only those every reply has (in place): Flower refuses -- raises,
    ending the run -- replies whose metric names differ (one member's extra name did)."""
    recs = [next(iter(m.content.metric_records.values())) for m in replies]
    common = set.intersection(*(set(r.keys()) for r in recs)) if recs else set()
    for r in recs:
        for k in [k for k in r.keys() if k not in common]:
            del r[k]


COUNT_CAP = 2.0
"""a reply's sample count weighs at most this many times the round's median count (with two
replies, the other's)"""


def cap_counts(replies: list[Message], count_key: str) -> None:
    """Each reply's sample count, at most ``COUNT_CAP`` x the round's median count, or with
    two replies x the other's (in place). The median of two counts is their mean, so twice it
    is their sum and bounded nothing: a probe's member claiming 10^12 samples beside one
    honest member made the model its own (the recipe's default two SuperNodes, or any round
    that refusals left with two). From three replies on the median is no one member's."""
    recs = [next(iter(m.content.metric_records.values())) for m in replies]
    counts = [float(r[count_key]) for r in recs]
    for i, r in enumerate(recs):
        typical = counts[1 - i] if len(counts) == 2 else float(np.median(counts))
        cap = COUNT_CAP * typical
        if r[count_key] > cap:
            r[count_key] = type(r[count_key])(cap)


class Guarded:
    """Checks train replies before the Flower strategy it is mixed into aggregates them
    (module doc). ``min_replies``: usable replies a round needs to change the model."""

    def __init__(self, *args, min_replies: int = 1, describe=None, **kw) -> None:
        super().__init__(*args, **kw)
        self.min_replies = min_replies
        self.describe = describe
        """node id -> (sender's name, its tensors' names), e.g. ``SiteGrid.describe``"""
        self.refused: list[tuple[int, int, str]] = []
        """(round, node id, why) of every reply left out"""
        self.skipped_rounds: list[int] = []
        self._sent: list[np.ndarray] = []
        self._keys: list[str] | None = None
        self.latest: ArrayRecord | None = None
        """the global model last sent out (to train or to evaluate): what a run stopped
        mid-round has"""

    def robust_with(self, replies: int) -> bool:
        """Whether the strategy bounds a member's pull over ``replies`` replies (FedAvg: no
        bound to keep)."""
        return True

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid):
        self._sent = arrays.to_numpy_ndarrays()
        self._keys = list(arrays.keys())
        self.latest = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid):
        self.latest = arrays
        return super().configure_evaluate(server_round, arrays, config, grid)

    def _sort(self, server_round: int, replies, problem, what: str = "reply",
              prefix: str = "") -> tuple[list[Message], list[Message]]:
        """(usable, failed) ``replies``: those carrying an error go on to Flower (it counts
        them); those ``problem(msg)`` finds fault with are left out, recorded in
        ``refused`` (``prefix`` before the reason) and logged."""
        usable, failed = [], []
        for msg in replies:
            if msg.has_error():
                failed.append(msg)
                # a dead SuperNode's "Node Unavailable" was said nowhere once the guard
                # kept the model before Flower's own failure log (a probe, deployed)
                who = (self.describe(msg.metadata.src_node_id)[0] if self.describe
                       else f"node {msg.metadata.src_node_id}")
                log(INFO, "round %s: the %s of %s is an error: %s", server_round, what, who,
                    msg.error.reason)
                continue
            why = problem(msg)
            if why is None:
                usable.append(msg)
            else:
                self.refused.append((server_round, msg.metadata.src_node_id, prefix + why))
                log(WARNING, "round %s: the %s of node %s is left out: %s", server_round,
                    what, msg.metadata.src_node_id, why)
        return usable, failed

    def _train_problem(self, msg: Message) -> str | None:
        who, names = (self.describe(msg.metadata.src_node_id) if self.describe
                      else (None, None))
        return reply_problem(msg, self._sent, self.weighted_by_key, who, names, self._keys)

    def _evaluate_problem(self, msg: Message) -> str | None:
        metrics = list(msg.content.metric_records.values())
        return (f"{len(metrics)} metric records; expected one" if len(metrics) != 1
                else metrics_problem(metrics[0], self.weighted_by_key))

    def _keeps_model(self, server_round: int, why: str, *args) -> tuple[None, None]:
        self.skipped_rounds.append(server_round)
        log(WARNING, "round %s: %s usable replies, " + why + "; the model stays as it was",
            server_round, *args)
        return None, None

    def aggregate_train(self, server_round: int, replies) -> tuple[ArrayRecord | None,
                                                                   MetricRecord | None]:
        usable, failed = self._sort(server_round, replies, self._train_problem)
        if len(usable) < self.min_replies:
            return self._keeps_model(server_round, "fewer than the %s min_fraction asks",
                                     len(usable), self.min_replies)
        if not self.robust_with(len(usable)):
            return self._keeps_model(server_round, "too few for %s to cut any member's update",
                                     len(usable), type(self).__name__)
        common_metrics(usable)
        cap_counts(usable, self.weighted_by_key)
        return super().aggregate_train(server_round, usable + failed)

    def aggregate_evaluate(self, server_round: int, replies) -> MetricRecord | None:
        """Evaluate replies, checked as train replies' metrics are (they went to Flower as
        sent: a count cancelling the others' divided by zero, an extra name raised)."""
        usable, failed = self._sort(server_round, replies, self._evaluate_problem,
                                    "evaluate reply", "evaluate reply: ")
        if usable:
            common_metrics(usable)
            cap_counts(usable, self.weighted_by_key)
        return super().aggregate_evaluate(server_round, usable + failed)


class GuardedFedAvg(Guarded, FedAvg):
    pass


class GuardedFedMedian(Guarded, FedMedian):
    def robust_with(self, replies: int) -> bool:
        return replies >= 3           # the median of 2 is their mean


class GuardedFedTrimmedAvg(Guarded, FedTrimmedAvg):
    def robust_with(self, replies: int) -> bool:
        return int(self.beta * replies) >= 1     # Flower cuts int(beta x replies) each end
