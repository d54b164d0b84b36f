"""Agora's native cluster format, in YAML (``agents/workloads/native.py`` reads jobs).

Cluster YAML (:func:`read_cluster`, :func:`write_cluster`); units as written in the file:

- ``sites``: non-empty list of ``{name, power?, nodes}``; ``power`` takes ``node_idle_w``,
  ``node_peak_w``, ``gpu_idle_w``, ``gpu_peak_w`` (watts, idle <= peak) and ``pue`` (>= 1);
- ``nodes``: non-empty list of ``{name, cpu, mem, gpus?, gpu_model?, count?}``: ``cpu`` in
  **cores** (float > 0, stored as millicores ``round(cpu*1000)``), ``mem`` in **MiB** (int),
  ``gpus`` whole devices, ``gpu_model`` required iff gpus > 0, ``count`` identical nodes
  named ``<site>/<name>-<i>`` (``<site>/<name>`` when count is 1);
- ``links``: ``{default: {latency_ms, bandwidth_mbps}, pairs: [{a, b, latency_ms,
  bandwidth_mbps}]}`` (milliseconds, megabits per second);
- ``faults``: ``{seed, task_failure_prob, overrun_prob, overrun_factor, max_attempts,
  outages: [{node | site, at, until?}]}`` (times in seconds, ``until`` absent = permanent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agora.agents.domain import (MILLI, Cluster, Faults, Link, Node, NodeOutage, PowerModel,
                                 Site)
from agora.agents.limits import (MAX_ATTEMPTS, MAX_BANDWIDTH_MBPS, MAX_CORES, MAX_GPUS,
                                 MAX_LATENCY_MS, MAX_MEM_MIB, MAX_NODES, MAX_OVERRUN_FACTOR,
                                 MAX_PUE, MAX_SITE_NAME, MAX_TIME, MAX_WATTS,
                                 MIN_BANDWIDTH_MBPS)
from agora.agents.workloads.native_fields import site_name, units
from agora.agents.workloads.yamlmarks import (Where, at_item, at_key, describe, get_int, get_list,
                                              get_mapping, get_number, get_str, load_yaml)

MAX_COUNT = 100_000
"""largest ``count`` of one node entry (guards against a typo building millions of nodes)"""

# ----------------------------------------------------------------------------- cluster


def read_cluster(path: str | Path) -> Cluster:
    """Read a native cluster YAML file; ``Cluster.source`` is ``path``."""
    path = str(path)
    doc = load_yaml(path)
    top = Where(path, getattr(doc, "line", 1))
    get_mapping(top, doc, required=("sites",), optional=("links", "faults"))
    w_sites = at_key(top, doc, "sites")
    raw_sites = get_list(w_sites, doc["sites"], nonempty=True, what="sites")
    sites: list[Site] = []
    site_lines: dict[str, int | None] = {}
    node_names: dict[str, int | None] = {}
    for i, raw in enumerate(raw_sites):
        site = _site(at_item(w_sites, raw_sites, i), raw, node_names)
        if site.name in site_lines:
            raise at_item(w_sites, raw_sites, i).key("name").error(
                f"site {site.name!r} already defined (line {site_lines[site.name]})",
                "unique site names")
        site_lines[site.name] = at_item(w_sites, raw_sites, i).line
        sites.append(site)
    names = set(site_lines)
    links, default = {}, Link()
    if "links" in doc:
        links, default = _links(at_key(top, doc, "links"), doc["links"], names)
    faults = Faults()
    if "faults" in doc:
        faults = _faults(at_key(top, doc, "faults"), doc["faults"], names, set(node_names))
    return Cluster(sites=tuple(sites), links=links, default_link=default, faults=faults,
                   source=path)


_POWER = ("node_idle_w", "node_peak_w", "gpu_idle_w", "gpu_peak_w", "pue")


def _site(w: Where, raw: Any, node_names: dict[str, int | None]) -> Site:
    get_mapping(w, raw, required=("name", "nodes"), optional=("power",))
    name = site_name(at_key(w, raw, "name"), raw["name"])
    power = PowerModel()
    if "power" in raw:
        wp = at_key(w, raw, "power")
        p = get_mapping(wp, raw["power"], optional=_POWER)
        vals = {k: get_number(at_key(wp, p, k), p[k], ge=1.0 if k == "pue" else 0.0,
                              le=MAX_PUE if k == "pue" else MAX_WATTS,
                              unit="PUE" if k == "pue" else "watts") for k in p}
        power = PowerModel(**vals)
        for kind in ("node", "gpu"):
            idle, peak = getattr(power, f"{kind}_idle_w"), getattr(power, f"{kind}_peak_w")
            if idle > peak:
                raise at_key(wp, p, f"{kind}_idle_w" if f"{kind}_idle_w" in p
                             else f"{kind}_peak_w").error(
                    f"{kind}_idle_w {idle:g} is above {kind}_peak_w {peak:g}",
                    "idle power <= peak power")
    w_nodes = at_key(w, raw, "nodes")
    raw_nodes = get_list(w_nodes, raw["nodes"], nonempty=True, what="node entries")
    nodes: list[Node] = []
    for i, rn in enumerate(raw_nodes):
        wn = at_item(w_nodes, raw_nodes, i)
        get_mapping(wn, rn, required=("name", "cpu", "mem"),
                    optional=("gpus", "gpu_model", "count"))
        base = site_name(at_key(wn, rn, "name"), rn["name"])
        cpu = get_number(at_key(wn, rn, "cpu"), rn["cpu"], gt=0, le=MAX_CORES, unit="cores")
        mem = get_int(at_key(wn, rn, "mem"), rn["mem"], ge=1, le=MAX_MEM_MIB, unit="MiB")
        gpus = get_int(at_key(wn, rn, "gpus"), rn.get("gpus", 0), ge=0, le=MAX_GPUS,
                       unit="gpus")
        model = rn.get("gpu_model")
        if gpus > 0:
            model = get_str(at_key(wn, rn, "gpu_model"), model,
                            "a gpu model name (required when gpus > 0)")
            if not model.isprintable() or len(model) > 64:
                raise at_key(wn, rn, "gpu_model").error(
                    f"found {describe(model)}", "a gpu model name of 1-64 printable characters")
        elif model is not None:
            raise at_key(wn, rn, "gpu_model").error(
                f"found {describe(model)} on a node with no gpus",
                "gpu_model only when gpus > 0")
        count = get_int(at_key(wn, rn, "count"), rn.get("count", 1), ge=1, le=MAX_COUNT)
        if len(node_names) + count > MAX_NODES:
            raise at_key(wn, rn, "count").error(
                f"{count:,} more nodes make {len(node_names) + count:,} in the cluster",
                f"at most {MAX_NODES:,} nodes in all sites together")
        millicores = round(cpu * MILLI)
        if millicores < 1:
            raise at_key(wn, rn, "cpu").error(f"found {cpu:g}, under one millicore",
                                              "at least 0.001 cores")
        if count > 1 and len(last := f"{base}-{count - 1}") > MAX_SITE_NAME:
            raise at_key(wn, rn, "name").error(
                f"{describe(base)} with count {count:,} names its last node {last!r} "
                f"({len(last)} characters)", f"a name that leaves room for '-<index>': "
                f"at most {MAX_SITE_NAME} characters with it")
        full = [f"{name}/{base}"] if count == 1 else [f"{name}/{base}-{k}" for k in range(count)]
        for n in full:
            if n in node_names:
                raise at_key(wn, rn, "name").error(
                    f"node name {n!r} already used (line {node_names[n]})", "unique node names")
            node_names[n] = wn.line
            nodes.append(Node(name=n, site=name, cpu=millicores, mem=mem, gpus=gpus,
                              gpu_model=model))
    return Site(name=name, nodes=tuple(nodes), power=power)


def _link(w: Where, raw: dict) -> Link:
    return Link(latency_ms=get_number(at_key(w, raw, "latency_ms"), raw["latency_ms"], ge=0,
                                      le=MAX_LATENCY_MS, unit="milliseconds"),
                bandwidth_mbps=get_number(at_key(w, raw, "bandwidth_mbps"),
                                          raw["bandwidth_mbps"], ge=MIN_BANDWIDTH_MBPS,
                                          le=MAX_BANDWIDTH_MBPS, unit="megabits/s"))


def _links(w: Where, raw: Any, sites: set[str]) -> tuple[dict[frozenset[str], Link], Link]:
    get_mapping(w, raw, optional=("default", "pairs"))
    default = Link()
    if "default" in raw:
        wd = at_key(w, raw, "default")
        default = _link(wd, get_mapping(wd, raw["default"],
                                        required=("latency_ms", "bandwidth_mbps")))
    links: dict[frozenset[str], Link] = {}
    if "pairs" in raw:
        wp = at_key(w, raw, "pairs")
        pairs = get_list(wp, raw["pairs"], what="links")
        for i, rp in enumerate(pairs):
            wi = at_item(wp, pairs, i)
            get_mapping(wi, rp, required=("a", "b", "latency_ms", "bandwidth_mbps"))
            ab = []
            for k in ("a", "b"):
                s = get_str(at_key(wi, rp, k), rp[k])
                if s not in sites:
                    raise at_key(wi, rp, k).error(f"unknown site {s!r}",
                                                  f"one of {', '.join(sorted(sites))}")
                ab.append(s)
            if ab[0] == ab[1]:
                raise at_key(wi, rp, "b").error(f"a and b are both {ab[0]!r}",
                                                "two distinct sites")
            key = frozenset(ab)
            if key in links:
                raise wi.error(f"link {ab[0]}-{ab[1]} listed twice", "each pair once")
            links[key] = _link(wi, rp)
    return links, default


_FAULTS = ("seed", "task_failure_prob", "overrun_prob", "overrun_factor", "max_attempts",
           "outages")
_FAULT_SCALARS: tuple[tuple[str, Any, dict[str, float]], ...] = (
    ("seed", get_int, {}), ("task_failure_prob", get_number, {"ge": 0, "lt": 1}),
    ("overrun_prob", get_number, {"ge": 0, "le": 1}),
    ("overrun_factor", get_number, {"ge": 1, "le": MAX_OVERRUN_FACTOR}),
    ("max_attempts", get_int, {"ge": 1, "le": MAX_ATTEMPTS}))


def _faults(w: Where, raw: Any, sites: set[str], nodes: set[str]) -> Faults:
    get_mapping(w, raw, optional=_FAULTS)
    vals: dict[str, Any] = {}
    for k, check, bounds in _FAULT_SCALARS:
        if k in raw:
            vals[k] = check(at_key(w, raw, k), raw[k], **bounds)
    outages: list[NodeOutage] = []
    if "outages" in raw:
        wo = at_key(w, raw, "outages")
        items = get_list(wo, raw["outages"], what="outages")
        for i, ro in enumerate(items):
            wi = at_item(wo, items, i)
            get_mapping(wi, ro, required=("at",), optional=("node", "site", "until"))
            if ("node" in ro) == ("site" in ro):
                raise wi.error("names " + ("both node and site" if "node" in ro else
                                           "neither node nor site"),
                               "exactly one of node: <node name> or site: <site name>")
            kind = "node" if "node" in ro else "site"
            name = get_str(at_key(wi, ro, kind), ro[kind])
            known = nodes if kind == "node" else sites
            if name not in known:
                raise at_key(wi, ro, kind).error(
                    f"unknown {kind} {name!r}",
                    f"a {kind} of this cluster" + ("" if kind == "node" else
                                                   f" ({', '.join(sorted(sites))})"))
            at = get_number(at_key(wi, ro, "at"), ro["at"], ge=0, le=MAX_TIME, unit="seconds")
            until = ro.get("until")
            if until is not None:
                until = get_number(at_key(wi, ro, "until"), until, gt=at, le=MAX_TIME,
                                   unit="seconds, after 'at'; absent when permanent")
            outages.append(NodeOutage(at=at, until=until, node=name if kind == "node" else None,
                                      site=name if kind == "site" else None))
    return Faults(**vals, outages=tuple(outages))


def write_cluster(cluster: Cluster, path: str | Path) -> None:
    """Write ``cluster`` as native YAML; ``read_cluster`` gives it back (``source`` aside).
    Runs of identical nodes named ``<site>/<base>-0..k-1`` are written with ``count: k``;
    every node name must start with ``<site>/``."""
    sites = []
    for s in cluster.sites:
        entries: list[dict[str, Any]] = []
        nodes = list(s.nodes)
        i = 0
        while i < len(nodes):
            n = nodes[i]
            prefix = f"{s.name}/"
            if not n.name.startswith(prefix):
                raise ValueError(f"node {n.name!r} is not named {prefix}<name>")
            base, k = n.name[len(prefix):], 1
            if base.endswith("-0") and len(base) > 2:
                stem = base[:-2]
                while (i + k < len(nodes) and nodes[i + k].name == f"{prefix}{stem}-{k}"
                       and _same_hw(nodes[i + k], n)):
                    k += 1
                if k > 1:
                    base = stem
            e: dict[str, Any] = {"name": base, "cpu": units(n.cpu), "mem": n.mem}
            if n.gpus:
                e.update(gpus=n.gpus, gpu_model=n.gpu_model)
            if k > 1:
                e["count"] = k
            entries.append(e)
            i += k
        p = s.power
        sites.append({"name": s.name, "power": {k: getattr(p, k) for k in _POWER},
                      "nodes": entries})
    d = cluster.default_link
    pairs = [{"a": a, "b": b, "latency_ms": l.latency_ms, "bandwidth_mbps": l.bandwidth_mbps}
             for (a, b), l in sorted((tuple(sorted(k)), v) for k, v in cluster.links.items())]
    f = cluster.faults
    faults: dict[str, Any] = {k: getattr(f, k) for k in _FAULTS[:-1]}
    faults["outages"] = [{**({"node": o.node} if o.node is not None else {"site": o.site}),
                          "at": o.at, **({"until": o.until} if o.until is not None else {})}
                         for o in f.outages]
    doc = {"sites": sites,
           "links": {"default": {"latency_ms": d.latency_ms, "bandwidth_mbps": d.bandwidth_mbps},
                     "pairs": pairs},
           "faults": faults}
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False, width=100), encoding="utf-8")


def _same_hw(a: Node, b: Node) -> bool:
    return (a.cpu, a.mem, a.gpus, a.gpu_model) == (b.cpu, b.mem, b.gpus, b.gpu_model)
