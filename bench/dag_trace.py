"""A synthetic file in the Alibaba cluster trace v2018's ``batch_task.csv`` format, for timing
the simulator on DAG jobs with many demand shapes where the real trace is not at hand (it is
not in ``../shared/workloads``). Seeded; the seed is in the command.

    python -m bench.dag_trace --out /tmp/batch_task.csv [--jobs 40000] [--seed 1]

Each job has 1-8 tasks named as the trace names them (``M3_1_2``: task 3 after tasks 1 and 2;
each earlier task is a parent with probability 0.4), 1-50 instances, 1-300 s, plan_cpu 50,
100 or 200 (hundredths of a core) and plan_mem uniform in [0, 1) percent with two decimals,
as the real trace's continuous memory plans give hundreds of distinct shapes.
"""

from __future__ import annotations

import argparse
import random
import sys


def write(path: str, jobs: int, seed: int) -> int:
    rng = random.Random(seed)
    rows = 0
    with open(path, "w") as f:
        t = 1000
        for j in range(jobs):
            t += rng.randint(0, 5)
            for k in range(1, rng.randint(1, 8) + 1):
                deps = [str(d) for d in range(1, k) if rng.random() < 0.4]
                name = ("M" if k % 2 else "R") + str(k) + ("_" + "_".join(deps) if deps else "")
                start = t + k * 10
                f.write(f"{name},{rng.randint(1, 50)},j_{j},1,Terminated,{start},"
                        f"{start + rng.randint(1, 300)},{rng.choice([50, 100, 200])},"
                        f"{rng.random():.2f}\n")
                rows += 1
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=40_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    print(f"wrote {write(a.out, a.jobs, a.seed):,} rows of {a.jobs:,} jobs to {a.out} "
          f"(seed {a.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
