"""Whose rights a run has, and what it inherits.

A run of another site's job executes on this site's node; by default it runs as the runner's
own user, and so can read whatever that user reads -- the site's signing key among it (a
review: a job read its host site's key and signed requests as that site). ``run_as`` names
an unprivileged user the runner starts every run as instead (the runner must be root to
switch): the run gets that user's uid, gid and home and no supplementary groups, and writes
in a folder of its own (``work/`` of its run folder, which stays the runner's). Whatever the
user, a run does not inherit Ray's own variables from its worker (``RAY_*``, Ray's
``PYTHONBREAKPOINT``): they describe the worker, not the job, and would make a job that uses
Ray itself act as that worker."""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass

USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")
"""what ``run_as`` may be: a POSIX-ish login name (useradd's rules, 32 characters at most)"""


@dataclass(frozen=True)
class RunAccount:
    name: str
    uid: int
    gid: int
    home: str


def run_account(name: str | None, who: str = "the runner") -> RunAccount | None:
    """The account ``name`` on this machine (None: the runner's own, no switch); ValueError
    saying why a run cannot be started as ``name`` here by ``who`` (this process)."""
    if name is None:
        return None
    if not USER_NAME.fullmatch(name):
        raise ValueError(f"run_as {name!r} is not a user name; expected a login name such as "
                         f"'nobody' or 'agora-run'")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"cannot run as {name!r}: no such user on this node "
                         f"(create it, or change run_as)") from None
    if pw.pw_uid != os.geteuid() and os.geteuid() != 0:
        raise ValueError(f"cannot run as {name!r}: {who} runs as uid {os.geteuid()}, "
                         f"and only root may start a process as another user (run agora "
                         f"up as root, or leave run_as unset)")
    return RunAccount(name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def run_environment(base: dict[str, str], account: RunAccount | None) -> dict[str, str]:
    """A run's inherited environment: ``base`` (its worker's) without Ray's own variables
    (``RAY_*``, and Ray's internal ``__RAY_*``: a probe found Agora's worker set-up hook in
    each run's environment, which a job's own ``ray.init`` would run); with ``account``,
    that user's ``HOME``, ``USER`` and ``LOGNAME``."""
    env = {k: v for k, v in base.items() if not k.lstrip("_").startswith("RAY_")}
    if env.get("PYTHONBREAKPOINT", "").startswith("ray."):
        del env["PYTHONBREAKPOINT"]
    if account is not None:
        env.update(HOME=account.home, USER=account.name, LOGNAME=account.name)
    return env


def switches(account: RunAccount | None) -> bool:
    """Does a run as ``account`` start as another user than this process's?"""
    return account is not None and account.uid != os.geteuid()


def cannot_enter(path: str, account: RunAccount) -> str | None:
    """Why ``account`` may not enter folder ``path`` (search permission on it and on every
    folder above it, by the mode bits; ACLs are not read), or None."""
    import stat
    from pathlib import Path

    p = Path(os.path.abspath(path))
    for folder in (*reversed(p.parents), p):
        try:
            st = os.stat(folder)
        except OSError as e:
            return f"{folder}: {e.strerror or e}"
        if not stat.S_ISDIR(st.st_mode):
            return f"{folder} is not a folder"
        bit = (stat.S_IXUSR if st.st_uid == account.uid else
               stat.S_IXGRP if st.st_gid == account.gid else stat.S_IXOTH)
        if not st.st_mode & bit:
            return f"user {account.name} may not enter {folder}"
    return None


def cannot_start_as(program: str, env: dict[str, str], cwd: str,
                    account: RunAccount) -> OSError | None:
    """``process.cannot_start`` as ``account`` would find it (this process is root): a
    program in a folder the account may not enter is "Permission denied" whether it is
    there or not, and PATH's folders it may not enter are not searched -- the run's end, read
    by the job's origin site, told which files exist where the account may not look (a
    review: ``/root/.ssh/...`` 126 or 127)."""
    import errno

    from agora.agents.process import cannot_start

    if os.sep in program:
        if cannot_enter(os.path.dirname(os.path.join(cwd, program)), account) is not None:
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        return cannot_start(program, env, cwd)
    path = os.pathsep.join(p for p in env.get("PATH", os.defpath).split(os.pathsep)
                           if cannot_enter(os.path.join(cwd, p), account) is None)
    return cannot_start(program, {**env, "PATH": path}, cwd)


ENTER_FAILED = 125
"""The exit status of a run as another user that could not enter its ``cwd``."""
_ENTER = f'cd -- "$0" || exit {ENTER_FAILED}; exec "$@"'


def as_account(account: RunAccount, argv: list[str], cwd: str) -> tuple[list[str], dict]:
    """(argv, ``subprocess.Popen`` keywords) that start ``argv`` in ``cwd`` as ``account``.
    The forked child drops to the account (groups, gid, uid) before it executes anything,
    so nothing runs as root with the job's environment (a launcher run as root with it --
    util-linux ``setpriv`` -- would load an ``LD_PRELOAD`` the job names, as root). It then
    enters ``cwd`` as the account (``sh``'s ``cd``): Popen's own ``cwd`` is entered before
    the switch, by root, and a run started in a folder its user may not enter could read
    what lies below it (``cwd: /root``: root's Ray token). No parent-death signal here (the
    launcher of ``bound_to_parent`` is this Python, which another user may not be able to
    execute: it may live in root's home): a run whose Ray worker dies is stopped by its
    runner, and a restarted runner stops what it left (``stop_run``)."""
    return (["/bin/sh", "-c", _ENTER, cwd, *argv],
            {"user": account.uid, "group": account.gid, "extra_groups": [], "cwd": "/"})
