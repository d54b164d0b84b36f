"""Review finding: without ``run_as`` (the default) a run's default ``cwd`` is its run folder
itself, where the runner keeps the markers it trusts: ``killed``, ``stopping``, ``pid``,
``end.json``/``exit.json``. A command that writes a file of one of those names in its working
folder (no malice needed: ``echo $$ > pid``, a program writing ``killed`` counts) forges its
run's end: a completed run ends ``killed`` -- which the site's executor reports *lost*, so it
is placed again with no attempt counted, for ever -- or ``stopping``, which leaves it with no
end at all. Called directly (the body of the run's Ray task), no Ray needed."""

import json
from types import SimpleNamespace

import pytest

from agora.agents.cluster import instance_run
from agora.agents.cluster.instance_run import RunRequest


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    ctx = SimpleNamespace(get_node_id=lambda: "ray-node-x")
    monkeypatch.setattr(instance_run, "ray", SimpleNamespace(get_runtime_context=lambda: ctx))


def _req(script: str) -> RunRequest:
    return RunRequest(job="j", task="t", instance=0, run_id=1, attempt=1,
                      argv=("sh", "-c", script), env=(), cwd=None, timeout_s=30, cpu=0.5,
                      mem_mib=16, gpus=0.0, site="site-a", node="site-a/n0")


@pytest.mark.parametrize("name", ["killed", "stopping"])
def test_a_command_writing_a_file_named_like_a_marker_in_its_cwd_does_not_change_its_end(
        tmp_path, name):
    folder = tmp_path / "run"
    folder.mkdir()
    end = instance_run._execute_run(_req(f"echo 3 files > {name}; exit 0"), str(folder), None)
    assert end["kind"] == "completed", end
    assert json.loads((folder / "end.json").read_text())["kind"] == "completed"


def test_a_command_writing_a_pid_file_in_its_cwd_leaves_the_runners_pid(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    # the command writes its pid file after the runner wrote the run's (a moment later)
    end = instance_run._execute_run(_req("sleep 0.5; echo 1 > pid; exit 0"), str(folder), None)
    assert end["kind"] == "completed"
    assert (folder / "pid").read_text().strip() != "1"
