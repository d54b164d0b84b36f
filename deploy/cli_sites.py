"""``agora site``: a site's own key, and the operator's ordered membership commands.

    agora site key --out /var/lib/agora/site-east.key   # on the site's node: make (or read)
                                                         # its key (0600), print the public key
    agora site admit east --key <public key hex>        # the operator: an ordered AdmitSite
    agora site remove east [--reason TEXT]              # the operator: an ordered RemoveSite
    agora site list                                     # each site: key, state, nodes down

``agora up`` does the first two itself for the agents it deploys (each agent makes its key
on its node; the operator's process admits its public key). A site run by its own operator
makes its key with ``agora site key`` on its node and sends the printed public key to the
group's operator, who admits it; the secret never leaves the node.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agora.deploy.service_client import (DEFAULT_UP_CONFIG, OPERATOR, checked_reason, run_live,
                                         target)


def register(sub) -> None:
    s = sub.add_parser("site", help="a site's own key; admit or remove a site (operator)")
    ssub = s.add_subparsers(dest="site_command", required=True)
    k = ssub.add_parser("key", help="make this site's key here (or read it) and print its "
                        "public key")
    k.add_argument("--out", required=True, help="the key file on this node (made 0600)")
    k.add_argument("--json", action="store_true", help="print machine-readable JSON")
    k.set_defaults(fn=cmd_site_key)
    for name, fn, text in (("admit", cmd_site_admit, "admit a site by its public key"),
                           ("remove", cmd_site_remove, "remove a site: revoke its key, lose "
                            "its running work"),
                           ("list", cmd_site_list, "each site's admitted key and state")):
        p = ssub.add_parser(name, help=text)
        if name != "list":
            p.add_argument("site")
        if name == "admit":
            p.add_argument("--key", required=True, help="the site's public key (64 hex "
                           "digits, printed by agora site key)")
        if name == "remove":
            p.add_argument("--reason", default="", help="kept with the lost instances")
        p.add_argument("--config", default=DEFAULT_UP_CONFIG,
                       help="an agora up config (default: %(default)s) or a coordinator YAML")
        p.add_argument("--client", default=OPERATOR, help="client id to sign as")
        p.add_argument("--keys", default=None, help="key file (default: the coordinator's)")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        p.set_defaults(fn=fn)


def cmd_site_key(a: argparse.Namespace) -> int:
    from agora.coordinator.site_key import load_or_create

    key = bytes(load_or_create(a.out).verify_key).hex()
    if a.json:
        print(json.dumps({"key_file": str(a.out), "public_key": key}))
    else:
        print(f"{key}\n(the public key of {a.out}; give it to the operator: agora site "
              f"admit SITE --key {key})")
    return 0


def _public_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"--key: {text[:80]!r} is not hex; expected the 64 hex digits agora "
                         f"site key printed") from None
    if len(key) != 32:
        raise ValueError(f"--key: {len(key)} bytes; expected 32 (64 hex digits)")
    return key


def cmd_site_admit(a: argparse.Namespace) -> int:
    key = _public_key(a.key)
    return _ordered(a, lambda c: c.admit_site(a.site, key), "admitted",
                    f"its requests must be signed by key {key.hex()[:16]}...")


def cmd_site_remove(a: argparse.Namespace) -> int:
    reason = checked_reason(a.reason)
    return _ordered(a, lambda c: c.remove_site(a.site, reason), "removed",
                    "its key is revoked and its running instances were lost and reopened")


def _ordered(a: argparse.Namespace, call, done: str, then: str) -> int:
    from agora.coordinator.client import CoordinatorError

    async def go(client):
        try:
            return await call(client)
        except CoordinatorError as e:
            if e.result is None:
                raise
            return e.result      # the schedule refused it: the input's problem, not a fault

    res = run_live(target(a.config), go, a.client, a.keys)
    if res.rejections:           # exit 2 naming the field, as agora cancel (a probe: exit 1)
        r = res.rejections[0]
        raise ValueError(f"{r.field}: {r.reason}")
    if a.json:
        print(json.dumps({done: a.site, "version": res.version}))
    else:
        print(f"{done} site {a.site} at version {res.version}: {then}")
    return 0


def site_rows(view, silent: set[str] | None = None) -> list[dict]:
    """Each site of a ``LedgerView``: its key, lapsed, removed, its nodes reported down (an
    operator could see a dead node only in agora up's log: a probe) and, ``silent`` given
    (``queries.silent_sites``), whether f+1 replicas have heard no heartbeat from it for
    ``site_timeout_s`` (None: not known)."""
    return [{"site": s.site, "key": s.key.hex() or None, "lapsed": s.lapsed,
             "removed": s.removed,
             "silent": None if silent is None else s.site in silent,
             "nodes_down": sorted(n for n in view.nodes_down if n.startswith(s.site + "/"))}
            for s in view.sites]


def _key_file_sites(t, keys: str | None) -> set[str] | None:
    """The sites whose key the group's key file holds (None: not known). A site with no
    admitted key signs with the key file's, if it has one (a probe: every site of the cluster
    was listed with "the key file's" key)."""
    from agora.coordinator.schedule_rules import site_of_client
    from agora.coordinator.server import load_keys

    c = t.coordinator         # its keys_file is relative to the config's folder (a review)
    path = keys or (c.path(c.keys_file) if c is not None else None)
    try:
        held = load_keys(Path(path)).client_verify if path else None
    except (OSError, ValueError):
        return None
    return None if held is None else {site_of_client(c) for c in held} - {None}


def cmd_site_list(a: argparse.Namespace) -> int:
    from agora.coordinator.queries import silent_sites

    async def read(c):
        view = await c.ledger()
        try:
            return view, silent_sites(await c.status(), c.f)
        except Exception:  # noqa: BLE001 - the statuses are extra: the list without them
            return view, None

    t = target(a.config)
    view, silent = run_live(t, read, a.client, a.keys)
    rows = site_rows(view, silent)
    in_file = _key_file_sites(t, a.keys)
    if a.json:
        print(json.dumps({"version": view.version, "sites": rows}))
        return 0
    for r in rows:
        # a site that owes nothing is not voted lapsed: "live" hid an agent gone for good
        state = ("removed" if r["removed"] else "lapsed" if r["lapsed"] else
                 "silent" if r["silent"] else "live")
        key = (r["key"][:16] + "..." if r["key"] else "(the key file's)"
               if in_file is None or r["site"] in in_file else "(none: not admitted)")
        down = f"  nodes down: {', '.join(r['nodes_down'])}" if r["nodes_down"] else ""
        print(f"{r['site']:<16} {state:<8} {key}{down}")
    return 0
