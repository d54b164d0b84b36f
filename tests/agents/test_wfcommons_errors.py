"""The WfCommons instance reader (agents/workloads/wfcommons.py) on malformed input: every
error names the file and the JSON path (1.5 and flat instances), what is not JSON names line
and column, a cycle is an error naming it; and over generated input, any JSON value -- alone
or put anywhere in a real instance -- loads or raises InputError. The instances and helpers:
wfcommons_fixtures.py."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora.agents.domain import topological_order
from agora.agents.workloads import wfcommons
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.wfcommons import read_wfcommons
from tests.agents import wfcommons_fixtures
from tests.agents.test_readers_properties import valid_workload
from tests.agents.wfcommons_fixtures import FLAT, SPEC, _no_execution, edited, write
from tests.errorcheck import check
from tests.simkit import cluster, node, site

two_sites = wfcommons_fixtures.two_sites        # the shared fixture; pytest finds it by name


@pytest.mark.parametrize("edit, field, words", [
    (lambda v: v["workflow"]["specification"]["tasks"][1]["parents"].__setitem__(0, "nope"),
     "workflow.specification.tasks[1].parents[0]", ["'nope' is not a task of workflow"]),
    (lambda v: v["workflow"]["specification"]["tasks"][3]["children"].append("gone"),
     "workflow.specification.tasks[3].children[1]", ["'gone' is not a task"]),
    (lambda v: v["workflow"]["specification"]["tasks"][4]["parents"].append("final_5"),
     "workflow.specification.tasks[4].parents[0]", ["the task itself"]),
    (lambda v: v["workflow"]["specification"]["tasks"][2].update(id="blastall_00000002"),
     "workflow.specification.tasks[2].id", ["also workflow.specification.tasks[1]"]),
    (lambda v: v["workflow"]["specification"]["tasks"][0].pop("id"),
     "workflow.specification.tasks[0].id", ["required key 'id' is missing"]),
    (lambda v: v["workflow"]["specification"]["tasks"][0].update(parents="x"),
     "workflow.specification.tasks[0].parents", ["found 'x'", "list of strings"]),
    (lambda v: v["workflow"]["specification"]["tasks"][1]["parents"].__setitem__(0, 7),
     "workflow.specification.tasks[1].parents[0]", ["found 7", "a string"]),
    (lambda v: v["workflow"]["specification"]["tasks"][0]["inputFiles"].append("nofile"),
     "workflow.specification.tasks[0].inputFiles[2]", ["'nofile' is not in"]),
    (lambda v: v["workflow"]["specification"]["files"][0].update(sizeInBytes=-1),
     "workflow.specification.files[0].sizeInBytes", ["negative"]),
    (lambda v: v["workflow"]["specification"]["files"].append({"id": "nt", "sizeInBytes": 1}),
     "workflow.specification.files[7].id", ["'nt' is listed twice"]),
    (lambda v: v["workflow"]["specification"]["files"][3].update(sizeInBytes=1e15),
     "workflow.specification.tasks[1].inputFiles", ["MB in all", "1,000,000,000 MB"]),
    (lambda v: v["workflow"]["specification"].update(tasks=[]),
     "workflow.specification.tasks", ["an empty list"]),
    (lambda v: v["workflow"].pop("specification"),
     "workflow.specification", ["required key"]),
    (lambda v: v["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds=-3),
     "workflow.execution.tasks[0].runtimeInSeconds", ["negative", "seconds"]),
    (lambda v: v["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds=math.nan),
     "workflow.execution.tasks[0].runtimeInSeconds", ["NaN"]),
    (lambda v: v["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds=2e9),
     "workflow.execution.tasks[0].runtimeInSeconds", ["<= 1,000,000,000"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(coreCount="2"),
     "workflow.execution.tasks[1].coreCount", ["found '2'", "cores"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(coreCount=1e6),
     "workflow.execution.tasks[1].coreCount", ["<= 100,000"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(memoryInBytes=2 ** 45),
     "workflow.execution.tasks[1].memoryInBytes", ["bytes"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(id="ghost"),
     "workflow.execution.tasks[1].id", ["'ghost' is not in workflow.specification.tasks"]),
    (lambda v: v["workflow"]["execution"]["tasks"][1].update(id="split_fasta_00000001"),
     "workflow.execution.tasks[1].id", ["second entry"]),
    (lambda v: v["workflow"]["execution"].pop("tasks"),
     "workflow.execution.tasks", ["required key"]),
    (lambda v: v.update(schemaVersion="2.0"), "schemaVersion", ["'2.0'", "1.0, 1.1"]),
    (lambda v: v.update(schemaVersion=1.5), "schemaVersion", ["found 1.5", "as a string"]),
    (lambda v: v.pop("name"), "name", ["required key 'name'"]),
    (lambda v: v.update(workflow=[]), "workflow", ["found a list", "JSON object"]),
])
def test_malformed_1_5_instances_name_the_json_path(tmp_path, two_sites, edit, field, words):
    p = write(tmp_path, edited(SPEC, edit))
    with pytest.raises(InputError) as e:
        read_wfcommons(p, two_sites)
    check(e.value, p, None, field, *words)


@pytest.mark.parametrize("edit, field, words", [
    (lambda v: v["workflow"].pop("jobs"), "workflow.tasks", ["workflow.jobs before 1.3"]),
    (lambda v: v["workflow"]["jobs"][2]["parents"].__setitem__(0, "individuals_ID9"),
     "workflow.jobs[2].parents[0]", ["'individuals_ID9' is not a task", "the name of"]),
    (lambda v: v["workflow"]["jobs"][1].update(name="individuals_ID0000001"),
     "workflow.jobs[1].name", ["also workflow.jobs[0]"]),
    (lambda v: v["workflow"]["jobs"][0]["files"][0].update(link=3),
     "workflow.jobs[0].files[0].link", ["found 3", "input or output"]),
    (lambda v: v["workflow"]["jobs"][0]["files"][0].update(link="sideways"),
     "workflow.jobs[0].files[0].link", ["found 'sideways'", "input or output"]),
    (lambda v: v["workflow"]["jobs"][0]["files"][0].update(size="big"),
     "workflow.jobs[0].files[0].size", ["found 'big'", "bytes"]),
    (lambda v: v["workflow"]["jobs"][0].update(memory=-1),
     "workflow.jobs[0].memory", ["negative", "KB"]),
    (lambda v: v["workflow"]["jobs"][0].update(cores=0),
     "workflow.jobs[0].cores", [">= 0.001"]),
    (lambda v: v["workflow"]["jobs"][0].update(runtime=True),
     "workflow.jobs[0].runtime", ["found true"]),
])
def test_malformed_flat_instances_name_the_json_path(tmp_path, two_sites, edit, field, words):
    p = write(tmp_path, edited(FLAT, edit))
    with pytest.raises(InputError) as e:
        read_wfcommons(p, two_sites)
    check(e.value, p, None, field, *words)


def test_what_is_not_json_names_line_and_column(tmp_path, two_sites, monkeypatch):
    p = write(tmp_path, '{\n  "name": "x",\n  "schemaVersion": "1.5",\n  "workflow": {,}\n}')
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, 4, None,
          "not valid JSON at column 16")
    p = write(tmp_path, '{"name": "x", "name": "y", "schemaVersion": "1.5", "workflow": {}}')
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, None, "name",
          "key appears twice")
    p = tmp_path / "bytes.json"
    p.write_bytes(b'{"name": "\xff"}')
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, 1, None,
          "not UTF-8")
    p = write(tmp_path, "[" * 100_000 + "]" * 100_000)
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, None, None,
          "nested too deeply")
    p = write(tmp_path, "")
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, 1, None,
          "not valid JSON")
    monkeypatch.setattr(wfcommons, "MAX_FILE_BYTES", 1000)
    p = write(tmp_path, SPEC)
    check(pytest.raises(InputError, read_wfcommons, p, two_sites).value, p, None, None,
          "bytes, over the limit", "at most 1,000 bytes")


@pytest.mark.parametrize("edit", [
    lambda v: v["workflow"]["specification"]["tasks"][0]["parents"].append("cat_00000004"),
    lambda v: v["workflow"]["specification"]["tasks"][4]["children"].append("blastall_00000003"),
])
def test_a_cycle_is_an_error_naming_it(tmp_path, two_sites, edit):
    p = write(tmp_path, edited(SPEC, edit))
    e = pytest.raises(InputError, read_wfcommons, p, two_sites).value
    assert e.field.startswith("workflow.specification.tasks[") and e.field.endswith("].parents")
    assert "tasks wait for each other in a cycle" in e.problem
    no_exec = write(tmp_path, edited(edited(SPEC, edit), _no_execution), "spec-only.json")
    with pytest.raises(InputError, match="cycle"):     # refused, not merely skipped
        read_wfcommons(no_exec, two_sites)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10 ** 12) | st.floats()
    | st.sampled_from(["1.5", "1.0", "x", "", "a/b", "split_00000001", "input", ".."]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(
        ["name", "id", "schemaVersion", "workflow", "specification", "execution", "tasks",
         "jobs", "files", "parents", "children", "inputFiles", "runtimeInSeconds", "runtime",
         "coreCount", "cores", "memoryInBytes", "memory", "sizeInBytes", "size", "link"]),
        inner, max_size=5), max_leaves=30)
_SET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_C = cluster(site("a", node("a", "n1", 8, mem=1024)))


def _read_only_input_errors(value) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "wf.json"
        p.write_text(json.dumps(value))
        try:
            w = read_wfcommons(p, _C)
        except InputError as e:
            assert e.path == str(p)
        else:
            valid_workload(w, _C)
            for j in w.jobs:
                topological_order(j)


@_SET
@given(value=_JSON)
def test_any_json_value_loads_or_raises_input_error(value):
    _read_only_input_errors(value)


def _paths(v, at=()):
    yield at
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        yield from _paths(x, at + (k,))


_BASES = {"spec": SPEC, "flat": FLAT}
_SPOTS = [(name, p) for name, base in _BASES.items() for p in _paths(base) if p]


@_SET
@given(spot=st.sampled_from(_SPOTS), value=_JSON)
def test_any_value_anywhere_in_a_real_instance_loads_or_raises_input_error(spot, value):
    name, at = spot
    target = copy.deepcopy(_BASES[name])
    holder = target
    for k in at[:-1]:
        holder = holder[k]
    holder[at[-1]] = value
    _read_only_input_errors(target)
