"""The Flower client side over a live site learner: a real ``flwr.clientapp.ClientApp``.

On a ``train`` message it loads the global arrays, runs ``local-steps`` steps of local
training on the site's own experience and replies with its new arrays and
``num-examples`` (the sample count FedAvg weights by); on ``evaluate`` it replies with
local metrics. Incoming arrays are checked first (count, shapes, finite values): a bad
global model is refused with an error reply naming the tensor, and the learner is left as
it was.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from agora.federation.learner import SiteLearner, check_weights

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
NUM_EXAMPLES = "num-examples"
"""FedAvg's ``weighted_by_key`` default: the reply's sample count"""


def _config(msg: Message) -> dict:
    rec = msg.content.get(CONFIG) if CONFIG in msg.content else None
    return dict(rec) if isinstance(rec, ConfigRecord) else {}


def _load(learner: SiteLearner, msg: Message) -> None:
    arrays = msg.content[ARRAYS].to_numpy_ndarrays()
    check_weights(f"{learner.site} (global model received)", learner.weight_names(),
                  learner.get_weights(), arrays)
    learner.set_weights(arrays)


def _metrics(n: int, metrics: dict[str, float]) -> MetricRecord:
    out = {k: float(v) for k, v in sorted(metrics.items())}
    out[NUM_EXAMPLES] = int(n)
    return MetricRecord(out)


def make_client_app(learner: SiteLearner) -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        _load(learner, msg)
        cfg = _config(msg)
        n, metrics = learner.train(int(cfg.get("local-steps", 0)), cfg)
        arrays = ArrayRecord(learner.get_weights())
        return Message(RecordDict({ARRAYS: arrays, METRICS: _metrics(n, metrics)}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        _load(learner, msg)
        n, metrics = learner.evaluate(_config(msg))
        return Message(RecordDict({METRICS: _metrics(n, metrics)}), reply_to=msg)

    return app
