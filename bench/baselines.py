"""Every baseline side by side on the three benchmark scenarios, 5 seeds each, mean ± 95%
interval; prints markdown tables (for the README) and writes bench/results/baselines.json.

    python -m bench.baselines [--traces ../shared/workloads] [--seeds 5] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from agora.agents.sim.report import comparison_table, summarise
from agora.agents.sim.runner import Scenario, run_baselines
from bench.scenarios import DEFAULT_TRACES, REPO, all_scenarios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--traces", type=Path, default=DEFAULT_TRACES,
                   help="folder holding alibaba-openb-2023/ and lublin/")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--only", default=None, help="comma-separated scenario names")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "baselines.json")
    a = p.parse_args(argv)
    scenarios = all_scenarios(a.traces)
    if a.only:
        scenarios = {k: v for k, v in scenarios.items() if k in a.only.split(",")}
    results = {}
    for name, sc in scenarios.items():
        t0 = time.perf_counter()
        runs = run_baselines(sc, seeds=a.seeds,
                             on_result=lambda pol, seed, r: print(
                                 f"  {name} seed {seed} {pol}: {r.metrics['wall_s']:.1f} s",
                                 file=sys.stderr, flush=True))
        wall = time.perf_counter() - t0
        # a Scenario subclass says what it is; a plain Scenario's docstring is the class's own
        doc = type(sc).__doc__ if type(sc) is not Scenario and type(sc).__doc__ else ""
        print(f"\n### {name} — {a.seeds} seeds" + (f" ({doc.splitlines()[0]})" if doc else ""))
        print(f"scenario: {asdict(sc)}\n")
        print(comparison_table(runs))
        print(f"\n{wall:.0f} s wall for {a.seeds * len(runs)} runs", flush=True)
        results[name] = {"scenario": asdict(sc), "seeds": a.seeds, "wall_s": wall,
                         "policies": summarise(runs)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
