#!/usr/bin/env bash
# Submit `agora up` to a running Ray cluster (deploy/ray/cluster-launcher.yaml or
# deploy/kuberay/raycluster.yaml) as a Ray job: the repository is uploaded as the job's
# working directory, and the driver runs `agora up` on the head node with
# deploy/configs/cluster.yaml (ray.address: auto), which places one site agent on each
# site's node through the agora-site-<name> resources.
#
#   deploy/ray/job-submit.sh [DASHBOARD_ADDRESS] [extra `agora up` arguments]
#
# DASHBOARD_ADDRESS: the Ray dashboard / job API (default $RAY_ADDRESS, else
# http://127.0.0.1:8265, e.g. through `ray dashboard deploy/ray/cluster-launcher.yaml` or
# `kubectl port-forward svc/agora-head-svc 8265:8265`).
# AGORA_CONFIG=FILE: another config (a path inside the repository).
# AGORA_PIP=1: install Agora's pinned dependencies (pyproject.toml) into the job's
# environment, for nodes running the stock rayproject/ray image (KubeRay); nodes set up by
# cluster-launcher.yaml have them already.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADDRESS="${1:-${RAY_ADDRESS:-http://127.0.0.1:8265}}"
shift $(( $# > 0 ? 1 : 0 ))
CONFIG="${AGORA_CONFIG:-deploy/configs/cluster.yaml}"

# Left out of the uploaded working directory (Ray refuses large ones): the virtual
# environment, outputs, caches.
RUNTIME_ENV='{"excludes": [".git", ".venv", "out", "**/__pycache__", "*.egg-info", ".hypothesis", ".pytest_cache"], "env_vars": {"PYTHONUNBUFFERED": "1"}}'

if [ "${AGORA_PIP:-0}" = 1 ]; then
  RUNTIME_ENV="$(python3 - "$RUNTIME_ENV" <<'PY'
import json, sys, tomllib
env = json.loads(sys.argv[1])
with open("pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
# torch's CPU wheel (2.13.0+cpu) outranks the CUDA one of the same version on PyPI.
env["pip"] = {"packages": deps, "pip_check": False,
              "pip_install_options": ["--extra-index-url", "https://download.pytorch.org/whl/cpu"]}
print(json.dumps(env))
PY
)"
fi

exec ray job submit --address "$ADDRESS" --working-dir . --runtime-env-json "$RUNTIME_ENV" -- python -m agora.deploy.cli up --config "$CONFIG" "$@"
