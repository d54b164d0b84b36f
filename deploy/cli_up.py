"""``agora up``: the cluster engine on Ray (see ``deploy/up.py``)."""

from __future__ import annotations

import argparse
import json
import sys


def cmd_up(a: argparse.Namespace) -> int:
    from deploy.up import up
    from deploy.up_config import UpConfigError, load_up_config

    try:
        cfg = load_up_config(a.config)
    except UpConfigError as e:
        print(f"agora up: {e}", file=sys.stderr)
        return 2
    if a.out:
        from dataclasses import replace
        from pathlib import Path
        cfg = replace(cfg, out=Path(a.out).resolve())
    echo = (lambda *x, **k: print(*x, file=sys.stderr, **k)) if a.json else print
    result = up(cfg, live=a.live, echo=echo)
    if a.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


def register(sub) -> None:
    u = sub.add_parser("up", help="run the cluster engine: site agents on Ray, the PBFT "
                       "coordinator, the workload replayed through them")
    u.add_argument("--config", default="deploy/configs/local.yaml",
                   help="the run's YAML (default: the embedded deploy/configs/local.yaml)")
    u.add_argument("--live", action="store_true",
                   help="replay in wall-clock time (live_speed simulated s per wall s)")
    u.add_argument("--out", help="output folder (overrides the config's out)")
    u.add_argument("--json", action="store_true", help="print the result as JSON")
    u.set_defaults(fn=cmd_up)
