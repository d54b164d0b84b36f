"""Where a replica's CPU goes, thread by thread: Agora's coordinator and the bare PBFT
skeleton on the same row, one after the other, per committed request.

    python -m bench.cpu_split [--only 4-1c,4-16] [--runs 2] [--seconds 8]
        [--skeleton ../shared/anchors/pbft_skel.py]

For each row of ``bench.coordinator_vs_skeleton`` asked for, the skeleton and Agora run
alternately (``--runs`` each); in each run every replica process's threads are read from
``/proc/PID/task`` at the start and the end of the measured window and their CPU time is
divided by the requests committed in it: the main thread (the event loop: the protocol, the
application, Python's side of gRPC), gRPC's C-core threads (``event_engine``) and the other
Python threads (Agora: the SQLite writer and WAL checkpointer). The table gives medians, in
milliseconds of CPU per request per replica (the mean over the replicas), and their ratios.
The skeleton's processes are the children of its own process; its measured window is the
middle of its run (the rate it prints is over its own window, a few seconds longer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import coordinator_throughput as ct
from bench.coordinator_vs_skeleton import DEFAULT_SKELETON, LINE, ROWS, _port_base

KINDS = ("main", "event_engine", "other")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far of ``pid``'s threads by kind (``KINDS``); {} if it is gone."""
    out = dict.fromkeys(KINDS, 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for t in tids:
        try:
            comm = Path(f"/proc/{pid}/task/{t}/comm").read_text().strip()
            f = Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = "main" if t == str(pid) else "event_engine" if comm == "event_engine" \
            else "other"
        out[kind] += (int(f[11]) + int(f[12])) / tick
    return out


def per_request(a: dict[int, dict], b: dict[int, dict], requests: float) -> dict[str, float]:
    """ms of CPU per request per replica, by kind, between samples ``a`` and ``b``."""
    reps = [p for p in a if b.get(p)]
    return {k: 1000 * statistics.mean(b[p][k] - a[p][k] for p in reps) / max(requests, 1)
            for k in KINDS}


def run_agora(row: tuple, seconds: float) -> dict[str, float]:
    n, batch, per, clients, window = row
    samples: list[dict[int, dict]] = []
    cpu_seconds = ct.cpu_seconds

    def sampled(g):
        samples.append({p.pid: thread_cpu(p.pid) for p in g.procs.values()})
        return cpu_seconds(g)

    ct.cpu_seconds = sampled         # the scenario samples at its window's two ends
    try:
        r = asyncio.run(ct.scenario(n, batch, per, clients, seconds, sync="NORMAL",
                                    window=window, quiet_site=True))
    finally:
        ct.cpu_seconds = cpu_seconds
    return per_request(samples[0], samples[1], r["rate"][0] * seconds)


def run_skeleton(path: Path, row: tuple, seconds: float) -> dict[str, float]:
    n, batch, per, clients, window = row
    cmd = [sys.executable, str(path), "--n", str(n), "--batch", str(batch), "--window",
           str(window), "--conc", str(clients), "--sig", "1", "--assign", str(per),
           "--secs", str(seconds + 2), "--base", str(_port_base(n))]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(3.5)                              # start-up and its 2 s warm-up
    kids = _children(p.pid)
    a = {k: thread_cpu(k) for k in kids}
    t0 = time.monotonic()
    time.sleep(seconds - 2.5)                    # it stops some 10.5 s after it started
    b = {k: thread_cpu(k) for k in kids}
    elapsed = time.monotonic() - t0
    out, _ = p.communicate(timeout=seconds + 120)
    m = LINE.search(out)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"skeleton failed ({p.returncode}): {out[-2000:]}")
    rate = float(m.group(1).replace(",", ""))
    replicas = kids[:n]              # n replicas, then the client, in the order they started
    return per_request({k: a[k] for k in replicas}, b, rate * elapsed)


def _children(pid: int) -> list[int]:
    """``pid``'s children, in the order they started."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(f[1]) == pid:
                    out.append((int(f[19]), int(d.name)))
            except (OSError, IndexError, ValueError):
                continue
    return [k for _, k in sorted(out)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="4-1c,4-16", help=f"comma-separated rows of {sorted(ROWS)}")
    p.add_argument("--runs", type=int, default=2, help="runs of each system per row (>= 1)")
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (>= 4)")
    p.add_argument("--skeleton", type=Path, default=DEFAULT_SKELETON,
                   help="path of pbft_skel.py (default: ../shared/anchors/pbft_skel.py)")
    a = p.parse_args(argv)
    rows = [r for r in a.only.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or a.runs < 1 or a.seconds < 4:
        p.error(f"--only: rows of {sorted(ROWS)}; --runs >= 1; --seconds >= 4 "
                f"(got {unknown or a.only}, {a.runs}, {a.seconds})")
    if not a.skeleton.is_file():
        p.error(f"--skeleton: {a.skeleton} is not a file; expected pbft_skel.py")
    print("| row | thread | skeleton ms/request/replica | Agora | Agora ÷ skeleton |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name in rows:
        sk, ag = [], []
        for _ in range(a.runs):
            sk.append(run_skeleton(a.skeleton, ROWS[name], a.seconds))
            ag.append(run_agora(ROWS[name], a.seconds))
        for kind in (*KINDS, "all"):
            pick = (lambda r: sum(r.values())) if kind == "all" else (lambda r: r[kind])
            s, g = statistics.median(map(pick, sk)), statistics.median(map(pick, ag))
            print(f"| {name} | {kind} | {s:.3f} | {g:.3f} | {g / s if s else float('nan'):.1f}× |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
