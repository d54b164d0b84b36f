"""Readers for the Alibaba GPU cluster trace (cluster-trace-gpu-v2023, "openb"; Weng et al.,
USENIX ATC 2023).

Node list (:func:`read_alibaba_nodes`), columns ``sn,cpu_milli,memory_mib,gpu,model``:
cpu in millicores, memory in MiB, ``gpu`` whole devices, ``model`` empty when gpu is 0. The
single trace cluster is split into ``sites`` sites named ``site-0`` .. ``site-{N-1}``, nodes
named ``<site>/<sn>``, default power model and links. Split rules:

- ``stratified``: nodes sorted by (model, cpu, mem, sn) and dealt round-robin, so every site
  gets the same hardware mix (each model's node count differs by at most 1 between sites);
- ``by-model``: nodes grouped by gpu model (cpu-only nodes form one group), whole groups
  packed greedily largest-first (by gpus, then cpu) onto the least-loaded site, so sites
  differ in hardware; while there are fewer groups than sites, the largest group is halved;
- ``contiguous``: file order, cut into equal chunks (sizes differ by at most 1).

Inside a site nodes keep file order.

Pod list (:func:`read_alibaba_pods`), columns ``name,cpu_milli,memory_mib,num_gpu,gpu_milli,
gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time`` (times in seconds). A pod
becomes a job of one task ``main``: arrival = creation_time, duration = deletion_time -
scheduled_time (- creation_time when scheduled_time is empty), demand cpu = cpu_milli
(millicores), mem = memory_mib (MiB), gpu = gpu_milli milli-gpus when num_gpu is 1 and
gpu_milli < 1000 (a shared gpu), else num_gpu * 1000; gpu_models = gpu_spec split on ``|``
(empty: any model; models absent from the cluster are kept: the simulator reports such
pods unschedulable). origin = ``site_names[zlib.crc32(name) % N]``. Weight is 1 unless
``qos_weights`` maps the pod's qos class (e.g. :data:`QOS_WEIGHTS`: LS and Guaranteed 2).
``pod_phase`` is not used.

Bounds and names (``agents/limits.py``, as for the native files), each refused naming file,
line and column: ``sn`` a site/node name (``SITE_NAME``: the node is ``<site>/<sn>``), pod
``name`` a job id (``id_problem``); cpu_milli <= ``MAX_CORES`` * 1000, memory_mib <=
``MAX_MEM_MIB``, gpu / num_gpu <= ``MAX_GPUS``, the three times <= ``MAX_TIME`` and the
duration <= ``MAX_SECONDS``.
"""

from __future__ import annotations

import csv
import math
import zlib
from pathlib import Path
from typing import Any, Mapping

from agora.agents.domain import MILLI, Cluster, Demand, Job, Node, Site, Task, Workload
from agora.agents.limits import (ID_TEXT, MAX_CORES, MAX_GPUS, MAX_MEM_MIB, MAX_SECONDS, MAX_TIME,
                                 MAX_WEIGHT,
                                 SITE_NAME_TEXT, id_problem, site_name_problem)
from agora.agents.workloads.errors import InputError, origin_sites
from agora.agents.workloads.textfile import read_text, split_lines
from agora.agents.workloads.yamlmarks import shorten

NODE_HEADER = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_HEADER = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec", "qos",
              "pod_phase", "creation_time", "deletion_time", "scheduled_time")
SPLITS = ("stratified", "by-model", "contiguous")
QOS_WEIGHTS: Mapping[str, float] = {"LS": 2.0, "Guaranteed": 2.0}
"""an optional weighting: latency-sensitive and guaranteed pods count twice"""

_DIGITS = frozenset("0123456789")
MAX_MILLI = round(MAX_CORES * MILLI)
"""largest cpu_milli of a node or a pod"""


def csv_rows(path: str, header: tuple[str, ...], what: str, *, header_optional: bool = False):
    """Yield (line number, cells) of the data rows after checking the header exactly;
    ``header_optional``: a file without a header is read from its first line (a first line
    equal to ``header`` is still skipped)."""
    lines = split_lines(read_text(path, what), path)
    expected = f"{len(header)} comma-separated columns {','.join(header)}"
    if not lines and not header_optional:
        raise InputError(path=path, line=None, field=None, problem="the file is empty",
                         expected=f"a header line {','.join(header)}")
    reader = csv.reader(lines)
    first, last = True, 0
    try:
        for cells in reader:
            start, last = last + 1, reader.line_num
            if last > start:                 # a quoted cell ran on: its line break was lost
                raise _cell_runs_on(path, lines[start - 1], start, last, header)
            if first:
                first = False
                got = tuple(c.strip() for c in cells)
                if got == header:
                    continue
                if not header_optional:
                    raise _wrong_header(path, got, header)
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) != len(header):
                raise InputError(path=path, line=reader.line_num, field=None,
                                 problem=f"found {len(cells)} columns", expected=expected)
            yield reader.line_num, cells
    except csv.Error as e:
        raise InputError(path=path, line=reader.line_num or None, field=None,
                         problem=f"not valid CSV ({e})", expected=expected) from None


def _cell_runs_on(path: str, text: str, start: int, end: int,
                  header: tuple[str, ...]) -> InputError:
    """A quoted cell opened on line ``start`` and closed on ``end``: named, never read as one
    cell with the line break dropped (``"pod\\nx"`` became pod ``podx``)."""
    col = len(next(csv.reader([text]), [""])) - 1
    return InputError(path=path, line=start, field=header[col] if col < len(header) else None,
                      problem=f"a quoted cell runs on to line {end}",
                      expected="one row a line, without line breaks inside a cell")


def _wrong_header(path: str, got: tuple[str, ...], header: tuple[str, ...]) -> InputError:
    missing = [c for c in header if c not in got]
    extra = [c for c in got if c not in header]
    detail = (f"missing {', '.join(missing)}" if missing else "") + \
             ("; " if missing and extra else "") + \
             (f"unexpected {', '.join(extra)}" if extra else "") or "columns out of order"
    return InputError(path=path, line=1, field=None,
                      problem=f"wrong header {','.join(got)!r} ({detail})",
                      expected=f"the header {','.join(header)}")


def _int(path: str, line: int, col: str, s: str, lo: int, hi: int, unit: str) -> int:
    s = s.strip()
    t = s[1:] if s[:1] == "-" else s
    expected = f"a whole number >= {lo:,} and <= {hi:,} ({unit})"
    if not t or not _DIGITS.issuperset(t) or len(t) > 18:
        raise InputError(path=path, line=line, field=col, problem=f"found {repr(shorten(s))}",
                         expected=expected)
    v = int(s)
    if not lo <= v <= hi:
        raise InputError(path=path, line=line, field=col,
                         problem=f"found {v}" + (" (negative)" if v < 0 else ""),
                         expected=expected)
    return v


def plain_float(s: str) -> float:
    """``s`` (stripped) as a plain decimal number, NaN for anything else (words, ``nan``,
    ``inf``, digits with underscores, non-ASCII digits)."""
    try:
        if not s.isascii() or "_" in s or s.lower().lstrip("+-")[:1] in ("n", "i"):
            raise ValueError
        return float(s)
    except ValueError:
        return math.nan


def _time(path: str, line: int, col: str, s: str) -> float:
    s = s.strip()
    v = plain_float(s)
    if not math.isfinite(v) or not 0 <= v <= MAX_TIME:
        raise InputError(path=path, line=line, field=col,
                         problem=f"found {repr(shorten(s))}" + (" (negative)" if v < 0 else ""),
                         expected=f"a finite number >= 0 and <= {MAX_TIME:,.0f} (seconds)")
    return v


def read_alibaba_nodes(path: str | Path, sites: int, split: str = "stratified") -> Cluster:
    """Read an Alibaba node list and split it into ``sites`` sites by rule ``split``."""
    path = str(path)
    if split not in SPLITS:
        raise InputError(path=path, line=None, field="split", problem=f"found {split!r}",
                         expected=f"one of {', '.join(SPLITS)}")
    if isinstance(sites, bool) or not isinstance(sites, int) or sites < 1:
        raise InputError(path=path, line=None, field="sites", problem=f"found {sites!r}",
                         expected="a whole number of sites >= 1")
    rows: list[tuple[str, int, int, int, str | None]] = []
    seen: dict[str, int] = {}
    for line, c in csv_rows(path, NODE_HEADER, "an Alibaba node list CSV"):
        sn = c[0].strip()
        bad = site_name_problem(sn)
        if bad:
            raise InputError(path=path, line=line, field="sn", problem=bad,
                             expected=f"a node serial of {SITE_NAME_TEXT} (the node is named "
                                      f"<site>/<sn>)")
        if sn in seen:
            raise InputError(path=path, line=line, field="sn",
                             problem=f"node {sn!r} already listed on line {seen[sn]}",
                             expected="unique serials")
        seen[sn] = line
        cpu = _int(path, line, "cpu_milli", c[1], 1, MAX_MILLI, "millicores")
        mem = _int(path, line, "memory_mib", c[2], 1, MAX_MEM_MIB, "MiB")
        gpus = _int(path, line, "gpu", c[3], 0, MAX_GPUS, "gpus")
        model = c[4].strip() or None
        if (gpus > 0) != (model is not None):
            raise InputError(path=path, line=line, field="model",
                             problem=f"found {c[4]!r} for a node with {gpus} gpus",
                             expected="a gpu model when gpu > 0, empty when gpu is 0")
        rows.append((sn, cpu, mem, gpus, model))
    if not rows:
        raise InputError(path=path, line=None, field=None, problem="no nodes (a header only, "
                         "or only blank lines)", expected="one node a line after the header")
    if len(rows) < sites:
        raise InputError(path=path, line=None, field="sites",
                         problem=f"{sites} sites but only {len(rows)} nodes",
                         expected=f"at most {len(rows)} sites (every site needs a node)")
    assign = _split(rows, sites, split)
    names = [f"site-{k}" for k in range(sites)]
    site_objs = []
    for k, idx in enumerate(assign):
        nodes = tuple(Node(name=f"{names[k]}/{rows[i][0]}", site=names[k], cpu=rows[i][1],
                           mem=rows[i][2], gpus=rows[i][3], gpu_model=rows[i][4])
                      for i in sorted(idx))
        site_objs.append(Site(name=names[k], nodes=nodes))
    return Cluster(sites=tuple(site_objs), source=path)


def _split(rows: list[tuple[str, int, int, int, str | None]], n: int, rule: str) -> list[list[int]]:
    """Row indices of each of ``n`` sites (every site non-empty; len(rows) >= n)."""
    sites: list[list[int]] = [[] for _ in range(n)]
    if rule == "contiguous":
        m = len(rows)
        return [list(range(k * m // n, (k + 1) * m // n)) for k in range(n)]
    if rule == "stratified":
        order = sorted(range(len(rows)),
                       key=lambda i: (rows[i][4] or "", rows[i][1], rows[i][2], rows[i][0]))
        for pos, i in enumerate(order):
            sites[pos % n].append(i)
        return sites
    groups: dict[str | None, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r[4], []).append(i)

    def size(g: list[int]) -> tuple[int, int]:
        return (sum(rows[i][3] for i in g), sum(rows[i][1] for i in g))

    parts = [sorted(g, key=lambda i: (rows[i][1], rows[i][2], rows[i][0]))
             for g in groups.values()]
    while len(parts) < n:
        parts.sort(key=lambda g: (size(g), len(g)), reverse=True)
        big = next(g for g in parts if len(g) > 1)  # exists: len(rows) >= n > len(parts)
        parts.remove(big)
        parts += [big[: len(big) // 2], big[len(big) // 2:]]
    parts.sort(key=lambda g: (size(g), len(g), min(g)), reverse=True)
    load = [(0, 0)] * n
    for g in parts:
        k = min(range(n), key=lambda s: (load[s], s))
        sites[k] += g
        gs = size(g)
        load[k] = (load[k][0] + gs[0], load[k][1] + gs[1])
    return sites


def _qos_weights(path: str, given: Any) -> dict:
    """``qos_weights`` as a mapping, or as text ``CLASS:WEIGHT,...`` (the form a command
    line's ``--workload-option qos_weights=LS:2,BE:1`` gives)."""
    if given is None:
        return {}
    if isinstance(given, Mapping):
        return dict(given)
    expected = "qos class:weight pairs, e.g. qos_weights=LS:2,BE:1 (each weight > 0)"
    if not isinstance(given, str):
        raise InputError(path=path, line=None, field="qos_weights",
                         problem=f"found {given!r}", expected=expected)
    out: dict[str, float] = {}
    for part in (p for p in given.split(",") if p.strip()):
        q, colon, w = part.partition(":")
        try:
            wt = float(w)
        except ValueError:
            wt = None
        if not colon or not q.strip() or wt is None or q.strip() in out:
            raise InputError(path=path, line=None, field="qos_weights",
                             problem=f"found {part[:60]!r}"
                                     + (" (repeated)" if q.strip() in out else ""),
                             expected=expected)
        out[q.strip()] = wt
    return out


def read_alibaba_pods(path: str | Path, cluster: Cluster, *,
                      qos_weights: Mapping[str, float] | None = None) -> Workload:
    """Read an Alibaba pod list into one single-task job per pod (see module doc)."""
    path = str(path)
    sites = origin_sites(cluster, path)
    weights = _qos_weights(path, qos_weights)
    for q, wt in weights.items():
        if isinstance(wt, bool) or not isinstance(wt, (int, float)) or \
                not 0 < wt <= MAX_WEIGHT:    # as a job's weight in JSON Lines (a probe)
            raise InputError(path=path, line=None, field=f"qos_weights[{q!r}]",
                             problem=f"found {wt!r}",
                             expected=f"a weight > 0 and at most {MAX_WEIGHT:,.0f}, as a job's")
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    demands: dict[tuple, Demand] = {}
    classes: set[str] = set()
    for line, c in csv_rows(path, POD_HEADER, "an Alibaba pod list CSV"):
        name = _pod_name(path, line, c, seen)
        cpu, mem, gpu, models = _demand_cells(path, line, c, spec=True)
        created = _time(path, line, "creation_time", c[8])
        deleted = _time(path, line, "deletion_time", c[9])
        start_col = "scheduled_time" if c[10].strip() else "creation_time"
        start = _time(path, line, start_col, c[10]) if c[10].strip() else created
        if deleted < start:
            raise InputError(path=path, line=line, field="deletion_time",
                             problem=f"deletion_time {deleted:g} is before {start_col} "
                                     f"{start:g} (negative duration)",
                             expected=f"deletion_time >= {start_col}")
        if deleted - start > MAX_SECONDS:
            raise InputError(path=path, line=line, field="deletion_time",
                             problem=f"deletion_time {deleted:g} - {start_col} {start:g} = "
                                     f"{deleted - start:g} s",
                             expected=f"a duration <= {MAX_SECONDS:,.0f} s")
        key = (cpu, mem, gpu, models)
        demand = demands.get(key)
        if demand is None:
            demand = demands[key] = Demand(cpu=cpu, mem=mem, gpu=gpu, gpu_models=models)
        jobs.append(Job(id=name, arrival=created,
                        origin=sites[zlib.crc32(name.encode("utf-8")) % len(sites)],
                        tasks=(Task(id="main", duration=deleted - start, demand=demand),),
                        weight=float(weights.get(c[6].strip(), 1.0))))
        classes.add(c[6].strip())
    unknown = sorted(set(weights) - classes) if isinstance(qos_weights, str) else []
    if unknown:                  # a probe: a class the file lacks (a typo) was taken silently
        raise InputError(path=path, line=None, field=f"qos_weights[{unknown[0]!r}]",
                         problem="no pod of the file has that qos class",
                         expected=f"one of the file's classes: "
                                  f"{', '.join(sorted(classes)[:12]) or 'none'}")
    jobs.sort(key=lambda j: (j.arrival, j.id))
    return Workload(jobs=tuple(jobs), source=path)


def _pod_name(path: str, line: int, c: list[str], seen: dict[str, int]) -> str:
    """The pod name of a row: non-empty and not seen before (``seen``: name -> line)."""
    name = c[0].strip()
    bad = id_problem(name)
    if bad:
        raise InputError(path=path, line=line, field="name", problem=bad,
                         expected=f"a pod name of {ID_TEXT}")
    if name in seen:
        raise InputError(path=path, line=line, field="name",
                         problem=f"pod {name!r} already listed on line {seen[name]}",
                         expected="unique pod names")
    seen[name] = line
    return name


def _demand_cells(path: str, line: int, c: list[str], spec: bool) -> tuple:
    """(cpu, mem, gpu, models) of one pod row (columns 1..4, and gpu_spec in 5 if ``spec``)."""
    cpu = _int(path, line, "cpu_milli", c[1], 0, MAX_MILLI, "millicores")
    mem = _int(path, line, "memory_mib", c[2], 0, MAX_MEM_MIB, "MiB")
    num_gpu = _int(path, line, "num_gpu", c[3], 0, MAX_GPUS, "gpus")
    gpu_milli = _int(path, line, "gpu_milli", c[4], 0, MILLI, "thousandths of a gpu")
    if num_gpu == 0 and gpu_milli != 0 or num_gpu > 0 and not 0 < gpu_milli <= MILLI \
            or num_gpu > 1 and gpu_milli != MILLI:
        raise InputError(path=path, line=line, field="gpu_milli",
                         problem=f"found {gpu_milli} with num_gpu {num_gpu}",
                         expected="0 when num_gpu is 0, 1..1000 when it is 1, "
                                  "1000 when it is more")
    gpu = gpu_milli if num_gpu == 1 and gpu_milli < MILLI else num_gpu * MILLI
    spec_s = c[5].strip() if spec else ""
    models = frozenset(m.strip() for m in spec_s.split("|")) if spec_s and gpu else None
    if models is not None and "" in models:
        raise InputError(path=path, line=line, field="gpu_spec", problem=f"found {spec_s!r}",
                         expected="gpu model names separated by '|'")
    return cpu, mem, gpu, models


PLACEMENT_HEADER = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
"""the columns of the authors' placement-only variants (``openb_pod_list_multigpu50.csv``)"""


def read_alibaba_pod_demands(path: str | Path) -> list[tuple[str, Demand]]:
    """(pod name, demand) of every pod of an Alibaba pod list, in file order, for placement
    experiments: the full header (``POD_HEADER``; times are not read) or the five columns
    ``PLACEMENT_HEADER`` of the placement-only variants."""
    path = str(path)
    lines = split_lines(read_text(path, "an Alibaba pod list CSV"), path)
    # The header's column count picks the variant; split by hand, not csv: a header that is not
    # valid CSV (a stray carriage return) must reach csv_rows, which names its line and problem.
    first = lines[0].split(",") if lines else []
    header = PLACEMENT_HEADER if len(first) == len(PLACEMENT_HEADER) else POD_HEADER
    out: list[tuple[str, Demand]] = []
    seen: dict[str, int] = {}
    for line, c in csv_rows(path, header, "an Alibaba pod list CSV"):
        name = _pod_name(path, line, c, seen)
        cpu, mem, gpu, models = _demand_cells(path, line, c, spec=header is POD_HEADER)
        out.append((name, Demand(cpu=cpu, mem=mem, gpu=gpu, gpu_models=models)))
    return out
