"""The WfCommons folders of the zero-shot benchmarks (docs/benchmarks.md, "Trained where
ranking matters"): from a checkout of github.com/wfcommons/WfInstances, the readable Pegasus
instances shuffled with seed 0 (file names prefixed by their rank) into ``OUT/pegasus`` -- a
training folder -- and every other readable instance but helloworld (Makeflow, Nextflow) into
``OUT/others`` -- the families it never sees. Links, not copies.

    python -m bench.wf_split WFINSTANCES_DIR OUT

Prints how many instances went where, and how many could not be read (with why, one line
each: the loader's own error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_cluster, load_workload
from bench.scenarios import REPO

CLUSTER = REPO / "deploy" / "configs" / "cluster-4x8.yaml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("wfinstances", type=Path)
    p.add_argument("out", type=Path)
    a = p.parse_args(argv)
    if not a.wfinstances.is_dir():
        p.error(f"{a.wfinstances}: not a folder; expected a checkout of WfInstances")
    cluster = load_cluster(str(CLUSTER))
    pegasus, others, bad = [], [], 0
    for f in sorted(a.wfinstances.rglob("*.json")):
        family = f.relative_to(a.wfinstances).parts[0]
        if family == "helloworld":
            continue
        try:
            load_workload(str(f), cluster)
        except (InputError, ValueError) as e:
            bad += 1
            print(f"  unreadable: {e}", file=sys.stderr)
            continue
        (pegasus if family == "pegasus" else others).append(f.resolve())
    order = np.random.default_rng(0).permutation(len(pegasus))
    for name, files in (("pegasus", [pegasus[i] for i in order]), ("others", others)):
        d = a.out / name
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(files):
            link = d / (f"{i:03d}-{f.name}" if name == "pegasus" else f.name)
            if not link.exists():
                link.symlink_to(f)
    print(f"pegasus {len(pegasus)}, others {len(others)}, unreadable {bad} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
