"""The floor under the coordinator's promises: the bare PBFT skeleton given only the work
every Agora replica must do per request, against the skeleton and Agora in one run.

    python -m bench.skeleton_floor [--pairs 3] [--seconds 8] [--only 4-1c,4-16]
        [--skeleton ../shared/anchors/pbft_skel.py] [--out bench/results/skeleton-floor.md]

Issue 14 measures Agora's coordinator against ``pbft_skel.py`` (``../shared/anchors``), a
PBFT normal case with no application, no durable log, unsigned votes. This asks what part
of the gap is the work Agora must do whatever its protocol code: the skeleton's own source,
loaded and given, at nine marked places (``PATCHES``), calls into Agora's real parts
(``bench/floor_work.py``) --

- **app**: the client sends Agora's own command (a site's part of a round with 1 or 50
  bids, as ``bench/coordinator_throughput.py``'s load does, signed by the skeleton's
  Ed25519 key); the primary parses and checks it (``validate.parse_command``) before it
  orders it, and every replica executes it on a real ``ScheduleState`` set up with the
  same jobs as Agora's run (``execute``: decode, admission of every bid);
- **log**: every replica keeps Agora's SQLite log (``SqliteStorage``, WAL, synchronous
  NORMAL as in the comparison): the pre-prepare with its requests (as the skeleton encodes
  them), its PREPARE and COMMIT votes, the commit, each client's reply and the executed
  mark; a transaction per message that made a vote, committed before the vote is sent
  (what executing wrote goes with the next one);
- **signed**: PREPAREs are signed (Ed25519) and checked until the skeleton's quorum holds
  (its own vote counts; Agora checks 2f backups' for its certificate), as Agora's are
  (they close a view-change deadlock a faulty replica could cause).

Everything else of Agora's is left out -- checkpoints, view changes, prepared
certificates, authenticated replies carrying results, the requests' freshness and rate
checks, the backups' copies of requests, unknown-field guards, metrics, the stream per
client: the floor is what the same promises cost on the skeleton's protocol path (a gRPC
message per vote), and "floor / skeleton" the best "Agora / skeleton" could be on it. Where
many votes wait for one peer at once, packing them into one message (Agora's links) goes
under it: eight clients, docs/benchmarks.md.

Rows as ``bench/coordinator_vs_skeleton.py``'s. Each pair runs the skeleton, the floor and
Agora one after the other; medians; CPU per request of every process of the run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.coordinator_vs_skeleton import (LINE, ROWS, _port_base, _tree_cpu_rate, run_agora,
                                           run_arguments, run_rows, run_skeleton)

ROOT = Path(__file__).resolve().parent.parent

PATCHES = [
    # (what the skeleton says, what the floor says instead): each must occur exactly once
    ("    pubkeys = None\n", "    pubkeys = None\n    H = WORK.replica(me, n, f)\n"),
    ("                for r in batch: pubkeys.verify(r[1], r[2])\n            st['seq'] += 1",
     "                for r in batch: pubkeys.verify(r[1], r[2]); H.admit(r)\n"
     "            st['seq'] += 1"),
    ("e = entry(s); e['d'], e['batch'] = d, batch; e['P'].add(me)  # primary",
     "H.pre_prepare(s, d, batch); e = entry(s); e['d'], e['batch'] = d, batch; "
     "e['P'].add(me)  # primary"),
    ("e = entry(s); e['d'], e['batch'] = d, batch; e['P'].add(me)\n"
     "            bcast([\"P\", me, 0, s, d])",
     "H.pre_prepare(s, d, batch); e = entry(s); e['d'], e['batch'] = d, batch; "
     "e['P'].add(me)\n            bcast([\"P\", me, 0, s, d, H.prepare(s, d)])"),
    ("e['sc'] = True; e['C'].add(me); bcast",
     "e['sc'] = True; e['C'].add(me); H.vote('commit', s, e['d']); bcast"),
    ("x = log.pop(st['exec']); st['committed'] += 1",
     "x = log.pop(st['exec']); st['committed'] += 1; H.execute(x, st['exec'])"),
    ("        (e['P'] if t == \"P\" else e['C']).add(src); try_progress(s)",
     "        if t == \"P\" and not H.prepare_ok(m, len(e['P'])): return\n"
     "        (e['P'] if t == \"P\" else e['C']).add(src); try_progress(s)"),
    ("[CLIENT], on_msg); await net.start()", "[CLIENT], H.wrap(on_msg)); await net.start()"),
    ("        payload = msgpack.packb([",
     "        payload = WORK.payload(rid, a.assign) or msgpack.packb(["),
]


def floor_source(skeleton: Path) -> str:
    """The skeleton's source with the floor's calls in it (``PATCHES``)."""
    src = skeleton.read_text()
    for old, new in PATCHES:
        if src.count(old) != 1:
            raise RuntimeError(f"{skeleton}: expected one {old!r}; the skeleton changed, "
                               f"update bench/skeleton_floor.py's PATCHES")
        src = src.replace(old, new)
    return src


def run_floor(skeleton: Path, n: int, batch: int, per: int, clients: int, window: int,
              seconds: float, parts: str = "app,log,signed") -> dict:
    """One run of the floor (``python -m bench.floor_work``) with ``parts`` of its work
    (``AGORA_FLOOR``): as ``run_skeleton``."""
    base = _port_base(n)
    with tempfile.TemporaryDirectory(prefix="agora-floor-") as tmp:
        cmd = [sys.executable, "-m", "bench.floor_work", str(skeleton), tmp, str(batch),
               "--n", str(n), "--batch", str(batch), "--window", str(window), "--conc",
               str(clients), "--sig", "1", "--assign", str(per), "--secs", str(seconds + 2),
               "--base", str(base)]
        la = os.getloadavg()[0]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=ROOT, env={**os.environ, "AGORA_FLOOR": parts})
        rate = _tree_cpu_rate(p, seconds, start=lambda: _ready_at(Path(tmp) / "ready_at"),
                              what="the floor")
        out, _ = p.communicate(timeout=seconds + 300)
    m = LINE.search(out)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"floor failed ({p.returncode}): {out[-3000:]}")
    tput = float(m.group(1).replace(",", ""))
    # the share of bids the schedule admitted; without the app part no bid is looked at
    admitted = float(out.split("admitted share ")[1].split()[0]) if "app" in parts else 0.0
    return {"req_s": tput, "assign_s": tput * per * admitted, "p50": float(m.group(2)),
            "p99": float(m.group(3)), "cpu_per_req_ms": 1000 * rate / max(tput, 1e-9),
            "load": la, "admitted": admitted}


def _ready_at(ready: Path) -> float:
    """Where the floor's measured window begins: 3.5 s (the skeleton's own connect and
    warm-up) after the end of its set-up (``ready``: its ``time.monotonic()``)."""
    try:
        return float(ready.read_text()) + 3.5
    except (OSError, ValueError):
        raise RuntimeError("the floor did not finish its set-up") from None


def _cells(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(rows: dict[str, dict[str, list[dict]]]) -> str:
    head = ("| row | arm | requests/s | ÷ skeleton | assignments/s | ÷ skeleton | p50 ms | "
            "p50 ÷ skeleton | p99 ms | p99 ÷ skeleton | CPU ms/request | load avg |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    out = [head]
    for name, arms in rows.items():
        sk = arms["skeleton"]
        for arm, runs in arms.items():
            ratio = lambda k: _cells(runs, k) / _cells(sk, k)
            # a floor without the app part admits nothing: its assignments are not counted
            assign = (f"{_cells(runs, 'assign_s'):,.0f} | {ratio('assign_s'):.2f}"
                      if arm in ("skeleton", "Agora") or "app" in arm else "– | –")
            out.append(
                f"| {name} | {arm} | {_cells(runs, 'req_s'):,.0f} | {ratio('req_s'):.2f} | "
                f"{assign} | "
                f"{_cells(runs, 'p50'):.1f} | {ratio('p50'):.2f}× | {_cells(runs, 'p99'):.1f} | "
                f"{ratio('p99'):.2f}× | {_cells(runs, 'cpu_per_req_ms'):.2f} | "
                f"{', '.join(format(r['load'], '.1f') for r in runs)} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = run_arguments(__doc__, "4-1c,4-16", "skeleton/floor/Agora")
    p.add_argument("--floors", default="app,log,signed",
                   help="the floor arms, ';'-separated, each the parts it runs (some of app, "
                        "log, signed, joined by ','; 'none': the skeleton with Agora's "
                        "commands as its payload), e.g. 'app;app,log;app,log,signed'")
    p.add_argument("--no-agora", action="store_true", help="the skeleton and the floor only")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "skeleton-floor.md")
    a = p.parse_args(argv)
    names = run_rows(p, a)
    floor_source(a.skeleton)          # fails early if the skeleton changed
    floors = [x.strip() for x in a.floors.split(";") if x.strip()]
    for x in floors:
        if x != "none" and not set(x.split(",")) <= {"app", "log", "signed"}:
            p.error(f"--floors: {x!r}; expected parts among app, log, signed joined by ',' "
                    f"(or 'none')")
    rows: dict[str, dict[str, list[dict]]] = {}
    for name in names:
        n, batch, per, clients, window = ROWS[name]
        arms: dict[str, list[dict]] = {"skeleton": []}
        arms.update({f"floor: {x}": [] for x in floors})
        if not a.no_agora:
            arms["Agora"] = []
        for k in range(a.pairs):
            arms["skeleton"].append(run_skeleton(a.skeleton, n, batch, per, clients, window,
                                                 a.seconds))
            for x in floors:
                arms[f"floor: {x}"].append(run_floor(a.skeleton, n, batch, per, clients,
                                                     window, a.seconds, x))
            if not a.no_agora:
                arms["Agora"].append(run_agora(n, batch, per, clients, window, a.seconds))
            print(f"  {name} pair {k + 1}: " + "; ".join(
                f"{arm} {runs[-1]['req_s']:.0f} req/s p50 {runs[-1]['p50']:.1f} ms "
                f"cpu {runs[-1]['cpu_per_req_ms']:.2f} ms" for arm, runs in arms.items()),
                flush=True)
        rows[name] = arms
    text = table(rows)
    print(text)
    cmd = " ".join(["python -m bench.skeleton_floor"] + (argv if argv is not None
                                                         else sys.argv[1:]))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(f"# The floor under the coordinator's promises\n\nCommand: `{cmd}` "
                     f"({time.strftime('%Y-%m-%d %H:%M')})\n\n{text}\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
