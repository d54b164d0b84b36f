"""What one refresh of the live web view's jobs and runs costs (``deploy/webview.py``: the
rows of ``agora jobs``, read from the run folders on disk), at ``--jobs`` finished jobs of
``--instances`` instances each (the view shows the most recent 200 jobs), with and without the
cache of finished runs the view keeps between refreshes. Both in this process, medians of
``--repeat`` refreshes after the first:

    python -m bench.web_view [--jobs 200] [--instances 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from agora.agents.cluster.instance_run import run_folder
from agora.agents.domain import Demand, Job, Task
from agora.deploy.job_table import job_rows
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto


def ledger_with_runs(out: Path, jobs: int, instances: int, nodes: list[str]) -> pb.LedgerView:
    """A ledger of finished jobs, and each instance's run folder with its end."""
    view = pb.LedgerView(version=1)
    for j in range(jobs):
        job = Job(id=f"j{j}", arrival=0.0, origin="s0", tasks=(Task(
            id="t", duration=1.0, demand=Demand(cpu=100, mem=64), instances=instances),))
        rec = view.jobs.add(outcome="completed")
        rec.job.CopyFrom(job_to_proto(job))
        rec.tasks.add(states=bytes([3] * instances), outcome="completed")
        for i in range(instances):
            d = run_folder(out / "runs", nodes[i % len(nodes)], job.id, "t", i, 7)
            d.mkdir(parents=True)
            (d / "end.json").write_text(json.dumps({"exit_code": 0, "start": 1.0, "end": 2.0}))
    return view


def refreshes(view, nodes, out: Path, files: dict | None, repeat: int) -> tuple[float, float]:
    """(first refresh s, median of the next ``repeat``)."""
    times = []
    for _ in range(repeat + 1):
        t = time.perf_counter()
        job_rows(view, nodes, out, None, files)
        times.append(time.perf_counter() - t)
    return times[0], statistics.median(times[1:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    nodes = [f"s{k}/n0" for k in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        view = ledger_with_runs(out, a.jobs, a.instances, nodes)
        plain = refreshes(view, nodes, out, None, a.repeat)
        cached = refreshes(view, nodes, out, {}, a.repeat)
    print(f"{a.jobs} finished jobs x {a.instances} instances ({a.jobs * a.instances} run "
          f"folders), medians of {a.repeat} refreshes after the first\n")
    print("| refresh | first s | then s (median) |\n| --- | ---: | ---: |")
    print(f"| no cache | {plain[0]:.3f} | {plain[1]:.3f} |")
    print(f"| cache of finished runs | {cached[0]:.3f} | {cached[1]:.3f} |")
    print(f"\nratio (no cache / cache, after the first): {plain[1] / cached[1]:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
