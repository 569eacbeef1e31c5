# Real-time telemetry and decisioning for last-mile delivery fleets.
# `make demo` and `make test` each do all set-up on a fresh machine first (`make setup`).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DRIVERS ?= 200
DURATION ?= 180
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help setup demo demo-secure test lint typecheck unit integration bench eta infra-up infra-down infra-status clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed ## All set-up: venv, packages, redis-server/prometheus/mosquitto, Kafka jars, the compiled solver search
	@command -v java >/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
	@command -v redis-server >/dev/null && command -v prometheus >/dev/null && { command -v mosquitto || test -x /usr/sbin/mosquitto; } >/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server prometheus mosquitto >/dev/null; }
	@command -v mvn >/dev/null || ls var/kafka-libs/kafka_2.13-*.jar >/dev/null 2>&1 || { \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq maven >/dev/null; }
	@command -v gcc >/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq gcc >/dev/null; }
	@$(BIN)/python -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' 2>/dev/null || { \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-dev >/dev/null; }
	$(BIN)/python -m decision.sisr_build
	$(BIN)/fleet infra fetch

demo: setup ## A day of DRIVERS=200 through the pipeline (DURATION=180 s): live story, report in var/demo-report/
	$(BIN)/python -m load_tests.demo --drivers $(DRIVERS) --duration $(DURATION)

demo-secure: setup ## The demo in the secure profile: SASL_SSL with ACLs, TLS Redis (docs/security.md)
	$(BIN)/python -m load_tests.demo --secure --drivers $(DRIVERS) --duration $(DURATION)

test: setup ## ruff, mypy, then pytest (unit + integration on the real services it starts)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: ## ruff only
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: ## mypy over the configured packages
	$(BIN)/mypy

unit: ## Unit tests only (no services)
	$(BIN)/pytest -q tests/unit

integration: setup ## Integration tests only (real Kafka, Redis, ClickHouse engine)
	$(BIN)/pytest -q -p no:cacheprovider tests/integration

bench: setup ## Benchmarks (figures go to docs/benchmarks.md)
	$(BIN)/python -m load_tests.bench_ingest

# The ETA loop on simulated history (docs/eta.md): 16 days written into the configured
# history store, a model trained on the first 14, evaluated on the last 2, promoted if it
# passes its checks. Stop a worker that owns the embedded store first (or set
# FLEET_CLICKHOUSE_URL); FLEET_VAR_DIR=/tmp/eta keeps it apart from other data.
ETA_START ?= 2026-10-05
ETA_TRAIN_UNTIL ?= 2026-10-19
ETA_UNTIL ?= 2026-10-21
eta: setup ## ETA loop: simulate history, train, evaluate on held-out days, promote if it passes
	$(BIN)/python -m load_tests.history_sim --days 16 --start $(ETA_START)
	@set -e; V=$$($(BIN)/fleet eta train --since $(ETA_START) --until $(ETA_TRAIN_UNTIL)); \
	  echo "trained $$V"; \
	  $(BIN)/fleet eta evaluate $$V --since $(ETA_TRAIN_UNTIL) --until $(ETA_UNTIL); \
	  $(BIN)/fleet eta promote $$V || echo "$$V not promoted: see the failed checks above"; \
	  $(BIN)/fleet eta list

infra-up: ## Start Kafka, Redis, Prometheus natively
	$(BIN)/fleet infra up
infra-down: ## Stop what infra-up started
	$(BIN)/fleet infra down
infra-status: ## Show what runs
	$(BIN)/fleet infra status

clean: infra-down ## Stop services and remove var/ (data, logs, jar cache)
	rm -rf var
