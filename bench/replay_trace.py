"""Where a replay's decision time goes, from the traces an ``AGORA_TRACE=1`` run writes beside
it (``deploy/replay.py``, ``coordinator/round_keeper.py``): each replica's wall time of every
version it executed, and each agent's time of every update it applied.

    AGORA_TRACE=1 python -m bench.replay --sites 16
    python -m bench.replay_trace out/bench-replay/s16-0/out [--episode 0] [--every 10]

Prints how far each replica's execution trails the fastest replica's, how long after the
second replica executed a version an agent applied it (an agent needs f+1 = 2 identical
streams), and that lag per stretch of the run (``--every`` seconds), beside the versions
executed in the stretch: a lag that follows the offered load is a machine that is short of
CPU, not a round waiting for one late site.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def load(out: Path, episode: int) -> tuple[dict[int, dict[int, float]], dict[str, list]]:
    """({version: {replica: wall time executed}}, {site: its trace events})."""
    executed: dict[int, dict[int, float]] = defaultdict(dict)
    for f in sorted((out / "coordinator" / "data").glob("replica-*.trace.json")):
        i = int(f.name.split("-")[1].split(".")[0])
        for version, t, *_ in json.loads(f.read_text()):
            executed[version].setdefault(i, t)
    agents = json.loads((out / f"traces-{episode}.json").read_text())
    return executed, agents


def pct(xs, qs=(50, 90, 99)) -> str:
    if len(xs) == 0:
        return "n/a"
    x = np.asarray(xs) * 1000.0
    return ", ".join(f"p{q} {np.percentile(x, q):.1f}" for q in qs) + f", max {x.max():.1f} ms"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="the run's output folder (its cfg.out)")
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--every", type=float, default=10.0, help="seconds per stretch")
    a = p.parse_args(argv)
    try:
        executed, agents = load(a.out, a.episode)
    except (OSError, ValueError) as e:
        print(f"bench.replay_trace: {e}; expected the output folder of an AGORA_TRACE=1 run",
              file=sys.stderr)
        return 2
    behind: dict[int, list[float]] = defaultdict(list)
    for times in executed.values():
        first = min(times.values())
        for i, t in times.items():
            behind[i].append(t - first)
    print(f"{len(executed)} versions executed, {len(agents)} agents\n")
    print("replica execution behind the fastest replica:")
    for i in sorted(behind):
        print(f"  replica {i}: {pct(behind[i])}")
    lag, by_stretch = [], defaultdict(list)
    t0 = min(min(ts.values()) for ts in executed.values())
    for events in agents.values():
        for e in events:
            if e[0] != "update" or len(e) < 4 or len(executed.get(e[3], {})) < 2:
                continue
            second = sorted(executed[e[3]].values())[1]
            lag.append(e[1] - second)
            by_stretch[int((second - t0) // a.every)].append(e[1] - second)
    print(f"\nagent applied an update after the second replica executed it: {pct(lag)}")
    per = defaultdict(int)
    for ts in executed.values():
        per[int((min(ts.values()) - t0) // a.every)] += 1
    print(f"\n| from s | versions executed | agent lag p50 ms | agent lag max ms |\n|---|---|---|---|")
    for k in sorted(set(per) | set(by_stretch)):
        xs = np.asarray(by_stretch.get(k, [np.nan])) * 1000.0
        print(f"| {k * a.every:.0f} | {per.get(k, 0)} | {np.nanmedian(xs):.0f} | "
              f"{np.nanmax(xs):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
