"""Agora's coordinator against a bare PBFT on the same machine, interleaved in one run.

    python -m bench.coordinator_vs_skeleton [--pairs 3] [--seconds 8]
        [--skeleton ../shared/anchors/pbft_skel.py] [--only 4-8c,4-1c,4-16,7-16,10-16]
        [--out bench/results/coordinator-vs-skeleton.md] [--also-env NAME=VALUE]

The reference is ``pbft_skel.py`` (``../shared/anchors``): PBFT's normal case over the same
stack (grpc.aio streams, per-link HMAC, Ed25519 client signatures) with no view change,
checkpoints, persistence or application -- the floor of what Python and gRPC cost here. For
each row the two run alternately (skeleton, Agora, skeleton, Agora, ...; ``--pairs`` pairs)
and the table gives the medians, their ratios and the 1-minute load average beside each run
(this machine is shared: an absolute figure means little, the ratio within a pair more).
``--also-env AGORA_EVENT_LOOP=asyncio`` adds a third run to each pair, Agora with that
variable set, and a row for it against the same skeleton runs (an A/B of a setting).

Rows (the skeleton's configurations from its docstring; Agora's from
``bench/coordinator_throughput.py``, SQLite synchronous NORMAL, checkpoints every 64):

- ``4-8c``: n=4, 8 closed-loop signed clients, one request per PBFT batch; Agora's requests
  are one-bid site parts;
- ``4-1c``: n=4, one client, one request at a time;
- ``4-16``, ``7-16``, ``10-16``: batches of up to 16 requests, each 50 assignments (Agora: a
  site part of 50 bids, of which "assignments/s" counts the bids the state machine
  admitted), 32 clients.

Agora's cluster has a fifth site with no client, so a round closes on the replicas' votes
(the watchdog's, once a second, as a round timeout would) rather than as soon as the four
busy sites decided: every part is ordered, executed and its bids admitted against the
ledger, and a site's later part of a round replaces its earlier one (only the last is
cleared; the allocations made are in the JSON). Without the quiet site most parts of 8
clients per site arrive after their round closed (refused as stale): that measures the
round protocol with many clients per site, not the coordinator.

CPU per request: CPU seconds of every process of the run (replicas and clients) in the
measured window, over the requests committed in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.coordinator_throughput import proc_cpu_s, scenario
from agora.deploy.local_group import free_ports

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SKELETON = ROOT.parent / "shared" / "anchors" / "pbft_skel.py"

ROWS = {
    # name: (n, PBFT batch, assignments per request, clients, window)
    "4-8c": (4, 1, 1, 8, 8),
    "4-1c": (4, 1, 1, 1, 1),
    "4-16": (4, 16, 50, 32, 8),
    "7-16": (7, 16, 50, 32, 8),
    "10-16": (10, 16, 50, 32, 8),
}
LINE = re.compile(r"([\d,.]+) req/s committed.*p50=([\d.]+)ms p99=([\d.]+)ms")


def run_skeleton(path: Path, n: int, batch: int, per: int, clients: int, window: int,
                 seconds: float) -> dict:
    """One skeleton run; its rates and the CPU seconds of all its processes."""
    base = _port_base(n)
    cmd = [sys.executable, str(path), "--n", str(n), "--batch", str(batch), "--window",
           str(window), "--conc", str(clients), "--sig", "1", "--assign", str(per),
           "--secs", str(seconds + 2), "--base", str(base)]
    la = os.getloadavg()[0]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rate = _tree_cpu_rate(p, seconds + 2)
    out, _ = p.communicate(timeout=seconds + 120)
    m = LINE.search(out)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"skeleton failed ({p.returncode}): {out[-2000:]}")
    tput = float(m.group(1).replace(",", ""))
    return {"req_s": tput, "assign_s": tput * per, "p50": float(m.group(2)),
            "p99": float(m.group(3)), "cpu_per_req_ms": 1000 * rate / max(tput, 1e-9),
            "load": la}


def _port_base(n: int) -> int:
    """A first port p with p..p+n-1 (the skeleton's replicas) and p+100 (its client) all
    free now."""
    for _ in range(50):
        p = free_ports(1)[0]
        wanted = [*range(p, p + n), p + 100]
        if wanted[-1] < 65535 and all(_free(q) for q in wanted):
            return p
    raise RuntimeError("no free port range for the skeleton")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tree_cpu_rate(p: subprocess.Popen, seconds: float, start=None,
                   what: str = "the skeleton") -> float:
    """CPU seconds per second the process tree of ``p`` uses in the skeleton's measured
    window (after its start-up and 2 s warm-up, before its end): sampled every 0.25 s.
    ``start()``, called once ``p`` ended: where the window begins (``time.monotonic()``);
    by default 4 s after ``p`` started."""
    t0, samples = time.monotonic(), []
    while p.poll() is None:
        samples.append((time.monotonic(), _cpu_of_tree(p.pid)))
        time.sleep(0.25)
    begin = t0 + 4.0 if start is None else start()
    inside = [x for x in samples if begin <= x[0] <= samples[-1][0] - 0.5] if samples else []
    if len(inside) < 2:
        raise RuntimeError(f"{what} ended before its measured window; raise --seconds")
    (ta, ca), (tb, cb) = inside[0], inside[-1]
    return (cb - ca) / (tb - ta)


def _cpu_of_tree(pid: int) -> float:
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            total += proc_cpu_s(int(d.name))
    return total + proc_cpu_s(pid)


def run_agora(n: int, batch: int, per: int, clients: int, window: int, seconds: float) -> dict:
    la = os.getloadavg()[0]
    r = asyncio.run(scenario(n, batch, per, clients, seconds, sync="NORMAL", window=window,
                             quiet_site=True))
    req_s, assign_s, p50, p99 = r["rate"]
    return {"req_s": req_s, "assign_s": assign_s, "p50": p50, "p99": p99,
            "cpu_per_req_ms": 1000 * r["cpu_s"] / max(req_s * seconds, 1), "load": la,
            "stale": r["stale_parts"], "rounds": r["rounds"], "allocated": r["allocated"]}


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _line(label: str, sk: list[dict], ag: list[dict]) -> str:
    """One table row: medians of the skeleton's and Agora's runs, and their ratios."""
    rs, ra = med(sk, "req_s"), med(ag, "req_s")
    xs, xa = med(sk, "assign_s"), med(ag, "assign_s")
    s50, a50, s99, a99 = med(sk, "p50"), med(ag, "p50"), med(sk, "p99"), med(ag, "p99")
    loads = ", ".join(f"{s['load']:.1f}/{g['load']:.1f}" for s, g in zip(sk, ag))
    return (f"| {label} | {rs:,.0f} | {ra:,.0f} | **{ra / rs:.2f}** | {xs:,.0f} | "
            f"{xa:,.0f} | **{xa / xs:.2f}** | {s50:.1f} / {s99:.1f} | {a50:.1f} / {a99:.1f} | "
            f"{a50 / s50:.1f}× | {a99 / s99:.1f}× | {med(sk, 'cpu_per_req_ms'):.2f} / "
            f"{med(ag, 'cpu_per_req_ms'):.2f} | {loads} |")


@contextlib.contextmanager
def _env(var: tuple[str, str]):
    """The environment variable ``var`` set (the replicas a run starts inherit it)."""
    name, value = var
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def run_arguments(doc: str, only: str, arms: str) -> argparse.ArgumentParser:
    """The flags every interleaved comparison takes: --pairs (``arms`` runs each),
    --seconds, --skeleton, --only (default ``only``: "" is every row)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--pairs", type=int, default=3, help=f"{arms} runs per row (>= 1)")
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    p.add_argument("--skeleton", type=Path, default=DEFAULT_SKELETON,
                   help="path of pbft_skel.py (default: ../shared/anchors/pbft_skel.py)")
    p.add_argument("--only", default=only, help=f"comma-separated rows of {sorted(ROWS)}")
    return p


def run_rows(p: argparse.ArgumentParser, a: argparse.Namespace) -> list[str]:
    """The rows ``run_arguments``' flags ask for, the flags checked (``p.error`` names the
    bad one)."""
    if not a.skeleton.is_file():
        p.error(f"--skeleton: {a.skeleton} is not a file; expected the path of pbft_skel.py "
                f"(../shared/anchors beside the repository)")
    if a.pairs < 1:
        p.error(f"--pairs: {a.pairs}; expected >= 1")
    names = [x for x in a.only.split(",") if x] if a.only else list(ROWS)
    bad = [x for x in names if x not in ROWS]
    if bad:
        p.error(f"--only: unknown rows {bad}; expected some of {sorted(ROWS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    p = run_arguments(__doc__, "", "skeleton/Agora")
    p.add_argument("--out", type=Path,
                   default=ROOT / "bench" / "results" / "coordinator-vs-skeleton.md")
    p.add_argument("--also-env", default="", metavar="NAME=VALUE",
                   help="run Agora a second time in each pair with this environment variable "
                        "set (e.g. AGORA_EVENT_LOOP=asyncio): a row of its own, against the "
                        "same skeleton runs")
    a = p.parse_args(argv)
    also = None
    if a.also_env:
        k, eq, v = a.also_env.partition("=")
        if not eq or not k.isidentifier():
            p.error(f"--also-env: {a.also_env!r}; expected NAME=VALUE")
        also = (k, v)
    names = run_rows(p, a)
    lines = ["| row | skeleton req/s | Agora req/s | ratio | skeleton assignments/s | Agora "
             "assignments/s | ratio | skeleton p50 / p99 ms | Agora p50 / p99 ms | p50 ratio "
             "| p99 ratio | CPU ms/request skeleton / Agora | load avg (per run) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | --- "
             "| --- |"]
    raw = {}
    for name in names:
        n, batch, per, clients, window = ROWS[name]
        sk, ag, alt = [], [], []
        for i in range(a.pairs):
            sk.append(run_skeleton(a.skeleton, n, batch, per, clients, window, a.seconds))
            ag.append(run_agora(n, batch, per, clients, window, a.seconds))
            print(f"  {name} pair {i + 1}: skeleton {sk[-1]}\n  {'':>{len(name)}} "
                  f"agora {ag[-1]}", flush=True)
            if also:
                with _env(also):
                    alt.append(run_agora(n, batch, per, clients, window, a.seconds))
                print(f"  {'':>{len(name)}} agora {a.also_env} {alt[-1]}", flush=True)
        raw[name] = {"skeleton": sk, "agora": ag, **({a.also_env: alt} if also else {})}
        lines.append(_line(f"{name} (n={n}, {clients} client{'s' if clients > 1 else ''}, "
                           f"{per} per request)", sk, ag))
        print(lines[-1], flush=True)
        if also:
            lines.append(_line(f"{name}, Agora with {a.also_env}", sk, alt))
            print(lines[-1], flush=True)
    cmd = " ".join(["python -m bench.coordinator_vs_skeleton"] + (argv or sys.argv[1:]))
    text = ("# Coordinator against the bare PBFT skeleton (written by "
            "bench/coordinator_vs_skeleton.py)\n\n"
            f"Command: `{cmd}`\n\n"
            f"Machine: {os.cpu_count()} cores (shared); every replica and client of a run on "
            f"it, loopback gRPC, plaintext (the skeleton has no TLS). {a.pairs} interleaved "
            f"pairs per row, {a.seconds:g} s measured per run; medians. Load average: "
            "skeleton/Agora at the start of each pair's runs.\n\n" + "\n".join(lines) + "\n")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    import json
    a.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
