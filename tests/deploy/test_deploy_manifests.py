"""The cluster manifests of deploy/: the Ray cluster launcher config and the KubeRay
RayCluster parse, pin the Ray version and Python of pyproject.toml, and give every site of the
default cluster exactly one node type / worker group carrying its `agora-site-<name>`
resource; job-submit.sh submits `agora up` with a config that loads."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from agora.agents.workloads.loader import load_cluster
from agora.deploy.ray_runtime import site_of_resource, site_resource
from agora.deploy.up_config import load_up_config

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "deploy" / "ray" / "cluster-launcher.yaml"
RAYCLUSTER = REPO / "deploy" / "kuberay" / "raycluster.yaml"
JOB_SUBMIT = REPO / "deploy" / "ray" / "job-submit.sh"
CLUSTER_CONFIG = REPO / "deploy" / "configs" / "cluster.yaml"
DEPLOY_DOC = REPO / "docs" / "deploying.md"
"""documents the manifests"""


def _pyproject() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _pin(name: str) -> str:
    """The version pyproject.toml pins ``name`` to (``name[extras]==X``)."""
    for dep in _pyproject()["project"]["dependencies"]:
        m = re.fullmatch(rf"{re.escape(name)}(\[[^\]]*\])?==([0-9][0-9A-Za-z.]*)", dep.strip())
        if m:
            return m.group(2)
    raise AssertionError(f"pyproject.toml pins no {name}")


RAY = _pin("ray")
TORCH = _pin("torch")


def _python_tag() -> str:
    """'py311' from requires-python '>=3.11,<3.12'."""
    m = re.search(r">=\s*3\.(\d+)", _pyproject()["project"]["requires-python"])
    assert m, "requires-python has no lower bound"
    return f"py3{m.group(1)}"


IMAGE = f"rayproject/ray:{RAY}-{_python_tag()}-cpu"
SITES = load_cluster("default").site_names


def test_the_pins_are_read_from_pyproject():
    assert re.fullmatch(r"\d+\.\d+\.\d+", RAY) and re.fullmatch(r"\d+\.\d+\.\d+", TORCH)
    assert _python_tag() == f"py3{sys.version_info.minor}"  # the venv's Python is the pinned one
    assert len(SITES) == 8


# --- Ray cluster launcher -----------------------------------------------------------------------

def _launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def _site_resources(resources: dict) -> dict[str, object]:
    return {site_of_resource(k): v for k, v in (resources or {}).items()
            if k.startswith("agora-site-")}


def test_the_launcher_config_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = _launcher()
    validate_config(prepare_config(copy.deepcopy(cfg)))
    broken = copy.deepcopy(cfg)  # the validation is real: a bad node type is refused
    broken["available_node_types"]["site-dc-east"]["resources"] = "agora-site-dc-east"
    with pytest.raises(Exception):
        validate_config(prepare_config(broken))


def test_the_launcher_image_is_the_pinned_ray_and_python():
    cfg = _launcher()
    assert cfg["docker"]["image"] == IMAGE
    for name, nt in cfg["available_node_types"].items():
        docker = nt.get("docker", {})
        for key in ("image", "head_image", "worker_image"):
            assert docker.get(key, IMAGE) == IMAGE, name
    for key in ("head_image", "worker_image"):
        assert cfg["docker"].get(key, IMAGE) == IMAGE


def test_every_site_has_exactly_one_launcher_node_type_with_its_resource():
    cfg = _launcher()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert _site_resources(head["resources"]) == {}, "the head must carry no site resource"
    carriers: dict[str, list[str]] = {}
    for name, nt in types.items():
        for site, amount in _site_resources(nt.get("resources")).items():
            assert site is not None, f"{name}: a malformed agora-site- resource"
            assert amount == 1, f"{name}: {site_resource(site)}: {amount}"
            carriers.setdefault(site, []).append(name)
            assert nt["min_workers"] == nt["max_workers"] == 1, \
                f"{name}: one node for site {site}"
        assert len(_site_resources(nt.get("resources"))) <= 1, f"{name} carries two sites"
    assert sorted(carriers) == sorted(SITES)
    assert all(len(v) == 1 for v in carriers.values()), carriers
    assert cfg["max_workers"] >= len(SITES)


def test_launcher_setup_installs_the_pinned_cpu_torch_then_agora():
    cfg = _launcher()
    cmds = cfg["setup_commands"]
    torch = [i for i, c in enumerate(cmds) if f"torch=={TORCH}" in c]
    assert torch, f"no setup command installs torch=={TORCH}"
    assert "https://download.pytorch.org/whl/cpu" in cmds[torch[0]]
    remote = [r for r, local in cfg["file_mounts"].items() if local in (".", "./")]
    assert remote, "the repository is not mounted on the nodes"
    agora = [i for i, c in enumerate(cmds) if "pip install" in c and remote[0] in c]
    assert agora and agora[0] > torch[0], "install torch's CPU wheel before the project"
    assert {".venv", "out", ".git"} <= set(cfg["rsync_exclude"])


# --- KubeRay ------------------------------------------------------------------------------------

def _raycluster() -> dict:
    docs = [d for d in yaml.safe_load_all(RAYCLUSTER.read_text()) if d]
    assert len(docs) == 1
    return docs[0]


def _ray_start_resources(params: dict) -> dict:
    """What `ray start --resources=<value>` receives once the shell has unquoted KubeRay's
    string."""
    if "resources" not in params:
        return {}
    (arg,) = shlex.split(f"--resources={params['resources']}")
    return json.loads(arg.split("=", 1)[1])


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_the_raycluster_pins_the_ray_version_and_image():
    rc = _raycluster()
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    assert rc["spec"]["rayVersion"] == RAY and isinstance(rc["spec"]["rayVersion"], str)
    groups = [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]
    for g in groups:
        for c in _containers(g):
            assert c["image"] == IMAGE, c["name"]
        # KubeRay's rayStartParams is map[string]string
        assert all(isinstance(v, str) for v in g["rayStartParams"].values()), g


def test_every_site_has_exactly_one_worker_group_with_its_resource():
    rc = _raycluster()
    head = rc["spec"]["headGroupSpec"]
    assert _site_resources(_ray_start_resources(head["rayStartParams"])) == {}
    carriers: dict[str, list[str]] = {}
    for g in rc["spec"]["workerGroupSpecs"]:
        res = _site_resources(_ray_start_resources(g["rayStartParams"]))
        assert len(res) <= 1, f"{g['groupName']} carries two sites"
        for site, amount in res.items():
            assert site is not None and amount == 1, g["groupName"]
            assert g["replicas"] == g["minReplicas"] == g["maxReplicas"] == 1, g["groupName"]
            selector = g["template"]["spec"].get("nodeSelector", {})
            assert selector.get("agora.dev/site", site) == site, g["groupName"]
            carriers.setdefault(site, []).append(g["groupName"])
    assert sorted(carriers) == sorted(SITES)
    assert all(len(v) == 1 for v in carriers.values()), carriers
    names = [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]]
    assert len(names) == len(set(names))


def test_kuberay_resource_strings_are_in_kuberays_quoted_json_form():
    rc = _raycluster()
    raw = rc["spec"]["workerGroupSpecs"][0]["rayStartParams"]["resources"]
    assert raw.startswith('"{') and raw.endswith('}"')
    assert _ray_start_resources({"resources": raw})[site_resource(SITES[0])] == 1


def _node_resources(resources: dict) -> set[str]:
    return {k[len("agora-node-"):] for k in (resources or {}) if k.startswith("agora-node-")}


def test_each_sites_node_carries_one_resource_per_agora_node_of_the_site():
    """The live service pins each node's runner to the Ray node carrying `agora-node-<node>`;
    the head carries none, each site's node every node of its site and no other."""
    cluster = load_cluster("default")
    want = {s.name: {n.name for n in s.nodes} for s in cluster.sites}
    cfg = _launcher()
    got = {}
    for name, nt in cfg["available_node_types"].items():
        res = nt.get("resources") or {}
        for site in _site_resources(res):
            got[site] = _node_resources(res)
        if name == cfg["head_node_type"]:
            assert not _node_resources(res)
    assert got == want
    got = {}
    for g in _raycluster()["spec"]["workerGroupSpecs"]:
        res = _ray_start_resources(g["rayStartParams"])
        for site in _site_resources(res):
            got[site] = _node_resources(res)
    assert got == want


# --- ray job submit -----------------------------------------------------------------------------

def _submit(tmp_path: Path, *args: str, **env: str) -> list[str]:
    """Run job-submit.sh with a `ray` on PATH that records its arguments."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "ray").write_text("#!/bin/sh\n" f"'{sys.executable}' -c 'import json, os, sys; "
                              "print(json.dumps([os.getcwd(), sys.argv[1:]]))' \"$@\"\n")
    (fake / "ray").chmod(0o755)
    full = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "AGORA_CONFIG",
                                                             "AGORA_PIP")}
    full.update(env, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run(["bash", str(JOB_SUBMIT), *args], cwd=tmp_path, env=full,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cwd, argv = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(cwd) == REPO, "the working directory must be the repository root"
    return argv


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_job_submit_runs_agora_up_with_the_cluster_config(tmp_path):
    from ray.runtime_env import RuntimeEnv

    argv = _submit(tmp_path)
    assert argv[:2] == ["job", "submit"]
    assert _option(argv, "--address") == "http://127.0.0.1:8265"
    assert _option(argv, "--working-dir") == "."
    env = json.loads(_option(argv, "--runtime-env-json"))
    RuntimeEnv(**env)  # Ray accepts it
    assert {".venv", "out", ".git"} <= set(env["excludes"])
    cmd = argv[argv.index("--") + 1:]
    assert cmd[:4] == ["python", "-m", "agora.deploy.cli", "up"]
    config = _option(cmd, "--config")
    assert config == "deploy/configs/cluster.yaml"
    cfg = load_up_config(REPO / config)
    assert cfg.ray.address == "auto" and not cfg.ray.multi_node
    assert tuple(cfg.site_resources()) == SITES
    assert _option(_submit(tmp_path, "http://head:8265"), "--address") == "http://head:8265"


def test_job_submit_can_install_the_pinned_dependencies(tmp_path):
    from ray.runtime_env import RuntimeEnv

    env = json.loads(_option(_submit(tmp_path, AGORA_PIP="1"), "--runtime-env-json"))
    RuntimeEnv(**env)
    assert env["pip"]["packages"] == _pyproject()["project"]["dependencies"]
    opts = env["pip"]["pip_install_options"]
    assert "https://download.pytorch.org/whl/cpu" in opts


def test_the_uploaded_working_directory_stays_small():
    """What `--working-dir .` uploads with the script's excludes (without .gitignore's help):
    far below Ray's upload limit, the policy checkpoint included."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    text = JOB_SUBMIT.read_text()
    m = re.search(r"RUNTIME_ENV='(\{.*\})'", text)
    assert m, "job-submit.sh has no literal RUNTIME_ENV"
    excludes = json.loads(m.group(1))["excludes"]
    files: list[Path] = []
    _dir_travel(REPO, [_get_excludes(REPO, excludes)],
                lambda p: files.append(p) if p.is_file() else None, include_gitignore=False)
    total = sum(p.stat().st_size for p in files)
    assert total < 64 * 2**20, f"{total / 2**20:.0f} MiB"
    assert REPO / "agents" / "learn" / "checkpoints" / "learned-synE.pt" in files
    assert not any(".venv" in p.parts for p in files)


def test_the_cluster_config_matches_the_manifests():
    cfg = load_up_config(CLUSTER_CONFIG)
    assert cfg.cluster == "default" and cfg.policy.is_file()
    assert cfg.metrics.host == "0.0.0.0"  # scraped from other nodes


def test_the_deploy_page_links_and_commands_point_at_real_files():
    text = DEPLOY_DOC.read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in link:
            assert (DEPLOY_DOC.parent / link).resolve().exists(), link
    for path in ("deploy/ray/cluster-launcher.yaml", "deploy/kuberay/raycluster.yaml",
                 "deploy/ray/job-submit.sh", "deploy/configs/cluster.yaml"):
        assert path in text and (REPO / path).exists()
    assert os.access(JOB_SUBMIT, os.X_OK)
