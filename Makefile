# pgcache — every target sets up what it needs (a virtual environment in .venv) by itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
WORKLOAD ?= workloads/default.yaml
ARGS ?=
COMPOSE := docker compose -f compose.yaml

.PHONY: run test test-slow lint bench-pgcache bench-fanout benchmark benchmark-simulated-network \
        benchmark-suite benchmark-suite-quick benchmark-cleanup services-up services-down clean \
        answer answer-render

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[bench,distributed,dev]'
	touch $@

venv: $(VENV)/.installed

## The main job: run the default workload on the embedded servers.
run: $(VENV)/.installed
	$(PY) -m orchestrator run $(WORKLOAD) $(ARGS)

## The linters (ruff; mypy strict on pgcache/, orchestrator/, proxies/), then the tests; any
## failure fails the target. pytest's exit code 5, "no tests collected", is a failure too.
## The tests run in TEST_WORKERS pytest-xdist processes (--dist loadgroup, in pyproject.toml:
## tests sharing a module's run or the Ray cluster stay on one worker). Most of the suite's
## time is spent waiting (on servers, subprocesses, timers), not computing, so more workers
## than the machine's 2 cores pay. 4 workers: the quiet serial run (10 min 32 s) used about
## one core on average, so two cores' worth of CPU allows about half that, and the two extra
## workers keep the cores busy while the others wait; the longest group (the Ray cluster's
## tests) fits within the rest. Measured on 2026-12-08 (2 cores): a fresh clone's .ci/run
## took 6 min 53 s, pytest 6 min 21 s (1,280 tests) on a quiet machine; 3 workers against 4
## on a quiet machine is still to be measured (TEST_WORKERS=3 make test).
TEST_WORKERS ?= 4
test: $(VENV)/.installed
	@rc=0; $(VENV)/bin/ruff check . || rc=1; $(VENV)/bin/mypy || rc=1; \
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(ARGS); prc=$$?; \
	if [ $$prc -eq 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; fi; \
	if [ $$prc -ne 0 ]; then rc=$$prc; fi; \
	exit $$rc

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## pgcache micro-benchmark against raw asyncpg and redis-py, side by side, with its targets.
bench-pgcache: $(VENV)/.installed
	$(PY) -m orchestrator.pgcache_bench.microbench $(ARGS)

## Invalidation fan-out as listening instances multiply (own listeners, shared, Valkey peer).
bench-fanout: $(VENV)/.installed
	$(PY) -m orchestrator.pgcache_bench.fanout $(ARGS)

## The seed's benchmark targets. With a working Docker engine they run on the compose stack
## (started before, stopped after, even on failure); without one, on the embedded PostgreSQL 18
## and Valkey 9 (or on POSTGRES_DSN / VALKEY_URL when set), and they say which.
COMPOSE_POSTGRES_DSN := postgresql://cache_user:cache_pass@localhost:15432/cache_proto
COMPOSE_VALKEY_URL   := redis://localhost:16379/0

define run_benchmark
	@if docker info >/dev/null 2>&1 && [ -f compose.yaml ]; then \
	  echo "Docker engine found: running on the compose stack (compose.yaml)"; \
	  $(COMPOSE) up -d --wait || exit $$?; \
	  POSTGRES_DSN="$${POSTGRES_DSN:-$(COMPOSE_POSTGRES_DSN)}" \
	  VALKEY_URL="$${VALKEY_URL:-$(COMPOSE_VALKEY_URL)}" \
	    $(PY) -m orchestrator $(1) $(ARGS); rc=$$?; \
	  $(COMPOSE) down; exit $$rc; \
	else \
	  echo "No Docker engine: running on the embedded servers (or POSTGRES_DSN / VALKEY_URL if set)"; \
	  $(PY) -m orchestrator $(1) $(ARGS); \
	fi
endef

benchmark: $(VENV)/.installed
	$(call run_benchmark,run workloads/default.yaml)

## Same, with 1.5 ms +/- 0.5 ms per network round trip (Toxiproxy if it answers, else in-process).
benchmark-simulated-network: $(VENV)/.installed
	$(call run_benchmark,run workloads/simulated-network.yaml)

## The answer: workloads/suite.yaml (network latency, read share and instances swept; about
## 10 min on a 2-core machine), then its verdicts and where the answer changes. Running it
## again resumes it. The quick variant: under 2 min.
benchmark-suite: $(VENV)/.installed
	$(call run_benchmark,suite workloads/suite.yaml)

benchmark-suite-quick: $(VENV)/.installed
	$(call run_benchmark,suite workloads/suite.yaml --quick)

## The README's answer. `make answer` measures it again: the shipped suite into a fresh results
## database (about 10 min on 2 cores; exit 99, a point no backend meets, is an answer too),
## exported to $(ANSWER) (verdicts, metrics, commit, machine, command), rendered into README.md.
## `make answer-render` only renders the committed $(ANSWER) into README.md.
ANSWER ?= docs/answer/suite.json
ANSWER_COMMAND := python -m orchestrator suite workloads/suite.yaml

answer: $(VENV)/.installed
	@db=$$(mktemp -d)/suite.duckdb; \
	$(PY) -m orchestrator suite workloads/suite.yaml --results $$db $(ARGS); rc=$$?; \
	if [ $$rc -ne 0 ] && [ $$rc -ne 99 ]; then exit $$rc; fi; \
	$(PY) -m orchestrator.reports.readme_answer export --results $$db --suite suite \
	  --command "$(ANSWER_COMMAND)" -o $(ANSWER) || exit $$?; \
	$(PY) -m orchestrator.reports.readme_answer render $(ANSWER) README.md

answer-render: $(VENV)/.installed
	$(PY) -m orchestrator.reports.readme_answer render $(ANSWER) README.md

## Remove the compose containers and volumes, or stop the kept-running embedded servers and
## delete their data; and stop the strays (embedded servers of runs that are gone) and delete
## theirs. Never touches results/.
benchmark-cleanup: $(VENV)/.installed
	@if docker info >/dev/null 2>&1 && [ -f compose.yaml ]; then \
	  $(COMPOSE) down -v --remove-orphans; \
	else \
	  echo "No Docker engine: stopping the embedded servers and removing their data"; \
	fi
	$(PY) -m orchestrator services down --purge
	$(PY) -m orchestrator services cleanup

## Keep embedded servers running between runs (runs use them unless POSTGRES_DSN/VALKEY_URL).
services-up: $(VENV)/.installed
	$(PY) -m orchestrator services up

services-down: $(VENV)/.installed
	$(PY) -m orchestrator services down
