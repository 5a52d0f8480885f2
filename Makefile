# One command locally and in the pipeline. Every target installs what it needs, once:
# the stamps below make a second run reinstall nothing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
CONFIG ?= config/default.toml
SUFFIX ?=

# The pinned Node LTS from node_modules comes first, so jsii runs on a supported Node.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export CDK_DISABLE_VERSION_CHECK := true
export CDK_DISABLE_CLI_TELEMETRY := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := node_modules/.bin/cdk

.PHONY: help setup synth accept-listener-rules destroy test lint clean lock policies bootstrap deploy scan scan-pipeline pin-base doctor diff diagram bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(PY_STAMP) $(NODE_STAMP) ## Create .venv and node_modules from the pinned lock files

$(PY_STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
	  || { echo "error: Python 3.11 or newer is needed as '$(PYTHON)' (set PYTHON=...)." >&2; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the pinned Python packages into $(VENV) (hashes checked); about a minute on a fresh clone:"
	@$(VENV)/bin/python -m pip install --require-hashes --progress-bar off \
	  -r requirements.txt -r requirements-dev.txt | { grep --line-buffered -E '^(Collecting|Installing|Successfully)' || true; }
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "error: npm (Node.js 20 or newer) is needed." >&2; exit 1; }
	@echo "Installing Node 22 and the pinned CDK CLI into node_modules (npm ci from the lock file)..."
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

synth: setup ## Synthesize cdk.out/ from CONFIG (default config/default.toml); SUFFIX=name optional
	@$(VENV)/bin/python -m ops.synth --config "$(CONFIG)" --suffix "$(SUFFIX)"

accept-listener-rules: setup ## After an intended listener-rule change: record the rules CONFIG renders now (README)
	@$(VENV)/bin/python -m ops.synth --config "$(CONFIG)" --suffix "$(SUFFIX)" --accept-listener-rules

test: setup lint ## Lint, then run the test suite (templates, compliance, config, the service)
	$(VENV)/bin/python -m pytest

scan: synth ## Trivy with the pinned, verified binary: secrets, Dockerfile, templates (offline parts)
	$(VENV)/bin/python -m ops.scan

pin-base: $(PY_STAMP) ## Pin service/runtime/Dockerfile's base image by digest (needs the registry, public.ecr.aws)
	$(VENV)/bin/python -m ops.pin_base

scan-pipeline: $(PY_STAMP) ## The pipeline's SecurityScan step: everything, including the published image by digest (pipeline only)
	$(VENV)/bin/python -m ops.scan --image --cdk-out cdk.out --reports scan-reports

bootstrap: setup ## Print (or with APPLY=1 run) the account bootstrap for CONFIG
	$(VENV)/bin/python -m ops.bootstrap "$(CONFIG)" $(if $(APPLY),--apply)

bench: setup ## Measure synth times, the critical path, release durations, the test suite (build/bench/)
	$(VENV)/bin/python -m ops.bench

diagram: setup ## Draw the pipeline and trust pictures from cdk.out/ as it is (docs/ for the default config, else build/diagram/)
	@test -d cdk.out || $(MAKE) --no-print-directory synth
	$(VENV)/bin/python -m ops.diagram

destroy: synth ## Delete STAGE's stack: a dry run unless APPLY=1; production also needs CONFIRM=<stage> (README)
	@test -n "$(STAGE)" || { echo "error: name the stage: make destroy STAGE=<name> [APPLY=1]" >&2; exit 2; }
	$(VENV)/bin/python -m ops.destroy "$(CONFIG)" --stage $(STAGE) $(if $(SUFFIX),--suffix $(SUFFIX)) \
	  $(if $(APPLY),--apply) $(if $(CONFIRM),--confirm-production $(CONFIRM))

doctor: synth ## Preflight the real accounts of CONFIG (PROFILE= for the pipeline account): credentials, zones, bootstrap, policies, trust, connection, certificates
	$(VENV)/bin/python -m ops.doctor "$(CONFIG)" $(if $(PROFILE),--profile "$(PROFILE)")

deploy: doctor ## The one-time deploy of the pipeline stack (CONFIG, SUFFIX, PROFILE=pipeline profile); refuses if doctor fails
	$(CDK) deploy --app cdk.out --no-notices $(if $(PROFILE),--profile "$(PROFILE)") \
	  --require-approval broadening Pipeline

diff: synth ## cdk diff of the pipeline stack against the deployed one, with the credentials deploy uses (CONFIG, SUFFIX, PROFILE)
	$(CDK) diff --app cdk.out --no-notices $(if $(PROFILE),--profile "$(PROFILE)") Pipeline

policies: setup ## Regenerate the execution policies and pipeline boundary (policies/*.json): the example configs and cdk.out/ as it is
	@test -d cdk.out || $(MAKE) --no-print-directory synth
	$(VENV)/bin/python -m policies.execution_policy --write cdk.out

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd service/smoke && ../../$(VENV)/bin/mypy --strict --explicit-package-bases --cache-dir ../../.mypy_cache/smoke probe.py hook.py

lock: ## Re-resolve requirements*.txt (with hashes) from requirements*.in
	$(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet pip-tools==7.6.2
	.lock-venv/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe -o requirements.txt requirements.in
	.lock-venv/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe -o requirements-dev.txt requirements-dev.in
	rm -rf .lock-venv

clean: ## Remove build output (keeps .venv and node_modules)
	rm -rf cdk.out .cdk.out.partial .cdk.out.old build validation-report.json .pytest_cache .mypy_cache .ruff_cache
