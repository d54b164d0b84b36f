"""Regenerate the Python code of every ``.proto`` under ``protos/``: the one way to do it.

    python -m agora.protos.generate             # rewrite the generated files in the repository
    python -m agora.protos.generate --out DIR   # write them under DIR instead (same layout)

protoc runs from the repository root with ``-I agora=.``: the repository's ``protos/`` is the
installed package ``agora.protos`` (pyproject.toml maps the top-level folders into the
``agora`` namespace), so ``protos/agora/v1/cluster.proto`` is known to protoc as
``agora/protos/agora/v1/cluster.proto``, becomes ``protos/agora/v1/cluster_pb2.py`` (+ ``.pyi``,
+ ``_pb2_grpc.py``, written for every file, with or without services, so a file's outputs
never change shape), and generated code imports ``from agora.protos.agora.v1 import
cluster_pb2``. A ``.proto`` imports another by that virtual path too. The output is a pure function of the
``.proto`` files and the pinned grpcio-tools, so CI can regenerate and demand no difference
(tests/protos/test_generated_code.py does).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

GRPCIO_TOOLS_VERSION = "1.81.1"
"""The only grpcio-tools that may generate: another protoc writes different code, and newer
grpcio-tools needs protobuf 7, which flwr refuses (protobuf stays >=6.33.5,<7)."""

ROOT = Path(__file__).resolve().parent.parent
"""The repository root, which protoc runs in (``-I agora=.``)."""

NAMESPACE = "agora"
"""The package the repository's folders are installed under (protoc's virtual root)."""

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
"""What protoc writes for each ``x.proto``: ``x_pb2.py``, ``x_pb2.pyi``, ``x_pb2_grpc.py``."""

HEADER = "# ruff: noqa\n"
"""Prepended to every generated file: generated code is not linted (nor ever hand-edited)."""


def proto_files(root: Path = ROOT) -> list[str]:
    """Every ``.proto`` under ``root/protos``, as sorted paths relative to ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "protos").rglob("*.proto"))


def generated_files(root: Path = ROOT) -> list[str]:
    """Every generated file under ``root/protos``, as sorted paths relative to ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "protos").rglob("*")
                  if p.is_file() and p.name.endswith(GENERATED_SUFFIXES))


def check_grpcio_tools() -> None:
    try:
        found = metadata.version("grpcio-tools")
    except metadata.PackageNotFoundError:
        found = None
    if found != GRPCIO_TOOLS_VERSION:
        sys.exit(f"agora.protos.generate: needs grpcio-tools=={GRPCIO_TOOLS_VERSION}, found "
                 f"{found or 'none'}. Another version generates different code (CI compares "
                 f"it byte for byte), and newer ones need protobuf 7, which flwr refuses. "
                 f"Install it with: pip install grpcio-tools=={GRPCIO_TOOLS_VERSION}")


def generate(out: Path) -> list[str]:
    """Write the generated code of every proto under ``out``; returns the paths written
    (relative to ``out``). Where ``out`` is the repository, generated files whose ``.proto``
    is gone are removed."""
    check_grpcio_tools()
    protos = proto_files()
    if not protos:
        sys.exit(f"agora.protos.generate: no .proto file under {ROOT / 'protos'}")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", f"{NAMESPACE}=.",
               f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *protos]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"agora.protos.generate: protoc failed (exit {done.returncode}):\n"
                     f"{done.stderr or done.stdout}")
        written = generated_files(Path(tmp) / NAMESPACE)
        expected = sorted(p.removesuffix(".proto") + s for p in protos for s in GENERATED_SUFFIXES)
        if written != expected:
            sys.exit(f"agora.protos.generate: protoc wrote {written}, expected {expected}")
        stale = set(generated_files(out)) - set(written) if out.resolve() == ROOT else set()
        for rel in sorted(stale):
            (out / rel).unlink()
        for rel in written:
            text = (Path(tmp) / NAMESPACE / rel).read_text(encoding="utf-8")
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            # newline="\n": the bytes must not depend on the platform that generates them.
            with dest.open("w", encoding="utf-8", newline="\n") as f:
                f.write(HEADER + text)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agora.protos.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT,
                        help="directory to write into, in the repository's layout "
                             "(default: the repository itself)")
    args = parser.parse_args(argv)
    for rel in generate(args.out):
        print(args.out / rel)


if __name__ == "__main__":
    main()
