"""``agora replay`` (and, until the live service lands, ``agora up``): the cluster engine with
simulated executors on a scaled wall clock (``deploy/replay.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path


def cmd_replay(a: argparse.Namespace) -> int:
    from deploy.replay import replay
    from deploy.up_config import UpConfigError, load_up_config

    try:
        cfg = load_up_config(a.config)
    except UpConfigError as e:
        print(f"agora {a.cmd}: {e}", file=sys.stderr)
        return 2
    if a.out:
        cfg = replace(cfg, out=Path(a.out).resolve())
    if a.workload:
        cfg = replace(cfg, workload=a.workload)
    if a.speed is not None:
        if not a.speed > 0:
            print(f"agora {a.cmd}: --speed: {a.speed}; expected a number > 0 (workload "
                  f"seconds per wall-clock second)", file=sys.stderr)
            return 2
        cfg = replace(cfg, speed=a.speed)
    echo = (lambda *x, **k: print(*x, file=sys.stderr, **k)) if a.json else print
    try:
        result = replay(cfg, echo=echo, progress=not a.json)
    except KeyboardInterrupt:
        print(f"agora {a.cmd}: interrupted; the system was stopped", file=sys.stderr)
        return 130
    if a.json:
        print(json.dumps({k: v for k, v in result.items()}, indent=1, default=str))
    return 0 if result["metrics"]["tasks_lost"] == 0 else 1


def register(sub) -> None:
    for name, what in (("replay", "replay a workload through the cluster engine: autonomous "
                        "site agents on Ray, the PBFT coordinator, simulated executors on a "
                        "scaled wall clock"),
                       ("up", "for now the same as replay (the live service is next)")):
        u = sub.add_parser(name, help=what)
        u.add_argument("--config", default="deploy/configs/local.yaml",
                       help="the run's YAML (default: the embedded deploy/configs/local.yaml)")
        u.add_argument("--workload", help="the workload (overrides the config's workload)")
        u.add_argument("--speed", type=float, default=None,
                       help="workload seconds per wall-clock second (overrides the config's)")
        u.add_argument("--out", help="output folder (overrides the config's out)")
        u.add_argument("--json", action="store_true", help="print the result as JSON")
        u.set_defaults(fn=cmd_replay, cmd=name)
