"""Where a replay's decision time goes, from the traces an ``AGORA_TRACE=1`` run writes beside
it (``deploy/replay.py``, ``coordinator/round_keeper.py``): each replica's wall time of every
version it executed, and each agent's time of every update it applied.

    AGORA_TRACE=1 python -m bench.replay --sites 16
    python -m bench.replay_trace out/bench-replay/s16-0/out [--episode 0] [--every 10]

Prints how far each replica's execution trails the fastest replica's; each round that closed
with allocations split into its steps (``STEPS``), for every site that acted and for the one
the round waited for (the last to send); how long after the
second replica executed a version an agent applied it (an agent needs f+1 = 2 identical
streams), and that lag per stretch of the run (``--every`` seconds), beside the versions
executed in the stretch: a lag that follows the offered load is a machine that is short of
CPU, not a round waiting for one late site.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def load(out: Path, episode: int) -> tuple[dict[int, dict[int, float]], dict[str, list],
                                         dict[int, tuple[int, int]]]:
    """({version: {replica: wall time executed}}, {site: its trace events},
    {version: (its round, allocations it made)})."""
    executed: dict[int, dict[int, float]] = defaultdict(dict)
    state: dict[int, tuple[int, int]] = {}
    for f in sorted((out / "coordinator" / "data").glob("replica-*.trace.json")):
        i = int(f.name.split("-")[1].split(".")[0])
        for version, t, *rest in json.loads(f.read_text()):
            executed[version].setdefault(i, t)
            if len(rest) >= 2:
                state.setdefault(version, (int(rest[0]), int(rest[1])))
    agents = json.loads((out / f"traces-{episode}.json").read_text())
    return executed, agents, state


def second(times: dict[int, float]) -> float:
    """When the second replica executed a version: an agent needs f+1 = 2 matching streams."""
    ts = sorted(times.values())
    return ts[1] if len(ts) > 1 else ts[0]


STEPS = ("to act", "think", "think (CPU)", "queue", "order", "close")
"""a round's steps for one site: from the version the site acted on (executed at the second
replica) to its act (delivery on the watch streams, waking), act to part signed (think; and
the agent thread's CPU time in it, where the trace has it), part
signed to sent (the previous part still in flight), sent to reply (PBFT ordering), and from
the round's last send to the round's close executed (at the second replica)"""


def round_steps(executed, agents, state) -> tuple[dict[str, list[float]], dict[str, list[float]],
                                                   list[float]]:
    """Each round that closed with allocations, step by step (``STEPS``): (every acting site's
    steps, the steps of the site that sent last -- the one the round waited for --, round
    spans from its first acted-on version to its close)."""
    first_in: dict[int, int] = {}
    for v in sorted(state):
        first_in.setdefault(state[v][0], v)   # the first version in round r closed r - 1
    every: dict[str, list[float]] = defaultdict(list)
    last: dict[str, list[float]] = defaultdict(list)
    spans: list[float] = []
    indexed = [_index(evs, executed) for evs in agents.values()]
    for r in sorted(first_in):
        vc = first_in.get(r + 1)
        if vc is None or state[vc][1] == 0 or vc not in executed:
            continue
        t_close = second(executed[vc])
        sites = []
        for by_round, up_t, up_max in indexed:
            evs = by_round.get(r, [])
            acts = [e[1] for _, e in evs if e[0] == "act"]
            sends = [(e[1], k) for k, e in evs if e[0] == "send"]
            if not acts or not sends:
                continue
            t_send, k = sends[0]
            signed = [e for j, e in evs if e[0] == "submit" and j < k]
            submit = signed[-1][1] if signed else t_send
            cpu = signed[-1][3] if signed and len(signed[-1]) > 3 else None
            act = max((t for t in acts if t <= submit), default=acts[0])
            n_seen = bisect.bisect_right(up_t, act)     # updates applied by the act
            reply = next((e[1] for j, e in evs if e[0] == "reply" and j >= k), None)
            if not n_seen or reply is None:
                continue
            t_seen = second(executed[up_max[n_seen - 1]])
            sites.append({"to act": act - t_seen, "think": submit - act,
                          "queue": t_send - submit, "order": reply - t_send,
                          "think (CPU)": cpu, "send": t_send, "seen": t_seen})
        if not sites:
            continue
        final = max(sites, key=lambda s: s["send"])
        final["close"] = t_close - final["send"]
        for s in sites:
            for step in STEPS[:-1]:
                if s[step] is not None:
                    every[step].append(s[step])
        for step in STEPS:
            if final[step] is not None:
                last[step].append(final[step])
        spans.append(t_close - min(s["seen"] for s in sites))
    return every, last, spans


def _index(evs: list, executed) -> tuple[dict[int, list], list[float], list[int]]:
    """One agent's trace, read once: ({round: [(position, event)] of its act, submit, send and
    reply events}, the times of its updates of executed versions, and the highest such version
    applied by each of them). The trace is appended in time order, so the updates applied by
    a time are a prefix."""
    by_round: dict[int, list] = defaultdict(list)
    up_t: list[float] = []
    up_max: list[int] = []
    for k, e in enumerate(evs):
        if e[0] in ("act", "submit", "send", "reply"):
            by_round[e[2]].append((k, e))
        elif e[0] == "update" and len(e) > 3 and e[3] in executed:
            up_t.append(e[1])
            up_max.append(max(e[3], up_max[-1]) if up_max else e[3])
    return by_round, up_t, up_max


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
        report(a, *load(a.out, a.episode))
    except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        # a missing folder, or traces of another shape than AGORA_TRACE=1 writes
        print(f"bench.replay_trace: {type(e).__name__}: {e}; expected the output folder of an "
              f"AGORA_TRACE=1 run", file=sys.stderr)
        return 2
    return 0


def report(a, executed, agents, state) -> None:
    behind: dict[int, list[float]] = defaultdict(list)
    for times in executed.values():
        first = min(times.values())
        for i, t in times.items():
            behind[i].append(t - first)
    print(f"{len(executed)} versions executed, {len(agents)} agents\n")
    print("replica execution behind the fastest replica:")
    for i in sorted(behind):
        print(f"  replica {i}: {pct(behind[i])}")
    every, last, spans = round_steps(executed, agents, state)
    print(f"\n{len(spans)} rounds closed with allocations; round span (first acted-on version "
          f"to close): {pct(spans)}")
    print("\n| step | every acting site | the site that sent last |\n|---|---|---|")
    for step in STEPS:
        print(f"| {step} | {pct(every.get(step, []))} | {pct(last.get(step, []))} |")
    lag, by_stretch = [], defaultdict(list)
    t0 = min(min(ts.values()) for ts in executed.values())
    for events in agents.values():
        for e in events:
            if e[0] != "update" or len(e) < 4 or len(executed.get(e[3], {})) < 2:
                continue
            t2 = second(executed[e[3]])
            lag.append(e[1] - t2)
            by_stretch[int((t2 - t0) // a.every)].append(e[1] - t2)
    print(f"\nagent applied an update after the second replica executed it: {pct(lag)}")
    per = defaultdict(int)
    for ts in executed.values():
        per[int((min(ts.values()) - t0) // a.every)] += 1
    print("\n| from s | versions executed | agent lag p50 ms | agent lag max ms |\n|---|---|---|---|")
    for k in sorted(set(per) | set(by_stretch)):
        xs = np.asarray(by_stretch.get(k, [np.nan])) * 1000.0
        print(f"| {k * a.every:.0f} | {per.get(k, 0)} | {np.nanmedian(xs):.0f} | "
              f"{np.nanmax(xs):.0f} |")


if __name__ == "__main__":
    sys.exit(main())
