"""Finding 5 (issue 16): inputs without upper bounds. Node ``mem`` of 10^30 or 2^63 gave
tracebacks; ``instances`` of 10^30 or 2x10^9 and ``gpus: 1e9`` hung or blew up memory; a
6 KB YAML of nested aliases expanded to 30 M values; huge ``arrival``/``duration`` gave JCT 0
or inf/nan; a site name with '/' was read by the coordinator as another site; a lone
surrogate in an id failed later, in ``job_to_proto``. Every numeric field now has a
documented bound and names an alphabet (``agents/limits.py``, docs/inputs.md); each case is
refused with file, line and field by the readers (and ``agora simulate`` exits 2), and by
the gRPC conversion naming the proto field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agora.agents.domain import Demand, Job, Task
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_cluster
from agora.agents.workloads.native import read_jobs
from agora.protos.convert import ProtoError, job_from_proto, job_to_proto

ROOT = Path(__file__).resolve().parents[2]
NODE = "sites:\n  - name: {site}\n    nodes: [{{name: n0, cpu: 4, mem: {mem}{extra}}}]\n"
CLUSTERS = {
    "mem 10^30": (NODE.format(site="a", mem="1e30", extra=""), 3, "nodes[0].mem"),
    "mem 2^63": (NODE.format(site="a", mem=2 ** 63, extra=""), 3, "nodes[0].mem"),
    "gpus 1e9": (NODE.format(site="a", mem=1024, extra=", gpus: 1000000000, gpu_model: T4"),
                 3, "nodes[0].gpus"),
    "site name with /": (NODE.format(site="a/b", mem=1024, extra=""), 2, "sites[0].name"),
    "node name with space": ("sites:\n  - name: a\n    nodes: [{name: 'n 0', cpu: 1, mem: 1}]\n",
                             3, "nodes[0].name"),
}


def alias_bomb() -> str:
    lines = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    return "\n".join(lines) + "\nsites: *a7\n"


@pytest.mark.parametrize("case", sorted(CLUSTERS))
def test_cluster_values_past_their_bounds_are_refused_naming_file_line_and_field(tmp_path,
                                                                                  case):
    text, line, field = CLUSTERS[case]
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_cluster(str(p))
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}:") and field in msg and "expected" in msg, msg


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(alias_bomb())
    assert p.stat().st_size < 1000
    with pytest.raises(InputError, match="aliases expand to more than 5,000,000 values"):
        load_cluster(str(p))


CLUSTER = "sites:\n  - name: a\n    nodes: [{name: n0, cpu: 4, mem: 1024}]\n"
GOOD_TASK = {"id": "t", "duration": 1, "demand": {"cpu": 1, "mem": 1}}
JOBS = {
    "instances 10^30": ({"tasks": [{**GOOD_TASK, "instances": 1e30}]}, "tasks[0].instances"),
    "instances 2x10^9": ({"tasks": [{**GOOD_TASK, "instances": 2 * 10 ** 9}]},
                         "tasks[0].instances"),
    "arrival 10^300": ({"arrival": 1e300}, "arrival"),
    "arrival past the year 2286": ({"arrival": 1.1e10}, "arrival"),
    "duration 10^300": ({"tasks": [{**GOOD_TASK, "duration": 1e300}]}, "tasks[0].duration"),
    "demand gpu 1e9": ({"tasks": [{**GOOD_TASK, "demand": {"cpu": 1, "mem": 1, "gpu": 1e9}}]},
                       "tasks[0].demand.gpu"),
    "job id with /": ({"id": "a/b"}, "id"),
    "lone surrogate": ({"id": "j\ud800"}, "id"),
    "task id with a newline": ({"tasks": [{**GOOD_TASK, "id": "t\n"}]}, "tasks[0].id"),
    # ids name folders (a run's output: <node>/<job>/<task>/...): '..' would leave them
    "job id ..": ({"id": ".."}, "id"),
    "task id .": ({"tasks": [{**GOOD_TASK, "id": "."}]}, "tasks[0].id"),
}


@pytest.mark.parametrize("case", sorted(JOBS))
def test_job_values_past_their_bounds_are_refused_naming_file_line_and_field(tmp_path, case):
    change, field = JOBS[case]
    (tmp_path / "c.yaml").write_text(CLUSTER)
    job = {"id": "j", "arrival": 0, "origin": "a", "tasks": [GOOD_TASK], **change}
    p = tmp_path / "jobs.jsonl"
    p.write_text(json.dumps(job) + "\n")
    with pytest.raises(InputError) as e:
        read_jobs(str(p), load_cluster(str(tmp_path / "c.yaml")))
    msg = str(e.value)
    assert msg.startswith(f"{p}:1:") and f"'{field}'" in msg and "expected" in msg, msg


def test_agora_simulate_exits_2_with_one_line_on_a_bounded_field(tmp_path):
    (tmp_path / "c.yaml").write_text(NODE.format(site="a", mem=2 ** 63, extra=""))
    p = subprocess.run([sys.executable, "-m", "agora.deploy.cli", "simulate", "--cluster",
                        str(tmp_path / "c.yaml")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "nodes[0].mem" in p.stderr


@pytest.mark.parametrize("field,value,where", [
    ("instances", 2 * 10 ** 9, "job.tasks[0].instances"),
    ("duration_s", 1e300, "job.tasks[0].duration_s"),
    ("id", "a/b", "job.tasks[0].id")])
def test_the_grpc_conversion_refuses_the_same_naming_the_proto_field(field, value, where):
    msg = job_to_proto(Job(id="j", arrival=0.0, origin="a", tasks=(
        Task("t", 1.0, Demand(1000, 1)),)))
    setattr(msg.tasks[0], field, value)
    with pytest.raises(ProtoError) as e:
        job_from_proto(msg, "job")
    assert e.value.field == where
