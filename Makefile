# One place for every command a developer or CI runs. `make test` is exactly what CI runs.
SHELL := /bin/bash
PYTHON313 ?= $(shell command -v python3.13 2>/dev/null || echo $(HOME)/.pyenv/versions/3.13.0/bin/python)
VENV := .venv
LS_VENV := .venv-localstack
PY := $(VENV)/bin/python

.PHONY: run install nginx test lint types deploy-check unit integration bench lock clean openapi

run: install  ## install what is missing, then run LocalStack + queues + writer + processor
	$(VENV)/bin/conveyor dev

install: $(VENV)/.installed $(LS_VENV)/.installed

nginx:  ## Debian's nginx, for the gateway tests (installed if missing, never started as a service)
	bash deploy/nginx/install.sh

$(VENV)/.installed: pyproject.toml requirements/dev.lock
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/dev.lock -e '.[dev]'
	touch $@

$(LS_VENV)/.installed: requirements/localstack.lock
	test -x $(LS_VENV)/bin/python || $(PYTHON313) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet -r requirements/localstack.lock
	touch $@

test: install nginx lint types deploy-check  ## everything CI checks: lint, types, configs, unit, integration, e2e
	$(PY) -m pytest -m "not integration and not e2e" -q tests
	$(PY) -m pytest -m "integration or e2e" -q tests

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

types: $(VENV)/.installed
	$(VENV)/bin/mypy

deploy-check: $(VENV)/.installed  ## the deployable reference: cfn-lint on the CloudFormation template
	$(VENV)/bin/cfn-lint deploy/aws/conveyor.yaml

unit: $(VENV)/.installed
	$(PY) -m pytest -m "not integration and not e2e" -q tests

integration: install nginx
	$(PY) -m pytest -m "integration or e2e" -q tests

bench: install
	$(PY) -m bench.writer
	$(PY) -m bench.processor --rss
	$(PY) -m bench.processes

lock:  ## rebuild both lock files from scratch
	rm -rf /tmp/conveyor-lock && $(PYTHON313) -m venv /tmp/conveyor-lock/dev && $(PYTHON313) -m venv /tmp/conveyor-lock/ls
	/tmp/conveyor-lock/dev/bin/pip install --quiet -e '.[dev]'
	/tmp/conveyor-lock/ls/bin/pip install --quiet -r requirements/localstack.in
	{ echo '# pip freeze of a venv built from `pip install -e .[dev]`; used as constraints; regenerate with `make lock`'; \
	  /tmp/conveyor-lock/dev/bin/pip freeze --exclude-editable; } > requirements/dev.lock
	{ echo '# pip freeze of a venv built from requirements/localstack.in; regenerate with `make lock`'; \
	  /tmp/conveyor-lock/ls/bin/pip freeze; } > requirements/localstack.lock

clean:
	rm -rf $(VENV) $(LS_VENV) .mypy_cache .ruff_cache .pytest_cache

openapi: $(VENV)/.installed  ## regenerate docs/openapi.json from the app (a test keeps it in sync)
	$(PY) -c "import json; from conveyor.settings import WriterSettings; from conveyor.writer.app import create_app; \
	print(json.dumps(create_app(WriterSettings()).openapi(), indent=2, sort_keys=True))" > docs/openapi.json
