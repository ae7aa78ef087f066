# pgcache — every target sets up what it needs (a virtual environment in .venv) by itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
WORKLOAD ?= workloads/default.yaml
ARGS ?=
COMPOSE := docker compose -f compose.yaml

.PHONY: run test test-slow lint bench-pgcache benchmark benchmark-simulated-network \
        benchmark-cleanup services-up services-down clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

## The main job: run the default workload on the embedded servers.
run: $(VENV)/.installed
	$(PY) -m orchestrator run $(WORKLOAD) $(ARGS)

## The tests (pytest exit code 5, "no tests collected", counts as a failure here too).
test: $(VENV)/.installed
	@$(PY) -m pytest -q $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; fi; \
	exit $$rc

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
