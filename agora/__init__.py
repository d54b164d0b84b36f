"""Agora: a distributed multi-agent scheduler — learning site agents that bid for work, a
PBFT coordinator that agrees on one global schedule, work that really runs through Ray, and
sites that improve together through Flower.

    from agora import simulate, submit, schedule, jobs

    r = simulate(workload="synthetic:jobs=40", policy="srpt", seed=0)
    r.metrics["jct_mean_s"]
    submit("deploy/demo/jobs.jsonl")            # to a running `agora up`: the job ids
    schedule(site="dc-east")["allocations"]     # the agreed schedule, live or after a stop

The parts are sub-packages: ``agora.agents`` (site agents, simulator, policies, learning),
``agora.coordinator`` (PBFT replicas and clients), ``agora.protos`` (the gRPC contract),
``agora.federation`` (Flower), ``agora.deploy`` (the ``agora`` command, ``agora up``).
The functions are documented in ``agora.deploy.api`` and docs/python-api.md.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder
from pathlib import Path

PARTS = ("agents", "coordinator", "protos", "federation", "deploy")
"""The repository's top-level folders, installed as ``agora.<part>`` (setup.py)."""

IMPORT_ROOT = Path(__file__).resolve().parent.parent
"""The folder ``agora`` is imported from: what a child process (a replica, a Ray worker) puts
on its path -- the checkout, or site-packages -- so that it imports this same Agora."""


class _Checkout(MetaPathFinder):
    """In a source checkout that is not installed (a Ray job's uploaded working directory,
    say), ``agora.<part>`` is the folder ``<part>/`` beside ``agora/`` -- those five only;
    installed, setup.py puts them inside ``agora/`` and this finder is not added."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, part = fullname.partition(".")
        if head == "agora" and part in PARTS:
            return PathFinder.find_spec(fullname, [str(IMPORT_ROOT)])
        return None


if (IMPORT_ROOT / "setup.py").is_file() and (IMPORT_ROOT / "agents" / "__init__.py").is_file() \
        and not any(isinstance(f, _Checkout) for f in sys.meta_path):
    sys.meta_path.append(_Checkout())

API = ("simulate", "submit", "schedule", "jobs", "NotRunning")
"""The functions (and the error) of ``agora.deploy.api`` that ``agora`` itself offers."""
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    # Lazy: `import agora` stays light (no Ray, torch or gRPC until a function is used).
    if name in API:
        from agora.deploy import api

        return getattr(api, name)
    if name == "__version__":
        from agora.deploy.cli import version

        return version()
    raise AttributeError(f"module 'agora' has no attribute {name!r}")
