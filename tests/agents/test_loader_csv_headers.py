"""Which CSV a workload or cluster is, by its first line (``workloads.loader``): a pod or node
list whose header went wrong is read as one, and its reader names the columns missing or
unexpected. A probe: a pod list without two columns was read as a batch_task.csv (its header
line parsed as data: "field 'instance_num': found 'cpu_milli'"), a misspelt column was
"neither header" in 600 characters naming no column, and the placement-only pod list was the
same."""

from __future__ import annotations

import pytest

from agora.agents.workloads.alibaba import NODE_HEADER, POD_HEADER
from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_cluster, load_workload
from tests.agents.test_alibaba_bounds import CLUSTER, csv_text, node_row, pod_row
from tests.errorcheck import check


def _without(header: tuple[str, ...], row: list[str], *gone: str) -> tuple[tuple, list]:
    keep = [k for k, c in enumerate(header) if c not in gone]
    return tuple(header[k] for k in keep), [row[k] for k in keep]


@pytest.mark.parametrize("gone, words", [
    (("gpu_spec", "qos"), ("missing gpu_spec, qos",)),                 # 9 columns
    (("gpu_spec", "qos", "pod_phase"), ("missing gpu_spec, qos, pod_phase",)),   # 8
])
def test_a_pod_list_missing_columns_is_not_read_as_batch_tasks(tmp_path, gone, words):
    header, row = _without(POD_HEADER, pod_row(), *gone)
    p = tmp_path / "pods.csv"
    p.write_text(csv_text(header, [row]))
    with pytest.raises(InputError) as ei:
        load_workload(str(p), CLUSTER)
    check(ei.value, p, 1, None, "wrong header", *words)


def test_a_misspelt_or_moved_pod_column_is_named(tmp_path):
    p = tmp_path / "pods.csv"
    p.write_text(csv_text(("name", "cpu_mili") + POD_HEADER[2:], [pod_row()]))
    with pytest.raises(InputError) as ei:
        load_workload(str(p), CLUSTER)
    check(ei.value, p, 1, None, "missing cpu_milli; unexpected cpu_mili")
    p.write_text(csv_text(POD_HEADER[::-1], [pod_row()[::-1]]))
    with pytest.raises(InputError) as ei:
        load_workload(str(p), CLUSTER)
    check(ei.value, p, 1, None, "columns out of order")


def test_the_placement_only_pod_list_says_it_has_no_times(tmp_path):
    p = tmp_path / "multigpu.csv"
    p.write_text(csv_text(POD_HEADER[:5], [pod_row()[:5]]))
    with pytest.raises(InputError) as ei:
        load_workload(str(p), CLUSTER)
    check(ei.value, p, 1, None, "a pod list without times", "bench.gpu_fragmentation")


def test_a_node_list_missing_a_column_is_named(tmp_path):
    header, row = _without(NODE_HEADER, node_row(), "model")
    p = tmp_path / "nodes.csv"
    p.write_text(csv_text(header, [row]))
    with pytest.raises(InputError) as ei:
        load_cluster(str(p))
    check(ei.value, p, 1, None, "wrong header", "missing model")


def test_a_csv_of_neither_kind_keeps_the_general_message(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError) as ei:
        load_workload(str(p), CLUSTER)
    check(ei.value, p, 1, None, "neither the Alibaba pod list header")
