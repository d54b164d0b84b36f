"""A site's side of a cross-domain federation: the Flower ``ClientApp`` a site's SuperNode
runs (recipe in federation/RECIPE.md).

It is ``federation.client_app.make_client_app`` over the site's learner, which the
SuperNode names in its node config:

    flower-supernode ... --node-config "site='a' learner='tests.fakes:make_linear'"

``learner`` is ``module:factory``, importable in the SuperNode's environment; the factory
is called as ``factory(site=..., **other node-config keys)`` and returns a ``SiteLearner``.
For a live site that factory is what reaches the site's running agent (e.g. a proxy
built from an ``agent='host:port'`` key); for the test it is the least-squares fake.

The learner is built once per ClientApp process and kept for the messages it serves.
"""

from __future__ import annotations

import importlib

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from agora.federation.client_app import make_client_app
from agora.federation.learner import SiteLearner

_apps: dict[tuple, ClientApp] = {}


def load_learner(node_config: dict) -> SiteLearner:
    """The SiteLearner named by a SuperNode's node config (keys ``site``, ``learner``)."""
    missing = [k for k in ("site", "learner") if k not in node_config]
    if missing:
        raise ValueError(f"node config {dict(node_config)} lacks {missing}; start the "
                         f"SuperNode with --node-config \"site='a' "
                         f"learner='package.module:factory'\"")
    spec = str(node_config["learner"])
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"node config learner={spec!r}: expected 'package.module:factory'")
    factory = getattr(importlib.import_module(module), name)
    extra = {k: v for k, v in node_config.items() if k not in ("site", "learner")}
    return factory(site=str(node_config["site"]), **extra)


def _site_app(context: Context) -> ClientApp:
    key = tuple(sorted(context.node_config.items()))
    if key not in _apps:
        _apps[key] = make_client_app(load_learner(dict(context.node_config)))
    return _apps[key]


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    return _site_app(context)(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _site_app(context)(msg, context)
