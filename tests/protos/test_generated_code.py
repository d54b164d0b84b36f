"""The agora.v1 contract's generated code: the committed modules are exactly what the one
script (``python -m agora.protos.generate``) writes from the .proto files, and the script
refuses a grpcio-tools other than the pinned one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agora.protos import generate

ROOT = generate.ROOT


def test_committed_generated_code_is_what_generate_writes(tmp_path):
    done = subprocess.run([sys.executable, "-m", "agora.protos.generate", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    fresh, committed = generate.generated_files(tmp_path), generate.generated_files(ROOT)
    protos = generate.proto_files()
    assert protos and fresh == sorted(p.removesuffix(".proto") + s for p in protos
                                      for s in generate.GENERATED_SUFFIXES)
    assert committed == fresh, ("generated files missing or extra in the repository; run "
                                "`python -m agora.protos.generate`")
    stale = [rel for rel in fresh if (tmp_path / rel).read_bytes() != (ROOT / rel).read_bytes()]
    assert not stale, f"{stale} differ from the .proto files; run `python -m agora.protos.generate`"


def test_generate_refuses_another_grpcio_tools(monkeypatch):
    monkeypatch.setattr(generate.metadata, "version", lambda name: "1.82.0")
    with pytest.raises(SystemExit) as e:
        generate.check_grpcio_tools()
    assert "grpcio-tools==1.81.1" in str(e.value.code) and "protobuf 7" in str(e.value.code)
