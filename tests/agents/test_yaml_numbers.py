"""YAML files are read as written (agents/workloads/yamlmarks.py): YAML 1.1 once turned
``cpu: 010`` into 8 cores (octal), ``mem: 1:30`` into 90 MiB (base 60) and ``count: 0b11``
into 3 nodes, silently; those are now refused naming file and line, and ``1e3``, ``1.0e3``
and ``-.5`` (text to YAML 1.1) are explained with a form it reads. A merge key (``<<``) whose
mapping overrides a merged key is read as YAML means it (it was refused as a key given twice);
a key written twice is still refused."""

from __future__ import annotations

import pytest

from agora.agents.workloads.errors import InputError
from agora.agents.workloads.loader import load_cluster
from agora.agents.workloads.yamlmarks import load_yaml

NODE = "sites:\n  - name: a\n    nodes:\n      - {{name: n, cpu: {cpu}, mem: {mem}{extra}}}\n"


@pytest.mark.parametrize("cpu,mem,extra,why", [
    ("010", "4096", "", "octal"),
    ("4", "1:30", "", "base 60"),
    ("4", "4096", ", count: 0b11", "binary"),
    ("0x10", "4096", "", "hexadecimal"),
    ("4", "1:30.5", "", "base 60"),
])
def test_numbers_yaml_11_would_misread_are_refused_naming_the_line(tmp_path, cpu, mem, extra,
                                                                   why):
    p = tmp_path / "c.yaml"
    p.write_text(NODE.format(cpu=cpu, mem=mem, extra=extra))
    with pytest.raises(InputError) as e:
        load_cluster(str(p))
    msg = str(e.value)
    assert msg.startswith(f"{p}:4:") and why in msg and "decimal" in msg, msg


def test_decimal_numbers_quoted_text_and_underscores_read_as_before(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(NODE.format(cpu="0", mem="4_096", extra="") + "x: '010'\ny: -7\n")
    doc = load_yaml(str(p))
    assert doc["sites"][0]["nodes"][0]["mem"] == 4096 and doc["x"] == "010" and doc["y"] == -7


@pytest.mark.parametrize("text, fixed", [
    ("1e3", "1.0e+3"), ("1.0e3", "1.0e+3"), ("1.e3", "1.0e+3"), (".5e3", "0.5e+3"),
    ("2E-1", "2.0e-1"), ("-.5", "-0.5")])
def test_a_number_yaml_11_reads_as_text_is_explained_with_a_form_it_reads(tmp_path, text,
                                                                          fixed):
    # the hint said "write 1.0e3", which YAML 1.1 reads as text too (no sign in the
    # exponent), and said nothing for 1.0e3 or -.5 (CLI probe)
    p = tmp_path / "c.yaml"
    p.write_text(NODE.format(cpu=text, mem="4096", extra=""))
    with pytest.raises(InputError) as e:
        load_cluster(str(p))
    assert f"found '{text}' (YAML 1.1 reads it as text, not a number: write {fixed})" in \
        str(e.value)
    p.write_text(NODE.format(cpu=f"{fixed}", mem="4096", extra=""))
    assert isinstance(load_yaml(str(p))["sites"][0]["nodes"][0]["cpu"], float)


def test_quoted_numbers_and_words_get_no_hint(tmp_path):
    p = tmp_path / "c.yaml"
    for cpu in ("'4'", "'1.5'", "four", "e3"):
        p.write_text(NODE.format(cpu=cpu, mem="4096", extra=""))
        with pytest.raises(InputError) as e:
            load_cluster(str(p))
        assert "YAML 1.1" not in str(e.value)


def test_a_merge_key_overridden_by_the_mapping_is_read_as_yaml_means_it(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("sites:\n  - name: a\n    nodes:\n      - &n {name: n, cpu: 4, mem: 4096}\n"
                 "      - <<: *n\n        name: m\n        cpu: 8\n")
    nodes = load_cluster(str(p)).sites[0].nodes
    assert [(x.name.split("/")[-1], x.cpu) for x in nodes] == [("n", 4000), ("m", 8000)]
    p.write_text("a: 1\nb: {<<: {x: 1}, y: 2, y: 3}\n")
    with pytest.raises(InputError, match=r":2: field 'y': key 'y' appears twice"):
        load_yaml(str(p))
