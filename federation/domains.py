"""Named federation setups: organisations that do not share a workload or a node mix.

A federation site here is an *organisation* (a data-centre operator, a lab, a factory
network) that runs Agora's site agents on its own multi-site cluster and its own workload,
and shares only network weights. Each organisation is one ``agents.sim.runner.Scenario``.
One network serves all of them (``agents.learn.networks`` has no per-site parameters and a
fixed-size critic input), so organisations may run clusters of any number of sites.

Setups:

* ``synthetic-noniid`` (``deploy/configs/federation/synthetic-noniid.yaml``): four
  organisations with hand-written clusters (``hpc``: large cpu nodes, a few V100;
  ``ml-lab``: A100/V100/T4 gpu nodes; ``edge``: small boxes on slow links; ``enterprise``:
  a mix) and seeded synthetic workloads that differ in job size, duration, gpu share, DAG
  mix, deadlines, origin skew and load. Any YAML file of the same form is a setup too
  (``read_setup``).
* ``alibaba-by-type`` (``alibaba_by_type``): the Alibaba GPU trace (Weng et al., ATC 2023)
  split by node type: one organisation per group (``cpu``: gpu-less nodes; ``g2``; ``t4``;
  ``mixed-gpu``: every other gpu model: P100, V100M16, V100M32, G3, A10), each with that
  group's nodes (evenly down-sampled in file order to at most ``max_nodes``, so a simulated
  episode stays cheap) and the pods that can run there: gpu-less pods go to ``cpu``, every gpu pod to one gpu
  group that has a node it fits (cpu, memory, gpu count, allowed models), chosen by a
  stable hash of its name, so no pod is in two organisations. Arrivals are scaled to an
  offered ``load`` per organisation. The per-group node and pod lists are written as CSV
  files in the trace's own format under ``cache`` and read by Agora's trace readers.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from agora.agents.limits import SITE_NAME_TEXT, site_name_problem
from agora.agents.sim.runner import Scenario, file_digest
from agora.agents.workloads.alibaba import NODE_HEADER, POD_HEADER, SPLITS
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import parse_synthetic, splits_into_sites
from agora.agents.workloads.transform import MAX_INFLATE
from agora.agents.workloads.yamlmarks import (Where, at_item, at_key, get_int, get_list,
                                              get_mapping, get_number, get_str, load_yaml)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "deploy" / "configs" / "federation"
DEFAULT_TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "workloads"
SETUPS = ("synthetic-noniid", "alibaba-by-type")

ALIBABA_GROUPS = ("cpu", "g2", "t4", "mixed-gpu")
"""the organisations of ``alibaba-by-type`` (``_group``: which a node belongs to)"""


def _group(node: dict) -> str:
    if int(node["gpu"]) == 0:
        return "cpu"
    return {"G2": "g2", "T4": "t4"}.get(node["model"], "mixed-gpu")
ALIBABA_NODES = "alibaba-openb-2023/openb_node_list_all_node.csv"
ALIBABA_PODS = "alibaba-openb-2023/openb_pod_list_default.csv"


@dataclass(frozen=True)
class FederationSite:
    name: str
    """the organisation's name (a Flower node's ``site``)"""
    scenario: Scenario
    """its cluster and workload"""
    note: str = ""


@dataclass(frozen=True)
class Setup:
    name: str
    sites: tuple[FederationSite, ...]
    source: str = ""
    """where it came from (file, trace and its digest)"""

    def to_dict(self) -> dict:
        """What a run records of its setup, with a digest of each cluster and workload file:
        a resume refuses files changed since (a probe: an edited cluster went unnoticed)."""
        return {"name": self.name, "source": self.source,
                "sites": [{"name": s.name, "note": s.note, "scenario": asdict(s.scenario),
                           "digests": s.scenario.file_digests()} for s in self.sites]}


# -- YAML setups ------------------------------------------------------------------------------

_SITE_KEYS = ("name", "cluster", "workload")
_SITE_OPTIONAL = ("note", "sites", "split", "arrival_window", "load", "inflate")


def read_setup(path: str | Path) -> Setup:
    """A setup from YAML: ``{name, sites: [{name, cluster, workload, note?, sites?, split?,
    arrival_window?, load?, inflate?}, ...]}`` with at least two sites of distinct names.
    A relative cluster or workload path is taken relative to the file. Errors are
    ``InputError`` naming file, line and field."""
    path = str(path)
    doc = load_yaml(path)
    top = Where(path, getattr(doc, "line", 1))
    get_mapping(top, doc, required=("name", "sites"))
    name = get_str(at_key(top, doc, "name"), doc["name"])
    w_sites = at_key(top, doc, "sites")
    raw = get_list(w_sites, doc["sites"], nonempty=True, what="sites")
    if len(raw) < 2:
        raise w_sites.error(f"found {len(raw)} site", "at least 2 sites (a federation)")
    base = Path(path).resolve().parent
    sites, seen = [], set()
    for i, r in enumerate(raw):
        w = at_item(w_sites, raw, i)
        get_mapping(w, r, required=_SITE_KEYS, optional=_SITE_OPTIONAL)
        sname = get_str(at_key(w, r, "name"), r["name"])
        if site_name_problem(sname) is not None:   # it names files under --out (a probe:
            raise at_key(w, r, "name").error(     # '../../escape' wrote outside it)
                site_name_problem(sname), SITE_NAME_TEXT)
        if sname == "federation":    # a probe: its rows and curves mixed with the federation's
            raise at_key(w, r, "name").error("'federation' names the federation's own rows "
                                             "in metrics.jsonl", "another name")
        if sname in seen:
            raise at_key(w, r, "name").error(f"site {sname!r} named twice", "distinct names")
        seen.add(sname)
        kw = {"cluster": _path_spec(base, get_str(at_key(w, r, "cluster"), r["cluster"])),
              "workload": _workload_spec(base, get_str(at_key(w, r, "workload"), r["workload"]))}
        if kw["cluster"] != "default" and not Path(kw["cluster"]).is_file():
            raise at_key(w, r, "cluster").error(f"no such file {kw['cluster']!r}",
                                                "'default' or a cluster file (relative to "
                                                "the setup file)")
        if kw["workload"].split(":")[0] == "synthetic":
            try:
                given = parse_synthetic(kw["workload"])
            except InputError as e:
                raise at_key(w, r, "workload").error(e.problem, e.expected) from None
            for key, why in (("jobs", "training sets each episode's length (--train-jobs)"),
                             ("seed", "training draws each episode from --seed")):
                if key in given:
                    raise at_key(w, r, "workload").error(    # a probe: taken and ignored
                        f"{key}= would be ignored: {why}", f"no {key}=")
        elif not Path(kw["workload"]).is_file():
            raise at_key(w, r, "workload").error(f"no such file {kw['workload']!r}",
                                                 "synthetic[:k=v,...] or a workload file")
        for key in ("sites", "split"):   # a probe: taken and ignored on a YAML cluster
            if key in r and not splits_into_sites(kw["cluster"]):
                raise at_key(w, r, key).error(
                    f"{key} applies to an Alibaba node-list .csv cluster only; this one is "
                    f"{kw['cluster']!r}", f"no {key} (the cluster file names its sites)")
        if "sites" in r:
            kw["sites"] = get_int(at_key(w, r, "sites"), r["sites"], ge=1, le=10_000)
        if "split" in r:
            kw["split"] = get_str(at_key(w, r, "split"), r["split"])
            if kw["split"] not in SPLITS:
                raise at_key(w, r, "split").error(f"found {kw['split']!r}",
                                                  f"one of {', '.join(SPLITS)}")
        for key, lo in (("arrival_window", 0.0), ("load", 0.0)):
            if key in r and r[key] is not None:
                kw[key] = get_number(at_key(w, r, key), r[key], gt=lo,
                                     le=10.0 if key == "load" else None)
        if "inflate" in r:
            kw["inflate"] = get_number(at_key(w, r, "inflate"), r["inflate"], ge=1.0, le=MAX_INFLATE)
        note = get_str(at_key(w, r, "note"), r["note"]) if "note" in r else ""
        sites.append(FederationSite(sname, Scenario(**kw), note))
    return Setup(name, tuple(sites), source=path)


def _path_spec(base: Path, spec: str) -> str:
    if spec == "default" or Path(spec).is_absolute():
        return spec
    return str(base / spec)


def _workload_spec(base: Path, spec: str) -> str:
    return spec if spec.split(":")[0] == "synthetic" else _path_spec(base, spec)


# -- Alibaba by node type ---------------------------------------------------------------------


def _fits(pod: dict, node: dict) -> bool:
    if int(pod["cpu_milli"]) > int(node["cpu_milli"]) or \
            int(pod["memory_mib"]) > int(node["memory_mib"]):
        return False
    n_gpu, milli = int(pod["num_gpu"]), int(pod["gpu_milli"])
    if n_gpu == 0:
        return True
    need = 1 if (n_gpu == 1 and milli < 1000) else n_gpu
    spec = [m for m in pod["gpu_spec"].split("|") if m]
    return int(node["gpu"]) >= need and (not spec or node["model"] in spec)


def _read_csv(path: Path, header: tuple[str, ...]) -> list[dict]:
    """Rows of a trace CSV, checked by Agora's own reader first (the error names file and
    line)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    got = tuple(rows[0].keys()) if rows else ()
    if got != header:
        raise InputError(path=str(path), line=1, field=None,
                         problem=f"header {','.join(got) or '(none)'}",
                         expected=f"the header {','.join(header)}")
    return rows


def alibaba_by_type(traces: str | Path, *, cache: str | Path, agent_sites: int = 4,
                    max_nodes: int = 8, load: float = 10.0) -> Setup:
    """The ``alibaba-by-type`` setup (module docstring) from ``traces`` (the folder holding
    ``alibaba-openb-2023/``); per-organisation CSVs are written under ``cache``.

    Args:
        agent_sites: agent sites per organisation (its group's nodes split stratified).
        max_nodes: most nodes an organisation keeps (evenly spaced in file order);
            >= agent_sites. 8: two per agent site.
        load: offered load on the dominant resource each organisation's whole pod list is
            scaled to, in (0, 10]. The nominal load of the whole list is dominated by a few
            pods that run for months, so a training window of ~100 pods sees far less: at
            0.9 no pod ever waits and every policy ties (measured: SJF, FIFO, Tetris and
            random within 0.01% mean JCT on every group); at 10 (the default) the t4 and
            mixed-gpu groups queue (SJF vs random: -16% / -0.1% mean JCT, score 0.51 vs
            0.33 / 0.47 vs 0.39), cpu a little, g2 still not.
    """
    from agora.agents.workloads.alibaba import read_alibaba_nodes, read_alibaba_pods
    from agora.agents.workloads.loader import load_cluster

    traces, cache = Path(traces), Path(cache)
    nodes_csv, pods_csv = traces / ALIBABA_NODES, traces / ALIBABA_PODS
    for p in (nodes_csv, pods_csv):
        if not p.is_file():
            raise InputError(path=str(p), line=None, field=None, problem="no such file",
                             expected="the Alibaba openb trace (--traces: the folder holding "
                                      "alibaba-openb-2023/)")
    if max_nodes < agent_sites:
        raise ValueError(f"max_nodes: {max_nodes}; expected >= agent_sites ({agent_sites})")
    # Agora's readers check every field first (errors name file, line and column).
    cl = read_alibaba_nodes(nodes_csv, 1)
    read_alibaba_pods(pods_csv, cl)
    nodes = _read_csv(nodes_csv, NODE_HEADER)
    pods = _read_csv(pods_csv, POD_HEADER)
    groups: dict[str, list[dict]] = {}
    for g in ALIBABA_GROUPS:
        members = [n for n in nodes if _group(n) == g]
        if len(members) < agent_sites:
            raise InputError(path=str(nodes_csv), line=None, field=None,
                             problem=f"node group {g!r} has {len(members)} nodes",
                             expected=f"at least {agent_sites} (one per agent site)")
        if len(members) > max_nodes:
            step = (len(members) - 1) / (max_nodes - 1) if max_nodes > 1 else 0
            members = [members[round(i * step)] for i in range(max_nodes)]
        groups[g] = members
    gpu_groups = [g for g in groups if g != "cpu"]
    assigned: dict[str, list[dict]] = {g: [] for g in groups}
    for p in pods:
        if int(p["num_gpu"]) == 0 and any(_fits(p, n) for n in groups["cpu"]):
            assigned["cpu"].append(p)
            continue
        fit = [g for g in gpu_groups if any(_fits(p, n) for n in groups[g])]
        if fit:
            assigned[fit[zlib.crc32(p["name"].encode()) % len(fit)]].append(p)
    sites = []
    for g in groups:
        d = cache / g
        d.mkdir(parents=True, exist_ok=True)
        for fname, header, rows in (("nodes.csv", NODE_HEADER, groups[g]),
                                    ("pods.csv", POD_HEADER, assigned[g])):
            tmp = d / (fname + ".tmp")
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(header), lineterminator="\n")
                w.writeheader()
                w.writerows(rows)
            tmp.replace(d / fname)
        if not assigned[g]:
            raise InputError(path=str(pods_csv), line=None, field=None,
                             problem=f"no pod fits group {g!r}",
                             expected="pods for every node group")
        sc = Scenario(cluster=str(d / "nodes.csv"), workload=str(d / "pods.csv"),
                      sites=agent_sites, split="stratified", load=load)
        load_cluster(sc.cluster, sites=agent_sites, split="stratified")   # fails early
        sites.append(FederationSite(g, sc, f"{len(groups[g])} nodes, {len(assigned[g])} pods"))
    src = (f"{nodes_csv} (sha256 {file_digest(nodes_csv)}), {pods_csv} (sha256 "
           f"{file_digest(pods_csv)}); max_nodes={max_nodes}, agent_sites={agent_sites}, "
           f"load={load}")
    return Setup("alibaba-by-type", tuple(sites), source=src)


def load_setup(spec: str, *, traces: str | Path | None = None,
               cache: str | Path = "out/federation/setups", **alibaba) -> Setup:
    """A named setup (``SETUPS``) or a setup YAML file. ``traces``: the folder holding
    ``alibaba-openb-2023/`` (default ``../shared/workloads``); ``alibaba``: keyword
    arguments of ``alibaba_by_type``."""
    if spec == "alibaba-by-type":
        return alibaba_by_type(traces or DEFAULT_TRACES, cache=Path(cache) / spec, **alibaba)
    if alibaba:
        raise ValueError(f"{', '.join(sorted(alibaba))}: only for the alibaba-by-type setup")
    if spec == "synthetic-noniid":
        return read_setup(CONFIG_DIR / "synthetic-noniid.yaml")
    if Path(spec).suffix.lower() in (".yaml", ".yml"):
        return read_setup(spec)
    raise ValueError(f"setup: {spec!r}; expected one of {', '.join(SETUPS)} or a setup "
                     f".yaml file")
