"""A run whose command exited but whose Ray task died before it wrote ``end.json`` (the task
dies with the node runner that owns it, and the sweep for strays between the exit and the
end takes milliseconds): the restarted runner ends it from its exit record
(``instance_run.EXIT_RECORD``) -- completed, failed or killed as it exited -- not "lost"
(a re-probe: a runner killed within a millisecond of an instance's exit lost the completion
and the instance ran again). A run with no exit record is lost, as before.

The runner's recovery runs on a ``NodeRunner`` made without Ray (``__new__``: its fields set
here, in this unit test only); the live path is in ``test_node_runner.py``."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

from agora.agents.cluster.instance_run import EXIT_RECORD, RunRequest, run_folder, write_json
from agora.agents.cluster.node_runner import NodeRunner

NODE = "site-a/n0"


def runner(root: Path) -> NodeRunner:
    r = NodeRunner.__new__(NodeRunner)
    r.node, r.root, r.ray_node = NODE, root, "ray-node"
    r.finished, r.ended, r.seq, r._news = set(), {}, 0, asyncio.Event()
    r.keep_runs, r._acked = 0, OrderedDict()          # every run's folder kept
    return r


def left(root: Path, job: str, exit_record: dict | None, killed: str | None = None) -> Path:
    req = RunRequest(job=job, task="t", instance=0, run_id=1, attempt=1, argv=("true",),
                     env=(), cwd=None, timeout_s=None, cpu=0.5, mem_mib=16, gpus=0.0,
                     site="site-a", node=NODE)
    d = run_folder(root, NODE, job, "t", 0, 1)
    d.mkdir(parents=True)
    write_json(d / "run.json", asdict(req))
    if exit_record is not None:
        write_json(d / EXIT_RECORD, {"kind": "completed", "reason": "", "start": 10.0,
                                     "end": 12.5, **exit_record})
    if killed is not None:
        (d / "killed").write_text(killed)
    return d


def test_a_run_that_exited_before_its_end_was_written_ends_as_it_exited(tmp_path):
    folders = {"ok": left(tmp_path, "ok", {"exit_code": 0}),
               "bad": left(tmp_path, "bad", {"exit_code": 3}),
               "slow": left(tmp_path, "slow", {"exit_code": -9, "kind": "failed",
                                               "reason": "timed out after 5 s"}),
               "stopped": left(tmp_path, "stopped", {"exit_code": -15}, killed="cancelled"),
               "cut": left(tmp_path, "cut", None)}
    r = runner(tmp_path)
    r._recover()
    got = {e.job: (e.kind, e.exit_code, e.reason) for e in r.ended.values()}
    assert got["ok"] == ("completed", 0, "")
    assert got["bad"] == ("failed", 3, "exit code 3")
    assert got["slow"] == ("failed", -9, "timed out after 5 s")
    assert got["stopped"] == ("killed", -15, "cancelled")
    assert got["cut"][0] == "lost" and "restarted under it" in got["cut"][2]
    ok = [e for e in r.ended.values() if e.job == "ok"][0]
    assert (ok.start, ok.end) == (10.0, 12.5)
    # each is written down: a later restart reports the same end
    for job, folder in folders.items():
        assert json.loads((folder / "end.json").read_text())["kind"] == got[job][0]
    again = runner(tmp_path)
    again._recover()
    assert {e.job: (e.kind, e.exit_code, e.reason) for e in again.ended.values()} == got


def test_a_run_the_restarted_runner_kills_itself_is_lost_not_a_failed_attempt(tmp_path,
                                                                              monkeypatch):
    """A review: a run whose predecessor's Ray task still lived when the new runner started
    was killed by the new runner's recovery; the old task then wrote its exit record (-15)
    and the run counted a failed attempt. A stand-in for the kill writes that record here
    (this unit test only)."""
    from agora.agents.cluster import node_runner

    folder = left(tmp_path, "cut", None)

    def kill_as_the_old_task_sees_it(f, grace_s=1.0):
        write_json(f / EXIT_RECORD, {"kind": "failed", "reason": "exit code -15",
                                     "start": 10.0, "end": 12.0, "exit_code": -15})
    monkeypatch.setattr(node_runner, "stop_run", kill_as_the_old_task_sees_it)
    r = runner(tmp_path)
    r._recover()
    (end,) = r.ended.values()
    assert end.kind == "lost" and "restarted under it" in end.reason
    assert json.loads((folder / "end.json").read_text())["kind"] == "lost"


def test_an_acknowledgement_forgets_only_the_end_of_the_run_it_names(tmp_path):
    """A review: acknowledgements were by seq alone, and a restarted runner numbers its
    ends from 1 again: one meant for its predecessor forgot an end never reported."""
    from agora.agents.cluster.instance_run import RunEnd

    r = runner(tmp_path)
    run_folder(tmp_path, NODE, "j", "t", 0, 5).mkdir(parents=True)
    r.ended = {1: RunEnd("j", "t", 0, 5, "completed", 0, 1.0, 2.0, "", seq=1)}
    asyncio.run(r.ack([(1, "j", "t", 0, 9)]))             # its predecessor's end 1
    assert list(r.ended) == [1]
    asyncio.run(r.ack([(1, "j", "t", 0, 5)]))
    assert r.ended == {}
    assert (run_folder(tmp_path, NODE, "j", "t", 0, 5) / "acked").exists()


def test_a_start_sent_again_while_an_older_run_is_killed_starts_once(tmp_path, monkeypatch):
    """A review: a start waits for the older run of its instance to be killed (seconds);
    the same start sent again meanwhile passed the "already running" check and ran it
    twice. Ray's task is a stand-in here (this unit test only)."""
    from agora.agents.cluster import node_runner

    launched = []

    class Task:
        def options(self, **opts):
            return self

        def remote(self, req, folder, run_as, niceness):
            launched.append(req.run_id)
            return asyncio.get_running_loop().create_future()    # runs until the end
    monkeypatch.setattr(node_runner, "execute_instance", Task())
    monkeypatch.setattr(node_runner, "NodeAffinitySchedulingStrategy", lambda **k: None)
    r = runner(tmp_path)
    r.live, r._claimed, r.totals, r.run_as, r.niceness = {}, set(), {"CPU": 2.0}, None, 0
    r.stopping = False

    async def kill(*args, reason=""):
        r.live.pop(tuple(args[:4]), None)
        await asyncio.sleep(0.1)                              # a kill takes a while
        return True
    r.kill = kill

    def req(run_id):
        return RunRequest(job="j", task="t", instance=0, run_id=run_id, attempt=1,
                          argv=("true",), env=(), cwd=None, timeout_s=None, cpu=0.5,
                          mem_mib=16, gpus=0.0, site="site-a", node=NODE)

    async def main():
        r.live[("j", "t", 0, 4)] = object()                   # the older run
        answers = await asyncio.gather(r.start(req(5)), r.start(req(5)))
        for live in r.live.values():
            live.waiter.cancel()
        return answers
    assert sorted(asyncio.run(main())) == ["running", "started"]
    assert launched == [5]
