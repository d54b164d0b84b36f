"""End-to-end test of the cross-domain recipe (federation/RECIPE.md) with Flower's
deployment engine: a real SuperLink and two SuperNodes as subprocesses on loopback ports
(insecure mode: no TLS on loopback), ``flwr run federation/app`` for 2 rounds of FedAvg,
each site's ClientApp building its learner (the least-squares fake of tests/fakes.py)
from its SuperNode's ``--node-config``. Offline: runtime dependency installation is
disabled, the apps are imported from this checkout.

Slow (about a minute: Flower starts a ClientApp process per message); run with
``make test-slow`` / ``pytest -m slow``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agora.federation.guard import COUNT_CAP
from tests.fakes import make_linear

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SITES = ("a", "b")
ROUNDS, STEPS = 2, 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s:\n"
                       f"{log.read_text()[-3000:]}")


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (Flower detaches its SuperExec into a new session, so a
    process-group kill would miss it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(procs: list[subprocess.Popen]) -> None:
    pids = [p.pid for p in procs] + [d for p in procs for d in descendants(p.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def fedavg_by_hand(rounds: int, steps: int) -> list[np.ndarray]:
    """What FedAvg must produce: each site trains from the global model, the new global
    model is the sample-weighted mean, a count weighing at most ``COUNT_CAP`` x the other's
    (the guard's bound with two sites: federation/guard.py)."""
    g = [np.zeros(3), np.zeros(1)]
    for _ in range(rounds):
        outs, ns = [], []
        for s in SITES:
            learner = make_linear(s)
            learner.set_weights(g)
            n, _ = learner.train(steps, {})
            outs.append(learner.get_weights())
            ns.append(n)
        ns = [min(n, COUNT_CAP * m) for n, m in zip(ns, ns[::-1])]
        g = [sum(n * o[i] for n, o in zip(ns, outs)) / sum(ns) for i in range(2)]
    return g


def linear_site(site: str, tmp: Path) -> str:
    return f"site='{site}' learner='tests.fakes:make_linear'"


def agora_site(site: str, tmp: Path) -> str:
    """Agora's agents on the site's files (federation/deployed_learner.py)."""
    return (f"site='{site}' learner='agora.federation.deployed_learner:site_learner' "
            f"cluster='{REPO / 'tests' / 'fixtures' / 'cluster_small.yaml'}' "
            f"workload='synthetic' state='{tmp / ('state-' + site)}' train-jobs=5 "
            f"val-episodes=1 seed={SITES.index(site)}")


@pytest.fixture
def deployment(tmp_path, request):
    node_config = getattr(request, "param", linear_site)
    env = dict(os.environ, FLWR_HOME=str(tmp_path / "flwr-home"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")])),
               PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    link = free_port()
    procs: list[subprocess.Popen] = []
    logs = {}

    def start(name, *args):
        logs[name] = tmp_path / f"{name}.log"
        procs.append(subprocess.Popen([str(BIN / args[0]), *args[1:]], env=env, cwd=tmp_path,
                                      stdout=logs[name].open("w"), stderr=subprocess.STDOUT))

    try:
        start("superlink", "flower-superlink", "--insecure",
              "--disable-runtime-dependency-installation", "--host", "127.0.0.1",
              "--port", str(link), "--database", str(tmp_path / "state.db"))
        wait_listening(link, procs[0], logs["superlink"])
        for s in SITES:
            start(f"supernode-{s}", "flower-supernode", "--insecure",
                  "--superlink", f"127.0.0.1:{link}", "--host", "127.0.0.1",
                  "--port", str(free_port()),
                  "--node-config", node_config(s, tmp_path))
        (tmp_path / "flwr-home").mkdir(exist_ok=True)
        (tmp_path / "flwr-home" / "config.toml").write_text(
            f'[superlink]\ndefault = "agora-local"\n\n[superlink.agora-local]\n'
            f'address = "127.0.0.1:{link}"\ninsecure = true\n')
        yield env, tmp_path, logs
    finally:
        kill_tree(procs)


def flwr_run(env, tmp: Path, logs: dict, run_config: str, final: Path) -> None:
    """``flwr run`` of the app; fails with every process's log unless ``final`` lands."""
    t0 = time.perf_counter()
    out = subprocess.run([str(BIN / "flwr"), "run", str(REPO / "federation" / "app"),
                          "agora-local", "--stream", "--run-config", run_config],
                         env=env, cwd=tmp, capture_output=True, text=True, timeout=240)
    for _ in range(20):                  # --stream can return just before the file lands
        if final.exists():
            break
        time.sleep(0.5)
    tails = "\n".join(f"--- {n}\n{p.read_text()[-3000:]}" for n, p in logs.items())
    assert final.exists(), (f"no {final.name} after {time.perf_counter() - t0:.0f}s\n"
                            f"flwr run rc={out.returncode}\n{out.stdout[-3000:]}\n"
                            f"{out.stderr[-3000:]}\n{tails}")


def test_two_sites_run_fedavg_through_superlink_and_supernodes(deployment):
    env, tmp, logs = deployment
    np.savez(tmp / "init.npz", np.zeros(3), np.zeros(1))
    final = tmp / "final.npz"
    flwr_run(env, tmp, logs, f"num-server-rounds={ROUNDS} local-steps={STEPS} "
             f"min-nodes={len(SITES)} initial-arrays='{tmp / 'init.npz'}' "
             f"final-arrays='{final}'", final)
    with np.load(final) as f:
        got = [f["arr_0"], f["arr_1"]]
    want = fedavg_by_hand(ROUNDS, STEPS)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    assert not np.allclose(got[0], 0)
    # ... the sample-weighted mean: unweighted averaging would differ (17 vs 41 samples, 41
    # taken as 34: twice the other's).
    assert len(make_linear("a").y) != len(make_linear("b").y)


@pytest.mark.parametrize("deployment", [agora_site], indirect=True)
def test_agoras_agents_train_across_two_domains_into_an_agora_checkpoint(deployment):
    """Each SuperNode trains Agora's PPO on its own files, its local state kept across the
    ClientApp processes Flower starts; the result is a checkpoint `agora evaluate` reads."""
    from agora.agents.learn import checkpoint
    from agora.deploy.cli import main as agora

    env, tmp, logs = deployment
    final = tmp / "fed.pt"
    shipped = REPO / "agents" / "learn" / "checkpoints" / "learned-synE.pt"
    flwr_run(env, tmp, logs, f"num-server-rounds={ROUNDS} local-steps=20 "
             f"min-nodes={len(SITES)} initial-checkpoint='{shipped}' "
             f"final-checkpoint='{final}' final-metrics='{tmp / 'fed.jsonl'}'", final)
    for s in SITES:             # 2 rounds of 20 steps, carried from one process to the next
        assert checkpoint.read(tmp / f"state-{s}" / "state.pt")["progress"]["step"] >= 40
    assert agora(["evaluate", "--checkpoint", str(final), "--cluster",
                  str(REPO / "tests" / "fixtures" / "cluster_small.yaml"), "--workload",
                  "synthetic:jobs=5", "--seeds", "2"]) == 0
