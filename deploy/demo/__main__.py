"""``make run`` (``python -m agora.deploy.demo``): Agora's main job on its embedded default.

It brings the system up (``agora up --detach`` on ``deploy/demo/up.yaml``: 3 sites of one
node each on a local multi-node Ray, 4 replicas), submits the bundled demo workload
(``deploy/demo/jobs.jsonl``: small DAGs of real commands) and follows it to the end, prints
the jobs table (where each instance ran) and what ran, writes a Gantt chart of the real runs
and a summary, and stops the system (``agora down``). Outputs under ``out/demo``: each job's
files, ``gantt.png``, ``summary.json``; the system's state stays in ``out/demo/state``
(``agora jobs --config deploy/demo/up.yaml`` reads it after the stop).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = str(HERE / "up.yaml")
JOBS = str(HERE / "jobs.jsonl")


def _out() -> Path:
    """out/demo beside the state folder of up.yaml (``../../out/demo/state``): in the
    checkout, or under the current folder when Agora is installed (``state_folder``)."""
    from agora.deploy.up_config import state_folder

    return (state_folder(HERE) / ".." / ".." / "out" / "demo").resolve()


OUT = _out()


def main() -> int:
    from agora.deploy.cli import main as agora
    from agora.deploy.run_report import run_figures, runs_from_folders, write_runs_gantt

    if OUT.exists():
        print(f"removing the previous demo's outputs and state in {OUT}")
        shutil.rmtree(OUT)
    t0 = time.perf_counter()
    if agora(["up", "--detach", "--config", CONFIG]) != 0:
        return 1
    up_s = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        print("\n$ agora submit deploy/demo/jobs.jsonl --follow")
        status = agora(["submit", JOBS, "--follow", "--timeout", "600", "--config", CONFIG])
        run_s = time.perf_counter() - t1
        print("\n$ agora jobs")
        agora(["jobs", "--config", CONFIG])
    finally:
        print("\n$ agora down")
        agora(["down", "--config", CONFIG])
    rows = runs_from_folders(OUT / "state" / "runs")
    figs = run_figures(rows)
    gantt = write_runs_gantt(rows, OUT / "gantt.png",
                             f"make run: {figs['runs']} runs of the demo workload on "
                             f"{len(figs.get('runs_per_node', {}))} nodes")
    summary = {"up_s": round(up_s, 1), "jobs_s": round(run_s, 1), **figs,
               "gantt": str(gantt), "outputs": sorted(str(p.relative_to(OUT)) for p in
                                                      OUT.glob("*/*.json"))}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nstarted in {up_s:.0f} s; the jobs ran in {run_s:.0f} s (submit to the last "
          f"end); makespan of the runs {figs.get('makespan_s', 0):.1f} s")
    print(f"runs per node: {figs.get('runs_per_node')}; runs that did not complete: "
          f"{figs.get('not_completed') or 'none'}")
    print(f"wrote {gantt}, {OUT / 'summary.json'} and the jobs' outputs "
          f"({', '.join(summary['outputs'][:4])}, ...)")
    return status


if __name__ == "__main__":
    sys.exit(main())
