# Every entry point of the project. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := PATH=$(CURDIR)/$(BIN):$$PATH PYTHONPATH=$(CURDIR):$(CURDIR)/gen $(BIN)/python
STAMP := $(VENV)/.installed
# The Redoc bundle of the gateway's /docs page, from the npm registry (pinned version and sha512, gateway/redoc.py).
REDOC := build/redoc/redoc-2.5.0.standalone.js

.PHONY: setup run test test-fast lint proto bench-runtime bench-gateway bench-ledger bench-incentives bench-poll bench-watch bench-checkout ledger-check reconcile outbox k8s-check capacity clean

$(STAMP): requirements/runtime.txt requirements/dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	touch $(STAMP)

$(REDOC): gateway/redoc.py
	$(PY) -m gateway.redoc

setup: $(STAMP) $(REDOC)  ## virtualenv with every dependency, and the Redoc bundle of the gateway's /docs

run: $(STAMP) $(REDOC)  ## embedded PostgreSQL + Redis, migrations, demo seed, five services and Envoy on :8080
	$(PY) -m tools.run

test: $(STAMP) $(REDOC)  ## the whole suite against real PostgreSQL, Redis, gRPC and Envoy
	$(PY) -m pytest

test-fast: $(STAMP)  ## the tests that need no PostgreSQL, Redis or running services (rules, adapters against fakes, contracts, deploy)
	# pytest caches its rewritten test modules as bytecode; a PYTHONDONTWRITEBYTECODE in the environment (this
	# machine's sets it) would make every run rewrite all of them again: a third of the run.
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -m "not mesh" -n auto

CONTRACTS_BASE ?= HEAD~1

lint: $(STAMP)  ## buf lint (STANDARD), buf breaking against CONTRACTS_BASE's contracts, ruff, mypy, dead code (vulture)
	$(BIN)/buf lint gen/nerava.binpb --path nerava
	git show $(CONTRACTS_BASE):gen/nerava.binpb > $(VENV)/contracts-base.binpb
	$(BIN)/buf breaking gen/nerava.binpb --against $(VENV)/contracts-base.binpb --path nerava
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) -m mypy
	$(PY) -m tools.dead_code

proto: $(STAMP)  ## regenerate gen/ from proto/, and the gateway config and descriptor copies under deploy/k8s
	$(PY) tools/genproto.py
	$(PY) -m tools.k8s_check --write

bench-runtime: $(STAMP)  ## the shared runtime's CPU per call vs a bare grpc.aio server, Envoy's vs a direct response and a plain proxy (h2load, wrk) → bench/results/runtime.json
	$(PY) -m bench.runtime

bench-gateway: $(STAMP)  ## GetMe over direct gRPC vs through Envoy → bench/results/gateway.json
	$(PY) -m bench.gateway

bench-ledger: $(STAMP)  ## PostTransfer throughput vs a bare-SQL (asyncpg) ceiling → bench/results/ledger.json
	$(PY) -m bench.ledger

bench-incentives: $(STAMP)  ## EvaluateSession p50/p99 at 100/1,000/10,000 campaigns vs a primary-key read → bench/results/incentives.json
	$(PY) -m bench.incentives

bench-poll: $(STAMP)  ## PollChargingState for 10,000 drivers (fake fleet), direct gRPC vs Envoy, 1 and 2 processes, vs redis-benchmark → bench/results/poll.json
	$(PY) -m bench.poll

bench-watch: $(STAMP)  ## the session watcher over 10,000 active sessions (fake fleet), 1 and 2 sessions processes: reads/s, CPU per read → bench/results/watch.json
	$(PY) -m bench.watch

bench-checkout: $(STAMP)  ## RedeemAtCheckout, 1,000 drivers at 5 merchants through Envoy, vs the ledger transfer alone; answers checked against the rows → bench/results/checkout.json
	$(PY) -m bench.checkout

ledger-check: $(STAMP)  ## ledger invariants on DATABASE_URL (Σ debits = Σ credits, balances = entries, none < 0)
	$(PY) -m services.ledger.invariants

reconcile: $(STAMP)  ## money between services on DATABASE_URL (+ Stripe with STRIPE_API_KEY/STRIPE_API_BASE): budgets, grants, redemptions, payments, payouts vs the ledger; exit 1 with the offending ids (ARGS="--since 2026-12-07T00:00:00+00:00")
	$(PY) -m services.reconcile $(ARGS)

outbox: $(STAMP)  ## the outboxes' dead-letter lists on DATABASE_URL; ARGS="--service ledger --replay all" puts rows back in the queue
	$(PY) -m services.common.outbox_cli $(ARGS)

k8s-check: $(STAMP)  ## render deploy/k8s overlays (kubectl kustomize), kubernetes-validate --strict, deployment policies, promtool on the alerts
	$(PY) -m tools.k8s_check
	$(PY) -m pytest -q tests/deploy/test_manifests.py tests/deploy/test_images.py tests/deploy/test_capacity.py tests/deploy/test_alerts.py

capacity: $(STAMP)  ## recompute docs/capacity.md's table from bench/results (tools/capacity.py)
	$(PY) -m tools.capacity --write docs/capacity.md

clean:
	rm -rf build .run
