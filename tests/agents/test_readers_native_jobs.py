"""Native JSON Lines jobs: the valid fixture, round trips, and every error naming file, line
and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agora.agents.domain import Run, topological_order, why_unschedulable
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.native import read_cluster, read_jobs, write_jobs
from tests.errorcheck import check, fails

FIX = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def cluster():
    return read_cluster(FIX / "cluster_small.yaml")


def test_jobs_fixture(cluster):
    w = read_jobs(FIX / "jobs_small.jsonl", cluster)
    assert w.source == str(FIX / "jobs_small.jsonl") and w.seed is None
    assert [j.id for j in w.jobs] == ["j0", "j1", "j2"]
    j0, j1, j2 = w.jobs
    assert (j0.arrival, j0.origin, j0.weight, j0.deadline) == (3.5, "edge", 1.0, None)
    assert j0.tasks[0].demand.cpu == 1_000_000  # fits no node: not a reader error
    assert why_unschedulable(j0.tasks[0].demand, cluster) is not None
    assert j1.tasks[0].demand.cpu == 500 and j1.tasks[0].duration == 0
    assert j1.tasks[0].run == Run(argv=("python3", "-c", "print('hi')"),
                                  env=(("MODE", "fast"), ("N", "3")), cwd="/tmp", timeout_s=30)
    assert j2.tasks[0].run is None
    assert (j2.arrival, j2.origin, j2.weight, j2.deadline) == (10, "west", 2.5, 500)
    prep, train, ev = j2.tasks
    assert (prep.data_mb, prep.demand.cpu, prep.demand.mem, prep.demand.gpu) == (100, 2000, 4096, 0)
    assert train.demand.gpu == 2000 and train.demand.gpu_models == {"A100", "V100"}
    assert (train.instances, train.after, train.duration) == (4, ("prep",), 120.5)
    assert ev.demand.gpu == 250 and ev.demand.gpu_models is None
    assert ev.after == ("train", "prep")
    assert [t.id for t in topological_order(j2)] == ["prep", "train", "eval"]
    assert j2.critical_path() == 160.5


def test_jobs_round_trip(cluster, tmp_path):
    w = read_jobs(FIX / "jobs_small.jsonl", cluster)
    out = tmp_path / "out.jsonl"
    write_jobs(w, out)
    back = read_jobs(out, cluster)
    assert back.jobs == w.jobs
    write_jobs(back, tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_text() == out.read_text()


def job(**over) -> dict:
    j = {"id": "a", "arrival": 1, "origin": "east",
         "tasks": [{"id": "t0", "duration": 5, "demand": {"cpu": 1, "mem": 512}},
                   {"id": "t1", "duration": 5, "demand": {"cpu": 1, "mem": 512, "gpu": 1,
                                                          "gpu_models": ["V100", "A100"]},
                    "after": ["t0"]}]}
    j.update(over)
    return j


def jobs_text(bad: str) -> str:
    """Two comment/blank lines, a good job on line 3, ``bad`` on line 4."""
    return "# header\n\n" + json.dumps(job(id="ok")) + "\n" + bad + "\n"


def bad_task(i: int, **over) -> str:
    j = job()
    j["tasks"][i].update(over)
    return json.dumps(j)


def bad_demand(i: int, **over) -> str:
    j = job()
    j["tasks"][i]["demand"].update(over)
    return json.dumps(j)


def drop(key: str) -> str:
    j = job()
    del j[key]
    return json.dumps(j)


@pytest.mark.parametrize("bad,field,words", [
    ('{"id": "a", "arrival": 1,', None, ["not valid JSON"]),
    ("[1, 2]", None, ["found a list", "mapping"]),
    (drop("origin"), "origin", ["missing"]),
    (bad_task(0, duration=None), "tasks[0].duration", ["null"]),
    (json.dumps(job(arrival=-3)), "arrival", ["-3", "negative", ">= 0"]),
    (bad_task(1, duration=-0.5), "tasks[1].duration", ["negative"]),
    (json.dumps(job(arrival=float("nan"))), "arrival", ["NaN"]),
    (bad_task(0, duration=float("inf")), "tasks[0].duration", ["Infinity"]),
    (json.dumps(job()).replace('"arrival": 1', '"arrival": 1e999'), "arrival", ["Infinity"]),
    (json.dumps(job(arrival=True)), "arrival", ["true"]),
    (json.dumps(job(arrival="5")), "arrival", ["'5'"]),
    (json.dumps(job(origin="mars")), "origin", ["unknown site 'mars'", "east, edge, west"]),
    (bad_demand(1, gpu_models=["V100", "H100"]), "tasks[1].demand.gpu_models[1]",
     ["unknown gpu model 'H100'", "A100, V100"]),
    (bad_demand(0, gpu_models=["V100"]), "tasks[0].demand.gpu_models", ["no gpu"]),
    (bad_demand(1, gpu_models=["V100", "V100"]), "tasks[1].demand.gpu_models[1]",
     ["'V100' listed twice"]),
    (bad_demand(1, gpu_models=[]), "tasks[1].demand.gpu_models", ["empty list"]),
    (bad_task(1, after=["t9"]), "tasks[1].after[0]", ["'t9' is not a task", "'t0', 't1'"]),
    (bad_task(0, after=["t1"]), "tasks[0].after", ["cycle", "t0 -> t1 -> t0"]),
    (bad_task(1, after=["t1"]), "tasks[1].after", ["cycle", "t1 -> t1"]),
    (bad_task(1, after=["t0", "t0"]), "tasks[1].after[1]", ["twice"]),
    (bad_demand(1, gpu=1.5), "tasks[1].demand.gpu", ["1.5", "whole number"]),
    # a probe: 0.9999 was read as a whole gpu, and 1.0000000001 was shown as "found 1"
    (bad_demand(1, gpu=0.9999), "tasks[1].demand.gpu", ["0.9999", "rounds to a whole gpu"]),
    (bad_demand(1, gpu=1.0000000001), "tasks[1].demand.gpu", ["1.0000000001"]),
    (bad_demand(1, gpu=-1), "tasks[1].demand.gpu", ["negative"]),
    (bad_demand(0, mem=0.5), "tasks[0].demand.mem", ["whole number"]),
    (bad_demand(0, gpus=1), "tasks[0].demand.gpus", ["unknown key", "cpu, mem, gpu"]),
    (bad_task(0, instances=0), "tasks[0].instances", [">= 1"]),
    (bad_task(0, id="t1"), "tasks[1].id", ["already used"]),
    (json.dumps(job(extra=1)), "extra", ["unknown key", "id, arrival"]),
    (json.dumps(job(id="ok")), "id", ["already used on line 3"]),
    (json.dumps(job(id="")), "id", ["non-empty string"]),
    (json.dumps(job(id=7)), "id", ["7"]),
    (json.dumps(job(tasks=[])), "tasks", ["empty list"]),
    (json.dumps(job(weight=0)), "weight", ["> 0"]),
    (json.dumps(job(deadline=1)), "deadline", ["> 1"]),
    (json.dumps(job(arrival=1e10, deadline=1e10)), "deadline", ["the latest time there is"]),
    ('{"id": "a", "id": "b"}', "id", ["twice"]),
    (bad_task(0, run={"argv": []}), "tasks[0].run.argv", ["empty list"]),
    (bad_task(0, run={"argv": "ls"}), "tasks[0].run.argv", ["'ls'", "list"]),
    (bad_task(0, run={"argv": ["ls", 3]}), "tasks[0].run.argv[1]", ["3", "a string"]),
    (bad_task(0, run={"argv": ["a\u0000b"]}), "tasks[0].run.argv[0]", ["NUL"]),
    (bad_task(0, run={"argv": ["echo", "\ud800"]}), "tasks[0].run.argv[1]",
     ["lone surrogate", "'\\ud800'"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"N": "a\udfffb"}}), "tasks[0].run.env.N",
     ["lone surrogate"]),
    (bad_task(0, run={"argv": ["ls"], "cwd": "\udc80"}), "tasks[0].run.cwd",
     ["lone surrogates"]),
    (bad_task(0, run={"cmd": "ls"}), "tasks[0].run.cmd", ["unknown key", "argv"]),
    (bad_task(0, run={}), "tasks[0].run.argv", ["missing"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"AGORA_JOB": "x"}}), "tasks[0].run.env.AGORA_JOB",
     ["Agora sets"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"AGORA_RUN": "x"}}), "tasks[0].run.env.AGORA_RUN",
     ["Agora sets"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"1X": "x"}}), "tasks[0].run.env.1X",
     ["invalid variable name"]),
    (bad_task(0, run={"argv": ["ls"], "env": {"N": 3}}), "tasks[0].run.env.N", ["quote"]),
    (bad_task(0, run={"argv": ["ls"], "timeout_s": 0}), "tasks[0].run.timeout_s", ["> 0"]),
    (bad_task(0, run={"argv": ["ls"], "cwd": ""}), "tasks[0].run.cwd", ["folder path"]),
    (bad_task(0, run={"argv": ["x" * 40000]}), "tasks[0].run.argv", ["bytes", "files"]),
])
def test_jobs_errors(cluster, tmp_path, bad, field, words):
    p = tmp_path / "bad.jsonl"
    check(fails(read_jobs, p, jobs_text(bad), cluster), p, 4, field, *words)


def test_jobs_bad_bytes_and_file(cluster, tmp_path):
    p = tmp_path / "bad.jsonl"
    raw = ("# x\n" + json.dumps(job()) + "\n").encode() + b'{"id": "\xff\xfe"}\n'
    check(fails(read_jobs, p, raw, cluster), p, 3, None, "UTF-8")
    # a file saved as UTF-16 (a Windows editor's "Unicode") is named as such, with the fix
    u16 = (json.dumps(job()) + "\n").encode("utf-16")
    check(fails(read_jobs, p, u16, cluster), p, 1, None, "UTF-16", "iconv")
    # a gzip'd file is named as such (a probe: it said only "byte 0x8b is not UTF-8")
    import gzip
    gz = gzip.compress((json.dumps(job()) + "\n").encode())
    check(fails(read_jobs, p, gz, cluster), p, 1, None, "gzip-compressed", "gunzip")
    with pytest.raises(InputError) as ei:
        read_jobs(tmp_path / "missing.jsonl", cluster)
    check(ei.value, tmp_path / "missing.jsonl", None, None, "cannot read")


def test_a_pretty_printed_array_of_jobs_is_one_error_saying_what_the_file_is(cluster,
                                                                            tmp_path):
    # a probe: 20 lines of "not valid JSON" and a count, none saying it was an array
    p = tmp_path / "jobs.jsonl"
    p.write_text("# jobs\n" + json.dumps([job(), dict(job(), id="k")], indent=2) + "\n")
    problems: list = []
    with pytest.raises(InputError) as ei:
        read_jobs(p, cluster, problems=problems)
    check(ei.value, p, 2, None, "a JSON array of 2 item(s)", "JSON Lines", "jq -c")
    # an array on one line keeps that line's own error; broken JSON its lines' errors
    p.write_text(json.dumps([job()]) + "\n")
    check(fails(read_jobs, p, p.read_bytes(), cluster), p, 1, None, "found a list")
    p.write_text("[\n" + json.dumps(job()) + ",\n")
    read_jobs(p, cluster, problems=problems)
    assert problems and all("not valid JSON" in str(e) for e in problems)


def test_a_live_agora_needs_a_run_for_every_task(cluster, tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text(jobs_text(bad_task(1, run={"argv": ["true"]})))
    check(fails(read_jobs, p, p.read_text(), cluster, require_run=True), p, 3,
          "tasks[0].run", "has no run", "argv")  # line 3 holds the first job (no run)
    j = job()
    for t in j["tasks"]:
        t["run"] = {"argv": ["true"]}
    p.write_text(json.dumps(j) + "\n")
    assert read_jobs(p, cluster, require_run=True).jobs[0].tasks[1].run.argv == ("true",)


def test_a_live_agora_refuses_a_job_over_its_instance_or_task_budget_naming_the_line(
        cluster, tmp_path):
    # a probe: 1,000,000 + 1,000 instances passed the reader and were refused only by the
    # coordinator (RESOURCE_EXHAUSTED, no file or line); a simulation reads them
    run = {"argv": ["true"]}
    big = job(id="big", tasks=[
        {"id": "a", "duration": 1, "demand": {"cpu": 1, "mem": 512}, "instances": 1_000_000,
         "run": run},
        {"id": "b", "duration": 1, "demand": {"cpu": 1, "mem": 512}, "instances": 1_000,
         "run": run}])
    p = tmp_path / "j.jsonl"
    p.write_text(json.dumps(big) + "\n")
    check(fails(read_jobs, p, p.read_text(), cluster, require_run=True), p, 1, "tasks",
          "1,001,000 instances", "at most 1,000,000")
    assert read_jobs(p, cluster).jobs[0].tasks[0].instances == 1_000_000
    wide = job(id="wide", tasks=[{"id": f"t{i}", "duration": 1, "demand": {"cpu": 1,
                                  "mem": 512}, "run": run} for i in range(1_001)])
    p.write_text(json.dumps(wide) + "\n")
    check(fails(read_jobs, p, p.read_text(), cluster, require_run=True), p, 1, "tasks",
          "1,001 tasks", "at most 1,000")


def test_a_live_agora_refuses_a_deadline_that_moved_to_now_passes_the_end_of_time(cluster,
                                                                                 tmp_path):
    # a probe: "deadline": 10^10 on a job arriving at 0 passed the reader, then agora submit
    # moved it to now + 10^10 and the coordinator refused it (exit 1, no line)
    j = job(deadline=10**10)
    for t in j["tasks"]:
        t["run"] = {"argv": ["true"]}
    p = tmp_path / "j.jsonl"
    p.write_text(json.dumps(j) + "\n")
    check(fails(read_jobs, p, p.read_text(), cluster, require_run=True), p, 1, "deadline",
          "arrives now", "after the arrival")
    assert read_jobs(p, cluster).jobs[0].deadline == 10**10    # a simulation reads it
    j["deadline"] = 900
    p.write_text(json.dumps(j) + "\n")
    assert read_jobs(p, cluster, require_run=True).jobs[0].deadline == 900


def test_a_long_dependency_cycle_is_named_by_its_first_tasks_in_one_short_line(cluster,
                                                                                tmp_path):
    # a probe: 20,000 tasks in one cycle made a 189 KB error line listing every task
    n = 1_000
    tasks = [{"id": f"t{i}", "duration": 1, "demand": {"cpu": 1, "mem": 512},
              "after": [f"t{(i + 1) % n}"]} for i in range(n)]
    p = tmp_path / "j.jsonl"
    p.write_text(json.dumps(job(id="loop", tasks=tasks)) + "\n")
    e = fails(read_jobs, p, p.read_text(), cluster)
    assert "cycle" in str(e) and "(992 more tasks)" in str(e) and len(str(e)) < 600, str(e)


def test_jobs_empty_file_is_empty_workload(cluster, tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("# nothing\n\n")
    assert read_jobs(p, cluster).jobs == ()


@pytest.mark.parametrize("text,words", [
    ("[" * 100_000 + "]" * 100_000, ("nested too deeply",)),
    ('{"id": ' + "7" * 5000 + "}", ("a number of more than", "digits")),
])
def test_json_too_deep_or_too_long_is_said_in_the_users_words(cluster, tmp_path, text, words):
    # these once printed Python's own exception (RecursionError; "use
    # sys.set_int_max_str_digits() to increase the limit"), advice for a programmer
    p = tmp_path / "j.jsonl"
    p.write_text(text + "\n")
    with pytest.raises(InputError) as ei:
        read_jobs(p, cluster)
    check(ei.value, p, 1, None, *words)
    assert "Error" not in str(ei.value) and "sys." not in str(ei.value), str(ei.value)
