"""Issue 15, item 5: the installed distribution is one namespace, ``agora``. Builds the wheel
from this checkout and checks what it installs: nothing generic at the top level of
site-packages, every first-party import inside it names ``agora.`` and resolves to a module
the wheel carries, the package data the commands read is there, and the installed package
(not this checkout) imports and answers ``agora --version``."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("agents", "coordinator", "protos", "federation", "deploy")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    leftover = not (ROOT / "build").exists()      # setuptools builds in the checkout's build/
    try:
        p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                            "--no-build-isolation", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    finally:
        if leftover:
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    assert p.returncode == 0, p.stderr
    (whl,) = out.glob("agora-*.whl")
    site = out / "site"
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
    return site


def _modules(site: Path) -> set[str]:
    mods = set()
    for f in (site / "agora").rglob("*.py"):
        parts = f.relative_to(site).with_suffix("").parts
        mods.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return mods


def test_one_namespace_at_the_top_of_site_packages(wheel):
    top = {p.name for p in wheel.iterdir()}
    assert top == {"agora", next(n for n in top if n.endswith(".dist-info"))}, top
    assert {p.name for p in (wheel / "agora").iterdir() if p.is_dir()} >= set(PARTS)


@pytest.mark.timeout(120)
def test_every_first_party_import_is_in_the_namespace_and_resolves(wheel):
    mods = _modules(wheel)
    bad = []
    for f in (wheel / "agora").rglob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                     and node.module else [])
            for name in names:
                head = name.split(".")[0]
                if head in PARTS:
                    bad.append(f"{f.relative_to(wheel)}:{node.lineno}: import {name}")
                elif head == "agora" and name not in mods:
                    # `from agora.x import y` where y is a module: x must be a package
                    bad.append(f"{f.relative_to(wheel)}:{node.lineno}: {name} not in wheel")
    assert not bad, "\n".join(bad[:20])


def test_package_data_the_commands_read_is_installed(wheel):
    for rel in ("agents/workloads/cluster-default.yaml", "deploy/configs/up.yaml",
                "deploy/demo/jobs.jsonl", "deploy/grafana/agora-dashboard.json",
                "deploy/web/index.html", "deploy/web/view.js", "deploy/web/view.css",
                "protos/agora/v1/coordinator.proto"):
        assert (wheel / "agora" / rel).is_file(), rel


def run_installed(wheel: Path, cwd: Path, *argv: str) -> list[str]:
    """``python *argv`` with the unpacked wheel first on the path, in ``cwd`` (not the
    checkout); its output lines."""
    p = subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(wheel)}, timeout=100)
    assert p.returncode == 0, p.stderr
    return p.stdout.split("\n")


@pytest.mark.timeout(120)
def test_the_installed_package_imports_without_the_checkout(wheel, tmp_path):
    code = ("import agora, agora.deploy.cli as cli, agora.coordinator.server, "
            "agora.agents.step.step, agora.protos.agora.v1.coordinator_pb2 as pb;"
            "import importlib.util as u;"
            "print(agora.__file__); print(cli.__file__); print(pb.Command.DESCRIPTOR.full_name);"
            "print([m for m in ('agents', 'coordinator', 'protos', 'federation', 'deploy')"
            " if u.find_spec(m)])")
    lines = run_installed(wheel, tmp_path, "-c", code)
    assert lines[0].startswith(str(wheel)) and lines[1].startswith(str(wheel)), lines
    assert lines[2] == "agora.v1.Command" and lines[3] == "[]", lines
    assert "agora" in run_installed(wheel, tmp_path, "-m", "agora.deploy.cli", "--version")[0]


@pytest.mark.timeout(120)
def test_installed_the_default_config_keeps_state_under_the_current_folder(wheel, tmp_path):
    """The shipped configs' state (out, certs) never lands in site-packages; their policy is
    the checkpoint shipped in the package."""
    code = ("from agora.deploy.up_config import load_up_config as l; import agora.deploy.demo"
            ".__main__ as d; from agora.deploy.service_client import DEFAULT_UP_CONFIG as u;"
            " c = l(u); print(c.out); print(c.tls.certs_dir); print(c.policy);"
            " print(c.policy.is_file()); print(d.OUT)")
    out, certs, policy, exists, demo = run_installed(wheel, tmp_path, "-c", code)[:5]
    here = tmp_path.resolve()
    assert out == str(here / "out" / "agora") and certs == str(here / "out" / "agora" / "certs")
    assert policy.startswith(str(wheel)) and exists == "True"
    assert demo == str(here / "out" / "demo")
