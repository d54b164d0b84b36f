"""The ``agora`` command against hostile and damaged inputs, each a case where a user saw a
traceback, a silent wrong success or lost work (an adversarial review, 2026-12-05): a replica
started twice (it served beside the first and both wrote its log), damaged key files, a
training run's metrics cut mid-append before ``--resume``, NaN timeouts and ports past 65535
in a coordinator config, Ctrl-C while ``agora`` imports, a damaged cluster record, ``keys
--out`` on a pipe, TLS files that are no PEM. In-process ``main``, or a subprocess where a
second process or a signal is the point."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from agora.deploy.cli import main
from tests.deploy.test_cli_inputs import input_error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group(tmp_path: Path, n: int = 1, **extra) -> Path:
    """A coordinator YAML of ``n`` replicas on free loopback ports, with its key file."""
    assert main(["keys", "--replicas", str(n), "--out", str(tmp_path / "keys.yaml")]) == 0
    cfg = {"replicas": [f"127.0.0.1:{_free_port()}" for _ in range(n)], "f": (n - 1) // 3,
           "keys_file": "keys.yaml", "data_dir": "data", "cluster": "default", **extra}
    path = tmp_path / "coordinator.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# -- F1 (high): one replica started twice shares its port and its log -----------------------

def _wait_for(path: Path, proc: subprocess.Popen, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


@pytest.mark.timeout(180)
def test_a_replica_started_twice_is_refused_not_served_beside_the_first(tmp_path, capsys):
    """``agora coordinator --replica 0`` run twice with one config: both processes served
    (gRPC binds with SO_REUSEPORT, so the kernel split the clients between them) and both
    wrote replica-0.sqlite. Jobs each accepted were missing from the other's answers, and
    after a restart the log held a mix: jobs a user had seen accepted were gone."""
    cfg = _group(tmp_path)
    capsys.readouterr()
    cmd = [sys.executable, "-m", "agora.deploy.cli", "coordinator", "--config", str(cfg),
           "--replica", "0", "--log-level", "WARNING"]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs: list[subprocess.Popen] = []
    try:
        with open(logs[0], "wb") as f:
            procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                          cwd=tmp_path))
        assert _wait_for(logs[0], procs[0], "serving on", 90), logs[0].read_text()
        with open(logs[1], "wb") as f:
            procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                          cwd=tmp_path))
        served = _wait_for(logs[1], procs[1], "serving on", 60)
        err = logs[1].read_text()
        assert not served, f"a second replica 0 serves beside the first:\n{err}"
        assert procs[1].wait(30) == 2, err
        last = err.strip().splitlines()[-1]
        assert "Traceback" not in err and "replica-0.sqlite" in last and "in use" in last, err
        assert procs[0].poll() is None        # the first one goes on serving
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


# -- F2 (medium): a damaged key file is a traceback -----------------------------------------

def _damaged(data: dict, how: str) -> object:
    if how == "nested":
        return None                                   # written as text below
    if how == "mac_keys a list":
        data["mac_keys"] = [1, 2]
    elif how == "n infinite":
        data["n"] = float("inf")
    elif how == "n huge":
        data["n"] = 10 ** 20
    elif how == "client_mac_keys key a number":
        data["client_mac_keys"] = {7: "aa"}
    elif how == "replica index infinite":
        data["replicas"][0]["index"] = float("inf")
    return data


@pytest.mark.parametrize("how", ["nested", "mac_keys a list", "n infinite", "n huge",
                                 "client_mac_keys key a number", "replica index infinite"])
def test_a_damaged_key_file_is_one_line_naming_it(how, tmp_path, capsys):
    cfg = _group(tmp_path)
    bad = tmp_path / "bad-keys.yaml"
    if how == "nested":
        bad.write_text("n: 1\nreplicas: " + "[" * 20000 + "]" * 20000 + "\n")
    else:
        data = yaml.safe_load((tmp_path / "keys.yaml").read_text())
        bad.write_text(yaml.safe_dump(_damaged(data, how)))
    bad.chmod(0o600)
    capsys.readouterr()
    for argv in (["status", "--config", str(cfg), "--keys", str(bad)],
                 ["jobs", "--config", str(cfg), "--keys", str(bad)]):
        err = input_error(argv, capsys)
        assert str(bad) in err, err


# -- F3 (medium): agora train --resume after a metrics line cut by a kill -------------------

TRAIN = ["train", "--bc-episodes", "0", "--train-jobs", "3", "--val-episodes", "1",
         "--quiet"]


@pytest.mark.timeout(300)
def test_a_resume_after_a_metrics_line_cut_mid_append_finishes_the_run(tmp_path, capsys):
    """A run killed while appending to metrics.jsonl leaves its last line cut. The resume
    appended after it, trained to the end, then failed reading the file back for the curve
    (``agora train: Expecting ',' delimiter: line 1 column 660``: no file, no line), exit 2,
    summary.json left as the old run's; a second --resume was refused as done already."""
    out = tmp_path / "run"
    assert main(TRAIN + ["--out", str(out), "--steps", "64"]) == 0
    m = out / "metrics.jsonl"
    text = m.read_text()
    m.write_text(text[:-40])                           # the last row cut mid-append
    capsys.readouterr()
    rc = main(TRAIN + ["--out", str(out), "--steps", "128", "--resume"])
    err = capsys.readouterr().err
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] >= 128, summary
    for i, line in enumerate(m.read_text().splitlines(), 1):
        json.loads(line), i                            # every row readable again


@pytest.mark.timeout(300)
def test_a_resume_drops_the_row_of_an_update_its_checkpoint_does_not_hold(tmp_path, capsys):
    """A row is written before last.pt: a run stopped between the two had its next update's
    row written twice by the resume (a probe: 149 rows against 148, update 40 twice). Here
    the stop is made by hand: a row of the update after the checkpoint's, then a resume."""
    out = tmp_path / "run"
    assert main(TRAIN + ["--out", str(out), "--steps", "64"]) == 0
    m = out / "metrics.jsonl"
    rows = [json.loads(line) for line in m.read_text().splitlines()]
    last = max(r["update"] for r in rows)
    with m.open("a") as f:                   # the next update's row; last.pt never saved
        f.write(json.dumps({**rows[-1], "update": last + 1, "made_up": True}) + "\n")
    capsys.readouterr()
    assert main(TRAIN + ["--out", str(out), "--steps", "128", "--resume"]) == 0
    rows = [json.loads(line) for line in m.read_text().splitlines()]
    updates = [r["update"] for r in rows if r["update"] > 0]
    assert updates == sorted(set(updates)) and not any(r.get("made_up") for r in rows)
    assert last + 1 in updates


def test_a_second_run_into_a_folder_a_run_writes_now_is_refused(tmp_path, capsys):
    """A probe: two runs started at once into one folder both passed the "holds a run
    already" check and both wrote there (one seed's checkpoint, both seeds' metrics, a cut
    row; both failed at their end). The first run's lock is held here by hand."""
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / "train.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        err = input_error(TRAIN + ["--out", str(out), "--steps", "64"], capsys)
        assert "another agora train writes there now" in err, err
        assert not (out / "metrics.jsonl").exists()
    assert main(TRAIN + ["--out", str(out), "--steps", "64"]) == 0   # free again: it runs


@pytest.mark.timeout(300)
def test_a_resume_on_a_changed_cluster_file_is_refused_naming_it(tmp_path, capsys,
                                                                 monkeypatch):
    """A probe: an edited cluster (cpu 8 -> 2) was taken by --resume, and the validation
    JCT jumped 534 -> 1,724 s; federated runs kept digests and refused it, single runs not.
    The same file named otherwise (relative, then absolute from another folder) is the same
    file: a probe found that refused ("scenario.cluster: saved ..."), and once taken, the
    run's end measured best.pt on the path as first spelt, from the new folder."""
    from agora.agents.workloads.loader import DEFAULT_CLUSTER

    cluster = tmp_path / "c.yaml"
    cluster.write_text(Path(DEFAULT_CLUSTER).read_text())
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    assert main(TRAIN + ["--cluster", "c.yaml", "--out", "run", "--steps", "64"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    argv = TRAIN + ["--cluster", str(cluster), "--out", str(out)]
    assert main(argv + ["--steps", "96", "--resume"]) == 0
    assert json.loads((out / "config.json").read_text())["scenario"]["cluster"] == str(cluster)
    cluster.write_text(cluster.read_text() + "\n# edited\n")
    capsys.readouterr()
    err = input_error(argv + ["--steps", "128", "--resume"], capsys)
    assert "--resume with a changed file (cluster " in err and str(cluster) in err, err


def test_a_damaged_metrics_line_is_named_before_a_resume_trains(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TRAIN + ["--out", str(out), "--steps", "64"]) == 0
    m = out / "metrics.jsonl"
    lines = m.read_text().splitlines(keepends=True)
    lines[0] = lines[0][:20] + "\n"                    # damage inside, not a cut end
    m.write_text("".join(lines))
    capsys.readouterr()
    err = input_error(TRAIN + ["--out", str(out), "--steps", "200", "--resume"], capsys)
    assert f"{m}:1" in err, err


# -- F4 (medium-low): a coordinator config's NaN timeouts and ports past 65535 --------------

@pytest.mark.parametrize("field", ["request_timeout_s", "round_timeout_s", "site_timeout_s",
                                   "client_requests_per_s", "batch_timeout_s"])
def test_a_nan_timeout_or_rate_in_the_coordinator_config_is_refused(field, tmp_path, capsys):
    """``request_timeout_s: .nan`` was taken (NaN is neither < 0 nor == 0): a replica
    served with it and logged "site_lapsed vote not confirmed: cannot convert float NaN to
    integer" every 10 s, never lapsing a silent site."""
    cfg = _group(tmp_path)
    cfg.write_text(cfg.read_text() + f"{field}: .nan\n")
    capsys.readouterr()
    err = input_error(["status", "--config", str(cfg)], capsys)
    assert f"field '{field}'" in err, err


def test_a_nan_timeout_in_an_up_configs_coordinator_section_is_refused(tmp_path, capsys):
    up = tmp_path / "up.yaml"
    up.write_text(f"out: {tmp_path / 'out'}\ncoordinator: {{request_timeout_s: .nan}}\n")
    err = input_error(["down", "--config", str(up)], capsys)
    assert "request_timeout_s" in err, err


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:١٢٣"])
def test_a_replica_address_with_no_valid_port_is_refused(address, tmp_path, capsys):
    """``127.0.0.1:99999`` was taken, and gRPC dialled 127.0.0.1:34463 (99999 - 65536):
    another program's port, silently; Arabic-Indic digits passed ``str.isdigit``."""
    cfg = _group(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["replicas"][0] = address
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    capsys.readouterr()
    err = input_error(["status", "--config", str(cfg)], capsys)
    assert "replicas[0]" in err, err


# -- F5 (low-medium): Ctrl-C while the command starts is a traceback ------------------------

STARTING = textwrap.dedent("""
    import os, signal, sys
    # as from a terminal: a suite started in the background by a shell (`make test &`)
    # has SIGINT ignored, which its subprocesses inherit, and then no Ctrl-C arrives
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["/usr/local/bin/agora", "keys", "--help"]     # as the console script
    class CtrlC:                       # the user's Ctrl-C, as {module!r} is imported
        def find_spec(self, name, path=None, target=None):
            if name == {module!r}:
                os.kill(os.getpid(), signal.SIGINT)
            return None
    sys.meta_path.insert(0, CtrlC())
    from agora.deploy.cli import main
    sys.exit(main())
""")


@pytest.mark.parametrize("module", ["agora.agents.baselines",   # cli.py's own imports
                                    "grpc"])                    # main()'s, before its try
def test_ctrl_c_while_agora_starts_is_one_line_not_a_traceback(module, tmp_path):
    """The first ~0.7 s of every command (imports, the parser) is outside main's try: a
    Ctrl-C there printed a 20-line traceback (a probe: 4 of 5 Ctrl-C within 1 s)."""
    r = subprocess.run([sys.executable, "-c", STARTING.format(module=module)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 130 and r.stderr.strip().endswith("interrupted"), r.stderr


# -- F6 (low): a damaged cluster record is a traceback in agora up --------------------------

@pytest.mark.parametrize("record", ["[1, 2]", '{"sites": 5}', '{"sites": [{"x": 1}]}',
                                    '"text"'])
def test_a_damaged_cluster_record_is_taken_as_unreadable(record, tmp_path):
    """``out/coordinator/cluster.json`` that is JSON but not a record: ``agora up``
    printed ``AttributeError: 'list' object has no attribute 'get'`` (check()) before it
    started; a record that is not JSON at all is taken as none (re-recorded)."""
    from agora.agents.workloads.loader import load_cluster
    from agora.deploy.cluster_record import RECORD, check, recorded_rules

    (tmp_path / RECORD).write_text(record)
    assert check(tmp_path, load_cluster("default"), "default") is False
    recorded_rules(tmp_path)


# -- F7 (low): agora keys --out a FIFO replaces it -------------------------------------------

def test_keys_out_on_a_pipe_is_refused_and_left_as_it_is(tmp_path, capsys):
    """``is_file()`` is False for a FIFO (or a device, or a socket), so neither the
    existing-file refusal nor --force applied: the rename replaced it (as root, ``--out
    /dev/null`` would replace the device)."""
    fifo = tmp_path / "keys.pipe"
    os.mkfifo(fifo)
    err = input_error(["keys", "--replicas", "1", "--out", str(fifo)], capsys)
    assert str(fifo) in err and "not a regular file" in err, err
    assert fifo.is_fifo()


# -- F8 (low): a TLS file that is no PEM is told by gRPC's C core, not named ---------------

def test_a_tls_file_that_is_no_pem_is_named(tmp_path, capsys):
    """Garbage in tls.ca / client_cert: 24 lines of C-core log (``Invalid cert chain
    file``), then each replica "no answer", nothing naming the file or the field."""
    certs = tmp_path / "certs"
    certs.mkdir(mode=0o700)
    for name in ("ca.crt", "client.crt", "client.key"):
        (certs / name).write_text("garbage\n")
        (certs / name).chmod(0o600)
    cfg = _group(tmp_path, tls={"enabled": True, "certs_dir": "certs"})
    capsys.readouterr()
    err = input_error(["status", "--config", str(cfg)], capsys)
    assert "tls.ca" in err and str(certs / "ca.crt") in err and "PEM" in err, err


def test_an_unknown_log_level_names_the_flag(tmp_path, capsys):
    # it said "Unknown level: 'FOO'", naming no flag
    with pytest.raises(SystemExit) as e:
        main(["coordinator", "--config", str(_group(tmp_path)), "--replica", "0",
              "--log-level", "FOO"])
    assert e.value.code == 2
    assert "--log-level: invalid choice: 'FOO'" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_sigterm_stops_a_command_as_ctrl_c_does_saying_so(tmp_path):
    """``timeout 60 agora train ...`` (SIGTERM) ended the run without a word: it now stops as
    Ctrl-C does, one line, exit 143."""
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "agora.deploy.cli", *TRAIN, "--out", str(out),
                          "--steps", "1000000"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (out / "config.json").exists() and not list(out.glob("*.pt")):
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
            time.sleep(0.1)
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err[-2000:]
    assert err.strip().endswith("agora train: stopped by SIGTERM") and "Traceback" not in err
