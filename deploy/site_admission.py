"""Each site's identity under ``agora up``: where its agent keeps its own key on its node
(``site_key_dir``), and the operator admitting the public key the agent made and certifying
its TLS key (``admit_sites``) -- at start and when a restarted agent comes back with new
keys. Used by ``launch`` (bring-up and its supervisor) and ``service_client``."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("agora.launch")


def site_key_dir(cfg, out: Path) -> Path:
    """The folder, on each site's node, where its agent keeps its own key
    (``UpConfig.site_key_dir``; default ``<out>/site-keys``)."""
    return Path(cfg.site_key_dir) if cfg.site_key_dir is not None else out / "site-keys"


def admit_sites(system, timeout_s: float = 30.0, *, initial: bool = False) -> int:
    """The operator admits every agent's own public key that the schedule does not hold yet
    (an ordered ``admit_site``) and, with mutual TLS, certifies the TLS key the agent made
    on its node (the CA signs its certificate request for ``site-<s>``, valid for the
    address of the Ray node the agent runs on): at start (``initial``; later, for an agent
    this process started late, ``system.fresh``), and again when a restarted agent came back
    on another node with new keys. Only a key this process
    admitted is replaced so (a site the operator removed, or admitted by hand with another
    key, stays as the operator left it: ``agora site admit`` decides then), and an agent
    is taken for the site it was started for, never for the one it names. Agents that do
    not answer within ``timeout_s`` are asked again next time (``system``: the
    ``launch.System`` that started them). Returns how many keys were admitted."""
    import ray

    from agora.deploy.certs import DEFAULT_HOSTS, sign_request

    refs = {a.identity_request.remote(): (a, s) for a, s in zip(system.actors, system.sites)}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    admitted, ledger = 0, None
    for ref in ready:
        actor, site = refs[ref]
        try:
            req = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - a dead actor: its restart is asked next time
            log.warning("agent %s gave no identity (%s)", site, e)
            continue
        if req is None:
            continue
        if req["site"] != site:
            log.warning("agent %s claims to be site %s: not admitted", site, req["site"])
            continue
        key = req["key"]
        first = initial or site in system.fresh    # an agent this process just started
        if system.admitted.get(site) != key:
            if ledger is None:
                ledger = {s.site: s for s in system.loop.run(
                    system.operator.ledger(), timeout=timeout_s).sites}
            now = ledger.get(site)
            if now is not None and now.key != key and (now.removed or not (
                    first or not now.key or now.key == system.admitted.get(site))):
                log.warning("site %s: its agent has a new key, but the operator %s it; "
                            "admit it with agora site admit", site,
                            "removed" if now.removed else "admitted another key for")
                continue
            if now is None or now.key != key:
                system.loop.run(system.operator.admit_site(site, key), timeout=timeout_s)
                admitted += 1
                log.info("admitted site %s by the key its agent made (%s...)", site,
                         key.hex()[:16])
            system.admitted[site] = key
        system.fresh.discard(site)
        if req["csr"] is not None:
            host = system.agent_host or next(
                (n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == req["node_id"]),
                None)
            cert = sign_request(Path(system.group.tls_dir), f"site-{site}", req["csr"],
                                tuple(dict.fromkeys((*DEFAULT_HOSTS, *([host] if host else [])))))
            ray.get(actor.install_certificate.remote(cert), timeout=timeout_s)
    return admitted
