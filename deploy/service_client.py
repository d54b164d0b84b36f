"""How the user commands (``agora submit``, ``jobs``, ``logs``, ``cancel``, ``schedule``,
``status``) reach Agora: ``--config`` names either an ``agora up`` configuration (the
coordinator's config and keys are then under its ``out/coordinator``) or a coordinator
YAML. When nothing serves, a command that writes says so in one line (``NotRunning``), and a
command that reads answers from the replicas' logs on disk instead (labelled offline)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from agora.agents.limits import SITE_NAME

DEFAULT_UP_CONFIG = str(Path(__file__).parent / "configs" / "up.yaml")
OPERATOR = "operator"


class NotRunning(Exception):
    """Nothing answers: the message says where it looked and how to start it."""


@dataclass
class Target:
    config_arg: str
    coordinator: object
    """its ``CoordinatorConfig`` (None: no coordinator was ever set up there)"""
    out: Path | None
    """the ``agora up`` output folder (None: a bare coordinator YAML)"""
    up: object | None = None
    """the ``UpConfig`` (None for a coordinator YAML)"""

    @property
    def addresses(self) -> str:
        return ", ".join(self.coordinator.replicas) if self.coordinator else "-"

    def load_cluster(self):
        """The cluster its jobs are read against (the coordinator's, else the ``agora up``
        config's), also when nothing runs; ``NotRunning`` when there is neither."""
        if self.coordinator is not None:
            return self.coordinator.load_cluster()
        if self.up is not None:
            return self.up.load_cluster()
        raise self.not_running()

    def not_running(self) -> NotRunning:
        where = f"at {self.addresses}" if self.coordinator else f"from {self.out}"
        return NotRunning(f"nothing is running {where}; {self._start_it()}")

    def _start_it(self) -> str:
        """How to start what ``--config`` names: ``agora up`` for its config, the replicas
        one by one for a bare coordinator YAML (a probe: told to ``agora up --config`` a
        coordinator YAML, which agora up refuses)."""
        if self.out is None:
            return (f"start its replicas with agora coordinator --config {self.config_arg} "
                    f"--replica I (I = 0..{len(self.coordinator.replicas) - 1})")
        return f"start it with agora up --config {self.config_arg}"

    def unanswered(self, e) -> NotRunning:
        """No f+1 replicas answered (``CoordinatorError`` ``e``): started anew when nothing
        runs, else -- an ``agora up`` whose process lives, overloaded or restarting its
        replicas -- the first replica's error and where its log is, never 'start it'."""
        if self.out is not None and self.stopping():
            return NotRunning(f"Agora from {self.out} is stopping (agora down, or a signal "
                              f"to agora up): retry once it stopped; reads then come from "
                              f"the replicas' logs")
        if self.out is not None and self.serving():
            first = next(iter(e.errors.values()), e.message)
            return NotRunning(f"Agora runs from {self.out} but too few replicas answered at "
                              f"{self.addresses} ({first}); it may be overloaded or "
                              f"restarting replicas: retry, or see {self.out}/agora.log")
        return NotRunning(f"nothing answers at {self.addresses} ({e.code.name}); "
                          f"{self._start_it()}")

    def serving(self) -> bool:
        """Is an ``agora up`` serving it -- for a bare coordinator YAML, does some replica's
        address take a connection (a probe: it was always assumed, so reads of a stopped
        group never came from its logs on disk, as the docs say they do)?"""
        if self.out is None:
            return any(_listens(a) for a in self.coordinator.replicas)
        from agora.deploy.service_files import running_service

        return running_service(self.out) is not None

    def restarting(self) -> int | None:
        """The pid of an ``agora up`` (its keeper) starting its service, or starting it again
        after it died, while nothing serves yet; None otherwise (a probe: while the keeper
        restarted a killed service, commands said "no agora up runs" and ``submit --follow``
        gave up on jobs the restarted service then finished)."""
        return None if self.out is None or self.serving() else self._keeper()

    def running(self) -> bool:
        """Serving, or about to serve again (``restarting``): what a follower waits on."""
        return self.serving() or (self.out is not None and self._keeper() is not None)

    def _keeper(self) -> int | None:
        """The keeper's pid while it would start the service again: not once it was asked
        to stop (``stopping``)."""
        from agora.deploy.service_files import starting_pid

        return None if self.stopping() else starting_pid(self.out)

    def stopping(self) -> bool:
        """Is the ``agora up`` of ``out`` stopping (agora down, a signal)?"""
        from agora.deploy.service_files import stopping

        return self.out is not None and stopping(self.out)

    def client(self, client_id: str = OPERATOR, keys_file: str | None = None):
        """A client signing as ``client_id`` with its key from ``keys_file``: a key file
        (``agora keys``), or a site's own key (``agora site key``; the group's public keys
        then come from the coordinator's key file). Without ``keys_file``: the coordinator's
        key file, and for a site client it holds no secret of, the key its agent made under
        this ``agora up``'s ``site_key_dir`` when this machine has it."""
        from agora.agents.limits import site_name_problem
        from agora.coordinator.client import CoordinatorClient
        from agora.coordinator.server import load_keys
        from agora.coordinator.site_key import is_site_key, load_or_create

        if self.coordinator is None:
            raise self.not_running()
        c = self.coordinator
        own = Path(keys_file) if keys_file and is_site_key(Path(keys_file)) else None
        keys = load_keys(Path(keys_file) if keys_file and own is None
                         else c.path(c.keys_file))
        if own is None and not keys_file and client_id.startswith("site:") \
                and site_name_problem(client_id[5:]) is None \
                and client_id not in keys.client_signing and self.up is not None:
            from agora.deploy.site_admission import site_key_dir

            mine = site_key_dir(self.up, self.out) / f"site-{client_id[5:]}.key"
            own = mine if mine.is_file() else None
        if own is not None:
            keys = keys.public().with_own_key(client_id, bytes(load_or_create(own)))
        return CoordinatorClient(c, keys, client_id, timeout_s=15.0)


def _listens(address: str, timeout_s: float = 0.5) -> bool:
    """Does ``host:port`` take a TCP connection now?"""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def target(config_arg: str) -> Target:
    """Read ``--config`` (an up config or a coordinator YAML; errors are ``InputError``)."""
    from agora.agents.workloads.yamlmarks import load_yaml
    from agora.coordinator.config import load_config

    p = Path(config_arg)
    if not p.is_file():
        raise FileNotFoundError(f"--config: {config_arg} is not a file; expected an agora up "
                                f"config (e.g. {DEFAULT_UP_CONFIG}) or a coordinator YAML")
    data = load_yaml(str(p))           # one guarded reader: size, nesting, aliases, UTF-8
    if isinstance(data, dict) and isinstance(data.get("replicas"), list):
        return Target(config_arg, load_config(p), None)
    from agora.deploy.up_config import load_up_config

    up = load_up_config(p)
    out = Path(up.out)
    cpath = out / "coordinator" / "coordinator.yaml"
    coordinator = load_config(cpath) if cpath.is_file() else None
    return Target(config_arg, coordinator, out, up)


CLIENT_ID = re.compile(rf"operator|site:{SITE_NAME.pattern}(/[0-9]{{1,6}})?"
                       rf"|auditor:{SITE_NAME.pattern}")
"""client ids ``agora keys`` writes keys for (``operator``, ``site:east``, ``site:east/2``,
``auditor:alice``): the only kinds the coordinator gives a role (a key for any other id
could sign nothing the replicas accept; the replicas' own ids come with the group)"""


READER_ID = re.compile(rf"(?:{CLIENT_ID.pattern})|replica:[0-9]{{1,3}}")
"""client ids a command may sign as: ``CLIENT_ID``'s, and a replica's own (``replica:<i>``,
whose key every key file holds: it may read)"""
CLIENT_KINDS = "operator, site:<site name>, site:<site name>/<k>, auditor:<name> or replica:<i>"


def check_client(client_id, keys_file) -> None:
    """Refuse a client id no key file can hold a key for, or a key file that is not there,
    with the Python API's argument errors (``client``, ``keys``; ``agora`` names the flags):
    a probe found both told only after "nothing is running"."""
    from agora.deploy import api_args as A

    A.text("client", client_id, CLIENT_KINDS)
    if len(client_id) > 256 or not READER_ID.fullmatch(client_id):
        raise A.ArgValueError("client", f"client: {client_id[:80]!r} is no client id; "
                                        f"expected {CLIENT_KINDS}")
    if keys_file is None:
        return
    A.path("keys", keys_file, "a key file (agora keys) or a site's own key (agora site key)")
    if not Path(keys_file).is_file():
        raise A.ArgFileError("keys", f"keys: {keys_file} is not a file; expected a key file "
                                     f"(agora keys) or a site's own key (agora site key)")
    # read now, whatever runs: a damaged or leaked key file is told also when the reads come
    # from the logs on disk (they need no key)
    from agora.coordinator.server import load_keys
    from agora.coordinator.site_key import is_site_key, load_or_create

    (load_or_create if is_site_key(Path(keys_file)) else load_keys)(Path(keys_file))


def run_live(t: Target, coro_fn, client_id: str = OPERATOR, keys_file: str | None = None):
    """``coro_fn(client)`` against the running coordinator; ``NotRunning`` when nothing
    serves or no replica answers. ``client_id`` and ``keys_file`` were checked by the caller
    (``check_client``: agora's ``main``, the Python API), before it looked for a service."""
    from agora.coordinator.client import CoordinatorError

    if not t.serving():
        raise t.not_running()
    client = t.client(client_id, keys_file)

    async def main():
        async with client:
            return await coro_fn(client)

    try:
        return asyncio.run(main())
    except CoordinatorError as e:
        import grpc

        if e.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise t.unanswered(e) from None
        raise


def checked_reason(text: str) -> str:
    """``--reason`` of ``agora cancel`` and ``agora site remove``, checked here as the
    replicas check it (a probe: 5,000 characters went to the coordinator, whose refusal
    named a protocol field, ``envelope.payload.request.op.cancel_job.reason``)."""
    from agora.coordinator.validate import reason_problem

    why = reason_problem(text)
    if why is not None:
        raise ValueError(f"--reason: {why[0]}; expected {why[1]}")
    return text
