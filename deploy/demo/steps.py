"""The demo jobs' commands (``deploy/demo/jobs.jsonl``): small steps of a data pipeline,
standard library only, each writing its output under the folder given. Each instance learns
who it is from ``AGORA_INSTANCE`` (and ``AGORA_SITE``, ``AGORA_NODE``, ``AGORA_ATTEMPT``).

    python3 steps.py gen OUT --shards N --rows R --seed S    # OUT/shard-<i>.csv
    python3 steps.py stats OUT                               # OUT/partial-<instance>.json
    python3 steps.py reduce OUT                              # OUT/result.json
    python3 steps.py words OUT TEXT --parts N                # OUT/words-<instance>.json
    python3 steps.py top OUT                                 # OUT/top-words.json
    python3 steps.py flaky OUT                               # fails its first attempt
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path


def who() -> dict:
    return {k.lower(): os.environ.get(f"AGORA_{k}", "") for k in
            ("JOB", "TASK", "INSTANCE", "SITE", "NODE", "ATTEMPT")}


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
    print(f"wrote {path}")


def gen(a) -> None:
    rnd = random.Random(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    for i in range(a.shards):
        rows = [f"{rnd.randint(0, 10_000)},{rnd.random():.6f}" for _ in range(a.rows)]
        (a.out / f"shard-{i}.csv").write_text("\n".join(rows) + "\n")
    print(f"{a.shards} shards of {a.rows} rows in {a.out} ({who()['node']})")


def stats(a) -> None:
    i = int(os.environ["AGORA_INSTANCE"])
    values = [float(line.split(",")[1]) for line in
              (a.out / f"shard-{i}.csv").read_text().split()]
    time.sleep(a.work_s)                     # stands for real work, so the Gantt shows it
    write(a.out / f"partial-{i}.json", {"shard": i, "n": len(values), "sum": sum(values),
                                        "min": min(values), "max": max(values), **who()})


def reduce(a) -> None:
    parts = [json.loads(p.read_text()) for p in sorted(a.out.glob("partial-*.json"))]
    n = sum(p["n"] for p in parts)
    write(a.out / "result.json", {
        "shards": len(parts), "rows": n, "mean": sum(p["sum"] for p in parts) / n,
        "min": min(p["min"] for p in parts), "max": max(p["max"] for p in parts),
        "where": {p["shard"]: p["node"] for p in parts}, **who()})


def words(a) -> None:
    i = int(os.environ["AGORA_INSTANCE"])
    text = Path(a.text).read_text(errors="replace")
    lines = text.splitlines()
    mine = lines[i::a.parts]
    counts = Counter(w for line in mine for w in re.findall(r"[a-z]{4,}", line.lower()))
    time.sleep(a.work_s)
    write(a.out / f"words-{i}.json", {"part": i, "lines": len(mine),
                                      "counts": dict(counts.most_common(200)), **who()})


def top(a) -> None:
    total: Counter = Counter()
    for p in sorted(a.out.glob("words-*.json")):
        total.update(json.loads(p.read_text())["counts"])
    write(a.out / "top-words.json", {"top": total.most_common(10), **who()})


def flaky(a) -> None:
    if who()["attempt"] == "1":
        print("first attempt: failing on purpose (exit 3)", file=sys.stderr)
        raise SystemExit(3)
    time.sleep(a.work_s)
    write(a.out / "flaky.json", {"attempt": who()["attempt"], **who()})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    for name, fn in (("gen", gen), ("stats", stats), ("reduce", reduce), ("words", words),
                     ("top", top), ("flaky", flaky)):
        s = sub.add_parser(name)
        s.add_argument("out", type=Path)
        s.add_argument("--work-s", type=float, default=2.0)
        if name == "gen":
            s.add_argument("--shards", type=int, default=4)
            s.add_argument("--rows", type=int, default=2000)
            s.add_argument("--seed", type=int, default=0)
        if name == "words":
            s.add_argument("text")
            s.add_argument("--parts", type=int, default=3)
        s.set_defaults(fn=fn)
    a = p.parse_args(argv)
    a.fn(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
