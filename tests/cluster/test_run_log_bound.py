"""Review finding: a run's stdout and stderr files have no bound. A command that prints
without end (a careless loop, or a hostile site's job) fills its node's disk until its
``timeout_s`` -- or for good without one; under ``agora up`` the runs' folders share a disk
with the replicas' logs (``<out>/coordinator``), and a replica whose commit fails exits, so
one job's output can stop the coordinator. Here the bound is made small
(``instance_run.MAX_LOG_BYTES``) and a command writes 64 MiB then waits: its run ends soon
after the bound, failed, saying why -- not at its timeout with all of it kept."""

import json
import time
from types import SimpleNamespace

import pytest

from agora.agents.cluster import instance_run
from agora.agents.cluster.instance_run import RunRequest


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    ctx = SimpleNamespace(get_node_id=lambda: "ray-node-x")
    monkeypatch.setattr(instance_run, "ray", SimpleNamespace(get_runtime_context=lambda: ctx))


@pytest.mark.timing
def test_a_run_that_writes_past_the_output_bound_is_stopped_and_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(instance_run, "MAX_LOG_BYTES", 1 << 20)
    folder = tmp_path / "run"
    folder.mkdir()
    script = ("i=0; while [ $i -lt 64 ]; do head -c 1048576 /dev/zero; i=$((i+1)); done; "
              "sleep 30")
    req = RunRequest(job="j", task="t", instance=0, run_id=1, attempt=1,
                     argv=("sh", "-c", script), env=(), cwd=None, timeout_s=8, cpu=0.5,
                     mem_mib=16, gpus=0.0, site="site-a", node="site-a/n0")
    t0 = time.monotonic()
    end = instance_run._execute_run(req, str(folder), None)
    took = time.monotonic() - t0
    assert end["kind"] == "failed", end
    assert "output" in end["reason"], end["reason"]        # not "timed out after 8 s"
    assert took < 6, took
    assert json.loads((folder / "end.json").read_text())["reason"] == end["reason"]
