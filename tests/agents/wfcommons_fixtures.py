"""Shared by the WfCommons reader's tests (test_wfcommons.py, test_wfcommons_errors.py): the
instances they read, written here and shaped like WfInstances' makeflow/blast and
helloworld/chain files (1.6) and pegasus-instances' 1000genome (1.0); the ``two_sites``
cluster fixture (a test module takes it as ``two_sites = wfcommons_fixtures.two_sites``); and
helpers that write an instance or an edited copy of one."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.simkit import cluster, node, site


def _spec(tid, parents=(), children=(), inputs=()):
    return {"name": tid.rsplit("_", 1)[0], "id": tid, "parents": list(parents),
            "children": list(children), "inputFiles": list(inputs), "outputFiles": []}


# split -> two blastall -> cat; blastall_3 -> cat only in cat's parents, split -> blastall_3
# only in split's children, and "final" waits for cat through cat's children alone.
SPEC = {
    "name": "makeflow blast/small", "description": "Trace generated with WorkflowHub",
    "createdAt": "2020-12-30T02:24:13.540715", "schemaVersion": "1.5",
    "author": {"name": "rafsilva", "email": "support@workflowhub.org"},
    "workflow": {
        "specification": {
            "tasks": [
                _spec("split_fasta_00000001", children=["blastall_00000002", "blastall_00000003"],
                      inputs=["small.fasta", "split_fasta"]),
                _spec("blastall_00000002", ["split_fasta_00000001"], ["cat_00000004"],
                      ["blastall", "small.fasta.0", "nt", "nt"]),
                _spec("blastall_00000003", [], [], ["blastall", "small.fasta.1", "nt"]),
                _spec("cat_00000004", ["blastall_00000002", "blastall_00000003"], ["final_5"],
                      ["small.fasta.0.out"]),
                _spec("final_5"),
            ],
            "files": [{"id": "small.fasta", "sizeInBytes": 12_000_000},
                      {"id": "split_fasta", "sizeInBytes": 500_000},
                      {"id": "blastall", "sizeInBytes": 1_000_000},
                      {"id": "nt", "sizeInBytes": 2_000_000_000},
                      {"id": "small.fasta.0", "sizeInBytes": 300_000},
                      {"id": "small.fasta.1", "sizeInBytes": 200_000},
                      {"id": "small.fasta.0.out", "sizeInBytes": 4_000}],
        },
        "execution": {
            "makespanInSeconds": 661.0, "executedAt": "2020-12-30T02:24:13",
            "tasks": [
                {"id": "split_fasta_00000001", "runtimeInSeconds": 10.5, "avgCPU": 59.9,
                 "memoryInBytes": 87824, "machines": ["ubuntu"]},
                {"id": "blastall_00000002", "runtimeInSeconds": 300, "coreCount": 2,
                 "memoryInBytes": 3 * 2 ** 30},
                {"id": "blastall_00000003", "runtimeInSeconds": 280.25, "coreCount": 1.5},
                {"id": "cat_00000004", "runtimeInSeconds": 0.0, "memoryInBytes": 0},
                {"id": "final_5", "runtimeInSeconds": 7},
            ],
            "machines": [{"nodeName": "ubuntu", "cpu": {"coreCount": 64, "speedInMHz": 1200}}],
        },
    },
    "runtimeSystem": {"name": "Makeflow", "version": "7.0", "url": "https://ccl.cse.nd.edu"},
}

# pegasus-instances 1000genome-chameleon-*.json (1.0): workflow.jobs, runtime, files with
# link/name/size, parents by name, no children, cores absent; memory in KB.
FLAT = {
    "name": "1000genome-20200401T035039Z-0", "schemaVersion": "1.0",
    "wms": {"name": "Pegasus", "version": "4.9.3"},
    "workflow": {"makespan": 776.0, "jobs": [
        {"name": "individuals_ID0000001", "type": "compute", "runtime": 53.6, "parents": [],
         "files": [{"link": "input", "name": "ALL.chr21.100000.vcf", "size": 1014442803},
                   {"link": "input", "name": "columns.txt", "size": 20078},
                   {"link": "output", "name": "chr21n-1-1001.tar.gz", "size": 28281}],
         "avgCPU": 160.8, "machine": "pegasus-5", "memory": 2048},
        {"name": "sifting_ID0000002", "type": "compute", "runtime": 0.309, "cores": 4,
         "files": [{"link": "input", "name": "annotation.vcf", "size": None}]},
        {"name": "individuals_merge_ID0000003", "type": "compute", "runtime": 38.2,
         "parents": ["individuals_ID0000001"], "children": ["mutation_overlap_ID0000004"],
         "files": [{"link": "input", "name": "chr21n-1-1001.tar.gz", "size": 28281},
                   {"link": "input", "name": "chr21n-1-1001.tar.gz", "size": 28281}]},
        {"name": "mutation_overlap_ID0000004", "type": "compute", "runtime": 12,
         "parents": ["sifting_ID0000002"], "files": []},
    ]},
}


@pytest.fixture
def two_sites():
    return cluster(site("a", node("a", "n1", 64, mem=65536), node("a", "n2", 32, mem=131072)),
                   site("b", node("b", "n1", 16, mem=32768)))


def write(tmp_path: Path, value, name: str = "wf.json") -> Path:
    p = tmp_path / name
    p.write_text(value if isinstance(value, str) else json.dumps(value, indent=1))
    return p


def edited(base: dict, edit) -> dict:
    value = copy.deepcopy(base)
    edit(value)
    return value


def _no_execution(v):
    del v["workflow"]["execution"]
