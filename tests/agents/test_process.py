"""Children bound to their parent (``agents/process.py``): real processes, Linux only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from agora.agents.process import START_REPORT, bound_to_parent, cannot_start, start_failure

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl: Linux")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:          # a zombie has ended too
        return f.read().split(") ", 1)[1][0] != "Z"


def test_the_launcher_execs_in_place_and_passes_argv_and_exit_code():
    p = subprocess.run(bound_to_parent(["sh", "-c", 'echo $$ "$1"; exit 3', "sh", "a b"]),
                       capture_output=True, text=True)
    pid, arg = p.stdout.split(" ", 1)
    assert p.returncode == 3 and arg == "a b\n"
    q = subprocess.Popen(bound_to_parent(["sh", "-c", "echo $$"]), stdout=subprocess.PIPE,
                         text=True)
    assert int(q.communicate()[0]) == q.pid        # the command is the process Popen started


def test_why_the_launcher_could_not_exec_goes_to_the_report_file_not_the_commands_env(tmp_path):
    report = tmp_path / "why"
    env = dict(os.environ, **{START_REPORT: str(report)})
    p = subprocess.run(bound_to_parent(["sh", "-c", f"echo ${{{START_REPORT}-unset}}"]),
                       capture_output=True, text=True, env=env)
    assert (p.returncode, p.stdout) == (0, "unset\n") and not report.exists()
    script = tmp_path / "no-shebang"
    script.write_bytes(b"\x00\x01 not a program\n")
    script.chmod(0o755)
    p = subprocess.run(bound_to_parent([str(script)]), capture_output=True, text=True, env=env)
    assert p.returncode == 126
    assert report.read_text() == f"cannot start {str(script)!r}: Exec format error"


def test_a_bound_child_is_killed_when_its_parent_is(tmp_path):
    """A middle process starts ``sleep 60`` bound to itself and is SIGKILLed: the sleep goes
    too. Unbound, it would outlive the middle by a minute."""
    out = tmp_path / "pid"
    middle = (f"import subprocess, sys, time; sys.path[:0] = {sys.path!r}; "
              "from agora.agents.process import bound_to_parent; "
              "p = subprocess.Popen(bound_to_parent(['sleep', '60'])); "
              f"open({str(out)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    m = subprocess.Popen([sys.executable, "-c", middle])
    deadline = time.monotonic() + 20
    while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(out.read_text())
    time.sleep(0.3)                                 # the launcher has exec'd sleep
    assert _alive(child)
    m.send_signal(signal.SIGKILL)
    m.wait(10)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_program_that_cannot_start_is_named_before_and_by_the_launcher(tmp_path):
    env = {"PATH": str(tmp_path)}
    assert isinstance(cannot_start("no-such-program", env, str(tmp_path)), FileNotFoundError)
    assert isinstance(cannot_start("./nothing", env, str(tmp_path)), FileNotFoundError)
    (tmp_path / "plain").write_text("not executable")
    assert isinstance(cannot_start("./plain", env, str(tmp_path)), PermissionError)
    assert isinstance(cannot_start(str(tmp_path), env, "/"), PermissionError)   # a folder
    assert cannot_start("sh", {"PATH": os.defpath}, str(tmp_path)) is None
    p = subprocess.run(bound_to_parent(["/no/such/program"]), capture_output=True, text=True)
    assert p.returncode == 127 and "cannot start '/no/such/program'" in p.stderr


def test_a_run_whose_cwd_is_no_folder_names_the_folder_not_the_program(tmp_path):
    """A run with "cwd": "/nonexistent/dir" failed three times as "cannot start 'true': No
    such file or directory": the program was there, its folder was not."""
    env = {"PATH": os.defpath}
    missing, plain = str(tmp_path / "gone"), tmp_path / "file"
    plain.write_text("")
    e = cannot_start("true", env, missing)
    assert isinstance(e, FileNotFoundError) and e.filename == missing
    assert isinstance(cannot_start("true", env, str(plain)), NotADirectoryError)
    assert start_failure("true", missing, e) == \
        f"cannot start 'true': its cwd {missing!r}: No such file or directory"
    nope = cannot_start("no-such-program", env, str(tmp_path))
    assert start_failure("no-such-program", str(tmp_path), nope) == \
        "cannot start 'no-such-program': No such file or directory"


def test_a_module_started_from_a_folder_holding_an_agora_folder_imports_the_package(tmp_path):
    # a probe: `agora up --detach` run from a folder with an `agora` subfolder imported that
    # folder as the package ("cannot import name 'IMPORT_ROOT' from 'agora'"); local_group is
    # a module that reads IMPORT_ROOT when imported
    from agora.agents.process import python_module

    (tmp_path / "agora").mkdir()
    r = subprocess.run(python_module("agora.deploy.local_group"), cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-800:]
    bare = subprocess.run([sys.executable, "-m", "agora.deploy.local_group"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert bare.returncode != 0 and "IMPORT_ROOT" in bare.stderr   # what -P avoids
