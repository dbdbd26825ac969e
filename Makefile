SHELL := /bin/bash
# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv itself, from the lock files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the lock tool itself is pinned: `make lock` gives the same file for the same index
UV_VERSION := 0.13.9
TOOLS  := .venv-tools
UV     := $(TOOLS)/bin/uv
LOCKFLAGS := --universal --python-version 3.11 --generate-hashes --quiet

.PHONY: demo test lint venv sysdeps bench clean lock upgrade-check

# Everything comes from requirements.lock (every package, transitive ones too, with hashes);
# requirements-nodeps.lock holds TrackEval alone, installed with --no-deps (see pyproject.toml).
$(STAMP): requirements.lock requirements-nodeps.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-nodeps.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

## Run the synthetic airport on the embedded broker and print a summary.
demo: $(STAMP)
	$(VENV)/bin/paxsim demo $(ARGS)

## Debian packages the tests use for real: prometheus, chromium, kcat, docker-compose, the GStreamer RTSP server (skips what is present).
sysdeps:
	sh deploy/install-system-deps.sh

## Run the test suite on both cores (integration tests start the real embedded broker).
# two workers: most integration tests wait on their stage processes, so the second core is not idle
JOBS ?= 2
test: $(STAMP) sysdeps
	$(PY) -m pytest -q -n $(JOBS) --dist worksteal --durations=15 $(PYTEST_ARGS)

## ruff, mypy and the import-linter layer contracts.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

$(UV):
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'

## Re-resolve the lock files from pyproject.toml, keeping current pins where they still fit; commit them with the change.
lock: $(UV)
	printf 'setuptools>=68\npip\n' | $(UV) pip compile pyproject.toml - --extra test --extra lint \
	    $(LOCKFLAGS) -o requirements.lock
	echo 'trackeval==1.3.0' | $(UV) pip compile - --no-deps $(LOCKFLAGS) -o requirements-nodeps.lock
	$(UV) pip compile pyproject.toml -c requirements.lock $(LOCKFLAGS) -o deploy/requirements-runtime.lock  # the image: same pins, no test tools

## Install the newest versions pyproject.toml allows into a scratch venv and run the suite there:
## drift is seen on purpose, before `make lock` takes it in.
upgrade-check: $(UV)
	rm -rf .venv-upgrade && $(PYTHON) -m venv .venv-upgrade
	printf 'setuptools>=68\npip\n' | $(UV) pip compile pyproject.toml - --extra test --extra lint \
	    $(LOCKFLAGS) --upgrade -o .venv-upgrade/requirements.lock
	.venv-upgrade/bin/python -m pip install --quiet --require-hashes --no-deps -r .venv-upgrade/requirements.lock
	.venv-upgrade/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements-nodeps.lock
	.venv-upgrade/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	diff <(grep -E '^[a-z]' requirements.lock) <(grep -E '^[a-z]' .venv-upgrade/requirements.lock) || true
	.venv-upgrade/bin/python -m pytest -q -n $(JOBS) --dist worksteal $(PYTEST_ARGS)

bench: $(STAMP)
	@echo "benchmarks run on demand: .venv/bin/python -m bench.<name> --help (list in README.md, under the load report)"

clean:
	rm -rf $(VENV) $(TOOLS) .venv-upgrade .pytest_cache runs var
