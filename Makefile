# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv sysdeps bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps 'trackeval==1.3.0'  # HOTA; --no-deps: see pyproject.toml
	@touch $(STAMP)

venv: $(STAMP)

## Run the synthetic airport on the embedded broker and print a summary.
demo: $(STAMP)
	$(VENV)/bin/paxsim demo $(ARGS)

## Debian packages the tests use for real: prometheus, chromium, kcat, docker-compose (skips what is present).
sysdeps:
	sh deploy/install-system-deps.sh

## Run the test suite (integration tests start the real embedded broker).
test: $(STAMP) sysdeps
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	@echo "benchmarks run on demand: .venv/bin/python -m bench.<name> --help (list in README.md, under the load report)"

clean:
	rm -rf $(VENV) .pytest_cache runs var
