# Coffee order API: the two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
# `make run PROFILE=release` for an optimised server.
PROFILE ?= dev
BIN_DIR := target/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
# Seconds of load in the soak: the short one inside `make test`, the long one
# of `make soak` (`make soak SOAK_SECS=3600`).
SHORT_SOAK_SECS := 60
SOAK_SECS ?= 600

.PHONY: help hooks services test-tools cluster cluster-down cluster-test failover-test run migrate test lint check-architecture unit e2e soak contract docs-check up down bench stop-local

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

hooks: ## Run the fast checks (fmt, architecture, clippy) before each commit (.githooks/pre-commit)
	git config core.hooksPath .githooks

services: ## Make sure PostgreSQL and Redis are reachable (starting them if needed)
	@scripts/services.sh ensure

run: services ## Run the API (migrations applied) with the mock collector beside it
	$(CARGO) build --profile $(PROFILE) --bin coffee --bin mock-collector
	$(BIN_DIR)/coffee migrate
	@scripts/run.sh $(BIN_DIR)

migrate: services ## Create the database if needed and apply pending migrations
	$(CARGO) run --profile $(PROFILE) --bin coffee -- migrate

test: services test-tools lint ## Everything CI checks: fmt, clippy, architecture, all tests, the short soak, both failovers, the contract fuzzer
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast
	SOAK_SECS=$(SHORT_SOAK_SECS) target/debug/soak
	target/debug/failover
	@scripts/contract.sh
	@scripts/docs-check.sh

lint: check-architecture ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check-architecture: ## Fail if domain/ports/application depend on infrastructure
	@scripts/check-architecture.sh

unit: ## Only the tests that need no server (domain, application, http)
	$(CARGO) test -p coffee-domain -p coffee-application -p coffee-http

test-tools: ## Install what the tests need from Debian's packages when missing (faketime, locales)
	@scripts/test-tools.sh

e2e: services test-tools ## End-to-end tests against the built binaries
	$(CARGO) build --workspace --bins
	$(CARGO) test -p coffee-e2e

soak: services ## 3 instances, 200 customers, faults, then every invariant checked (SOAK_SECS, default 600)
	$(CARGO) build --profile $(PROFILE) --workspace --bins
	SOAK_SECS=$(SOAK_SECS) $(BIN_DIR)/soak

contract: services ## Fuzz the running API against its own OpenAPI document (schemathesis, all checks)
	@scripts/contract.sh

docs-check: services ## Render /docs in headless Chromium, screenshot it, check it lists the routes
	@scripts/docs-check.sh

up: ## Start PostgreSQL, Redis and the mock collector with docker compose
	docker compose -p coffee -f docker/compose.yml up -d

down: ## Stop the docker compose services
	docker compose -p coffee -f docker/compose.yml down

cluster: services ## CLUSTER_SIZE instances (default 3) behind HAProxy, with the mock collector; prints the balancer's URL
	$(CARGO) build --profile $(PROFILE) --bin coffee --bin mock-collector
	@scripts/cluster.sh up $(BIN_DIR)

failover-test: services test-tools ## Both failovers under load (Redis via Sentinel, PostgreSQL to its synchronous standby), TLS on, behind HAProxy
	$(CARGO) build --workspace --bins
	target/debug/failover

cluster-test: services test-tools ## The cluster test (rolling restart, SIGKILL behind HAProxy) for CLUSTER_TEST_ROUNDS rounds (default 5)
	$(CARGO) build --workspace --bins
	CLUSTER_TEST_ROUNDS=$${CLUSTER_TEST_ROUNDS:-5} $(CARGO) test -p coffee-e2e --test cluster -- --nocapture

cluster-down: ## Stop what `make cluster` started
	@scripts/cluster.sh down

stop-local: ## Stop throwaway servers that `make services` started under .local/
	@scripts/services.sh stop-local

bench: services ## Run the benchmarks under bench/ (figures go to bench/RESULTS.md)
	@bench/run.sh
