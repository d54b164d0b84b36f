"""Run many seeded Twins-style PBFT scenarios (coordinator/pbft/explorer.py) and print a
table: scenarios, safety and liveness violations, median commits and view changes, per
fault kind and overall. Failing seeds are printed for replay.

    python -m bench.pbft_explore --scenarios 20000 --seed 0 [--f 1]
    python -m bench.pbft_explore --long --scenarios 200 [--f 2]   # deep water (see below)
    python -m bench.pbft_explore --replay SEED [--f 1] [--long]
    python -m bench.pbft_explore --hurried 1 [--long]   # replica 1's timers 10x shorter

``--long``: hundreds of requests per scenario, checkpoints every 2 sequence numbers, several
view changes, crashes in the middle of a state transfer; a second table says in how many
scenarios each deep path was crossed, and how often.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from agora.coordinator.pbft.explorer import (coverage, explore, explore_long, hurried,
                                             run_long_scenario, run_scenario, summary)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--f", type=int, default=1)
    p.add_argument("--replay", type=int, default=None, help="run one scenario seed and print it")
    p.add_argument("--long", action="store_true", help="long scenarios (module doc)")
    p.add_argument("--hurried", type=int, default=None, metavar="REPLICA",
                   help="this (correct) replica's timers run 10x shorter than the others', "
                        "as on a loaded machine: it suspects the primary alone, often")
    a = p.parse_args(argv)
    if a.hurried is not None and not 0 <= a.hurried < 3 * a.f + 1:
        p.error(f"--hurried: got {a.hurried}; expected a replica index 0..{3 * a.f}")
    hook = hurried(a.hurried) if a.hurried is not None else None
    if a.replay is not None:
        r = (run_long_scenario if a.long else run_scenario)(a.replay, f=a.f, replica_hook=hook)
        print(r)
        return 0 if r.ok else 1
    print(f"pbft explorer: {a.scenarios} {'long ' if a.long else ''}scenarios, seed {a.seed}, "
          f"f={a.f}" + (f", replica {a.hurried}'s timers 10x shorter" if hook else ""))
    t0 = time.perf_counter()
    results = (explore_long if a.long else explore)(a.scenarios, a.seed, f=a.f,
                                                    replica_hook=hook)
    wall = time.perf_counter() - t0
    rows = []
    kinds = sorted({r.fault for r in results})
    for kind in kinds + ["all"]:
        rs = results if kind == "all" else [r for r in results if r.fault == kind]
        rows.append([kind, str(len(rs)), str(sum(1 for r in rs if r.safety)),
                     str(sum(1 for r in rs if r.liveness)),
                     f"{statistics.median(r.commits for r in rs):.0f}",
                     f"{statistics.median(r.view_changes for r in rs):.0f}",
                     str(max(r.view_changes for r in rs)),
                     str(sum(1 for r in rs if r.apart)),
                     f"{statistics.median(r.messages for r in rs):.0f}"])
    head = ["fault", "scenarios", "safety violations", "liveness violations", "median commits",
            "median view changes", "max view changes", "ending with a replica apart",
            "median messages"]
    _table(head, rows)
    if a.long:
        cov = coverage(results)
        print()
        _table(["deep path", "scenarios crossing it", "median count", "max count"],
               [[k, f"{v['scenarios']} of {len(results)}", f"{v['median']:g}", f"{v['max']:g}"]
                for k, v in cov.items()])
    s = summary(results)
    print(f"\n{wall:.1f} s wall, {len(results) / wall:.1f} scenarios/s")
    if s["failing_seeds"]:
        print(f"failing seeds (replay with --replay SEED): {s['failing_seeds']}")
        return 1
    return 0


def _table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    sys.exit(main())
