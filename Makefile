# Two entry points for a fresh machine (README): `make run` and `make test`.
# Both create .venv from pyproject.toml when it is missing or older than pyproject.toml.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: run replay test test-slow bench protos clean

$(STAMP): pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Agora needs Python 3.11, found {sys.version.split()[0]}"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel. An unpinned torch would pull gigabytes of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)            ## the main job on its embedded default: the demo DAG jobs, really run
	$(PY) -m agora.deploy.demo

replay: $(STAMP)         ## the cluster engine replaying a synthetic workload (simulated sites)
	$(VENV)/bin/agora replay --config deploy/configs/local.yaml

# Two workers, a test file to each at a time (--dist loadfile: a file's module fixtures and
# its servers stay in one process): most of the suite's wall time is its end-to-end tests
# waiting on Ray, timers and subprocesses, so the other core runs the rest meanwhile
# (2026-12-05: 577 s on one worker, 328 s on two, the same 2,033 passed). The tests that
# assert a wall-clock bound (`timing`) run after, alone: beside the other worker one
# failed (2.3 s against its 0.9 s bound; a review).
test: $(STAMP)           ## the test suite (slow tests excluded; exit 5 "no tests" fails)
	$(VENV)/bin/pytest -m "not slow and not timing" -n 2 --dist loadfile
	$(VENV)/bin/pytest -m "timing and not slow"

test-slow: $(STAMP)
	$(VENV)/bin/pytest -m slow

bench: $(STAMP)
	$(PY) -m bench.baselines

protos: $(STAMP)
	$(PY) -m agora.protos.generate

clean:
	rm -rf $(VENV) out
