# mlops-kit: `make help` lists the targets. Everything runs from the project virtualenv (.venv),
# which the first target that needs it creates from requirements/dev.lock.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ENV ?= local
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
MLOPSKIT := $(BIN)/mlopskit
VENV_STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/scripts
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST) | sort

# The project itself goes in editable (the `mlopskit` command), on the lock's setuptools.
$(VENV_STAMP): requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

.PHONY: venv
venv: $(VENV_STAMP) ## Create .venv with the pinned tools

.PHONY: lock
# Pins already locked stay: a package added to a .in file moves nothing else. UPGRADE=1
# re-resolves every package (new releases, security fixes).
lock: $(VENV_STAMP) ## Resolve requirements/*.in and images/mlflow/requirements.in into lock files (UPGRADE=1: all anew)
	$(MLOPSKIT) deps lock $(if $(UPGRADE),--upgrade)

.PHONY: images
# MLFLOW_VERSION=X.Y.Z (on the command line, so also in the environment of what runs) builds
# and deploys MLflow at another release than images/versions.env (docs/operations.md, Upgrade);
# POSTGRESQL_MAJOR=N the same for PostgreSQL (built on the Debian release that ships it).
images: $(VENV_STAMP) ## Build the three service images (no registry needed; MLFLOW_VERSION=X.Y.Z, POSTGRESQL_MAJOR=N: other versions)
	$(MLOPSKIT) image build

.PHONY: generate
generate: $(VENV_STAMP) ## Write the tables, defaults and limits generated from images/contract.yaml
	$(MLOPSKIT) contract generate

.PHONY: lint
lint: $(VENV_STAMP) ## ruff, shellcheck, yamllint and a check that generated files are fresh
	$(MLOPSKIT) contract generate --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	git ls-files -z --cached --others --exclude-standard '*.sh' '.ci/run' | xargs -0 -r $(BIN)/shellcheck -x
	$(BIN)/yamllint --strict .

.PHONY: test-unit
test-unit: $(VENV_STAMP) ## Unit tests of pure logic (no Docker)
	$(BIN)/pytest tests/unit

.PHONY: test-images
test-images: images ## Run each image hardened under a random UID, against real peers
	$(BIN)/pytest tests/images

.PHONY: test-images-and-chart
# The image tests mostly wait for containers while the chart tests keep one core busy with helm:
# side by side they take about the image tests' time (each one's output is printed when it ends).
test-images-and-chart: ## test-images and test-chart side by side
	$(MAKE) --no-print-directory -j2 --output-sync=target test-images test-chart

.PHONY: test
test: lint test-unit cluster-prebuild test-images-and-chart test-e2e test-cluster ## Everything CI runs

include $(sort $(wildcard mk/*.mk))
