# DentiaPro entry points. Every target installs what it needs (uv, then the locked workspace).
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(HOME)/.local/bin/uv
endif
export UV_LINK_MODE ?= copy
PYTHON ?= python3
PYTEST_WORKERS ?= 2
TEST_PATHS := libs/common/tests services/auth/tests services/tenants/tests services/clinic/tests gateway/tests cli/tests deploy/tests tests/e2e tests/bench

.PHONY: help install run test lint fmt migrate bench fuzz

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# uv from pip into ~/.local (a Python marked externally-managed, as Debian's is, needs the
# override: --user never touches the system's packages); failing that, or where pip puts it
# elsewhere (macOS), uv's own installer, which installs into ~/.local/bin.
$(UV):
	$(PYTHON) -m pip install --user --quiet uv 2>/dev/null \
	  || $(PYTHON) -m pip install --user --quiet --break-system-packages uv
	test -x $(UV) || curl -LsSf https://astral.sh/uv/install.sh | sh

install: $(UV) ## install uv and the locked workspace into .venv
	@$(UV) sync --frozen --quiet

run: install ## start the whole system on SQLite under ./var (Ctrl-C stops it)
	@$(UV) run --frozen python scripts/run.py

test: install ## run every test suite (SQLite, and PostgreSQL when reachable)
	$(UV) run --frozen pytest -n $(PYTEST_WORKERS) $(wildcard $(TEST_PATHS))

lint: install ## ruff check, ruff format check, mypy
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy libs/common/common services/auth/auth services/tenants/tenants services/clinic/clinic gateway/edge cli/dentiapro_cli

fmt: install ## format and fix what ruff can
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

migrate: install ## apply every migration: tenants, auth, each clinic tenant (MIGRATE_ARGS="--help")
	$(UV) run --frozen dentiapro migrate $(MIGRATE_ARGS)

# The same Schemathesis run as CI's (tests/e2e/test_openapi_fuzz.py), with a long budget:
# FUZZ_SECONDS per run of Schemathesis (two on the gateway's merged document: the tenant
# member's operations, then the superuser's), examples permitting: about ten minutes in all.
fuzz: install ## fuzz every operation with Schemathesis for ~10 minutes (FUZZ_SECONDS, FUZZ_MAX_EXAMPLES)
	FUZZ_SECONDS=$${FUZZ_SECONDS:-290} FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} \
	  $(UV) run --frozen pytest -p no:xdist tests/e2e/test_openapi_fuzz.py

bench: install ## benchmark the whole system on PostgreSQL beside the DRF peer (docs/performance.md)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(UV) run --frozen python scripts/bench.py $(BENCH_ARGS)
