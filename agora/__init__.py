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

from pathlib import Path

# In a source checkout that is not installed (a Ray job's uploaded working directory, say),
# the sub-packages are the folders beside this one; installed, setup.py puts them inside it.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "setup.py").is_file() and (_checkout / "agents" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (a package's own __path__)

__all__ = ["simulate", "submit", "schedule", "jobs", "NotRunning", "__version__"]


def __getattr__(name: str):
    # Lazy: `import agora` stays light (no Ray, torch or gRPC until a function is used).
    if name in ("simulate", "submit", "schedule", "jobs", "NotRunning"):
        from agora.deploy import api

        return getattr(api, name)
    if name == "__version__":
        from agora.deploy.cli import version

        return version()
    raise AttributeError(f"module 'agora' has no attribute {name!r}")
