# One place for every command a developer or CI runs. `make test` is exactly what CI runs.
SHELL := /bin/bash
PYTHON313 ?= $(shell command -v python3.13 2>/dev/null || echo $(HOME)/.pyenv/versions/3.13.0/bin/python)
VENV := .venv
LS_VENV := .venv-localstack
PY := $(VENV)/bin/python

BENCH_NOTE ?=
STATE := .conveyor

.PHONY: run install nginx redis asyncapi chromium prometheus test lint types deploy-check docs unit integration bench bench-quick report lock clean openapi

run: install  ## install what is missing, then run LocalStack + queues + writer + processor
	CONVEYOR_LOCALSTACK_PYTHON=$(LS_VENV)/bin/python $(VENV)/bin/conveyor dev

install:  ## both virtual environments, built side by side (each pip spends much of its time waiting)
	$(MAKE) --no-print-directory -j2 $(VENV)/.installed $(LS_VENV)/.installed

nginx:  ## Debian's nginx, for the gateway tests (installed if missing, never started as a service)
	bash deploy/nginx/install.sh

redis:  ## Debian's redis-server, for the idempotency store tests (installed if missing, never left running as a service)
	bash deploy/redis/install.sh

chromium:  ## Debian's chromium and chromium-driver, for the console's browser tests (installed if missing)
	bash deploy/chromium/install.sh

prometheus:  ## Debian's prometheus package, for promtool (the alert rules' checks and unit tests; never started as a service)
	bash deploy/prometheus/install.sh

asyncapi:  ## the AsyncAPI project's parser (npm, pinned in deploy/asyncapi), for the AsyncAPI document's test (installed if missing)
	bash deploy/asyncapi/install.sh

$(VENV)/.installed: pyproject.toml requirements/dev.lock
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/dev.lock -e '.[dev]'
	touch $@

# The same code as `conveyor dev`'s first-run install (conveyor/localstack_install.py), run by the
# system's Python 3.13 straight from src/ (it needs nothing but the standard library).
$(LS_VENV)/.installed: src/conveyor/localstack.lock src/conveyor/localstack_install.py
	PYTHONPATH=src $(PYTHON313) -m conveyor.localstack_install --venv $(LS_VENV)
	touch $@

# The quick comparative benchmark runs in CI too; its results go to $(STATE)/ (not to the committed
# history), the gate fails only on what does not depend on the machine's speed, and the report is
# built from them to $(STATE)/quality/ (its last line is the test counts of the JUnit files).
# The integration and e2e modules share nothing (each pytest-xdist worker starts its own LocalStack,
# redis-server and nginx on free ports) and spend most of their time waiting on timeouts and
# processes, so three workers run them side by side on two cores; a module stays on one worker.
E2E_WORKERS ?= 3
test: install nginx redis asyncapi chromium lint types deploy-check docs  ## everything CI checks: lint, types, configs, unit, bench gate, integration, e2e
	$(PY) -m pytest -m "not integration and not e2e" -q -n 2 --junitxml=$(STATE)/junit-unit.xml tests
	$(PY) -m bench.run --quick --results $(STATE)/bench-ci.jsonl
	$(PY) -m bench.gate --results $(STATE)/bench-ci.jsonl
	$(PY) -m pytest -m "integration or e2e" -q -n $(E2E_WORKERS) --dist loadfile --junitxml=$(STATE)/junit-e2e.xml tests
	$(PY) -m bench.report --results bench/results.jsonl $(STATE)/bench-ci.jsonl --out $(STATE)/quality

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench harness
	$(VENV)/bin/ruff format --check src tests bench harness

types: $(VENV)/.installed
	$(VENV)/bin/mypy

# The kustomize base's manifests (the CRDs' objects and the overlay are checked by the unit tests).
K8S_CORE := $(filter-out %/kustomization.yaml %/keda.yaml %/monitoring.yaml %/prometheusrule.yaml,$(wildcard deploy/kubernetes/base/*.yaml))

deploy-check: $(VENV)/.installed prometheus  ## the deployable references: CloudFormation, Kubernetes, Dockerfile, API keys, alert rules
	$(VENV)/bin/cfn-lint deploy/aws/conveyor.yaml
	$(VENV)/bin/kubernetes-validate --strict --quiet -k 1.30.0 $(K8S_CORE)
	$(VENV)/bin/kubernetes-validate --strict --quiet $(K8S_CORE)
	if command -v kubectl >/dev/null; then kubectl kustomize deploy/kubernetes/base >/dev/null; fi
	$(VENV)/bin/hadolint --config deploy/hadolint.yaml deploy/Dockerfile deploy/Dockerfile.handler
	sh deploy/nginx/check-api-keys.sh deploy/nginx/api-keys.example
	promtool check rules deploy/prometheus/conveyor.rules.yaml
	promtool test rules deploy/prometheus/conveyor.rules.test.yaml

docs: $(VENV)/.installed  ## the docs site into .conveyor/site (strict: a broken link or a page left out of the nav fails)
	@# not --quiet: it hides the warnings, and --strict then has none to fail on
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict 2>&1 | { grep -v '^INFO' || true; }; test $${PIPESTATUS[0]} -eq 0

unit: $(VENV)/.installed
	$(PY) -m pytest -m "not integration and not e2e" -q tests

integration: install nginx redis asyncapi chromium
	$(PY) -m pytest -m "integration or e2e" -q -n $(E2E_WORKERS) --dist loadfile tests

bench: install redis  ## Conveyor and the naive baselines side by side (about 7 min); appends to bench/results.jsonl
	$(PY) -m bench.run --note "$(BENCH_NOTE)"
	$(PY) -m bench.gate
	$(PY) -m bench.run --only idempotency_store processes

bench-quick: install redis  ## the same comparisons, short (about 80 s), as CI runs them; appends to bench/results.jsonl
	$(PY) -m bench.run --quick --note "$(BENCH_NOTE)"
	$(PY) -m bench.gate

report: $(VENV)/.installed  ## docs/quality/index.md and its plots, from bench/results.jsonl and the last make test
	$(PY) -m bench.report

lock:  ## rebuild both lock files from scratch
	rm -rf /tmp/conveyor-lock && $(PYTHON313) -m venv /tmp/conveyor-lock/dev && $(PYTHON313) -m venv /tmp/conveyor-lock/ls
	/tmp/conveyor-lock/dev/bin/pip install --quiet -e '.[dev]'
	/tmp/conveyor-lock/ls/bin/pip install --quiet -r requirements/localstack.in
	{ echo '# pip freeze of a venv built from `pip install -e .[dev]`; used as constraints; regenerate with `make lock`'; \
	  /tmp/conveyor-lock/dev/bin/pip freeze --exclude-editable; } > requirements/dev.lock
	{ echo '# pip freeze of a venv built from requirements/localstack.in; regenerate with `make lock`'; \
	  /tmp/conveyor-lock/ls/bin/pip freeze; } > src/conveyor/localstack.lock

clean:
	rm -rf $(VENV) $(LS_VENV) .mypy_cache .ruff_cache .pytest_cache

openapi: $(VENV)/.installed  ## regenerate docs/openapi.json from the app (a test keeps it in sync)
	$(PY) -c "import json; from conveyor.settings import WriterSettings; from conveyor.writer.app import create_app; \
	print(json.dumps(create_app(WriterSettings()).openapi(), indent=2, sort_keys=True))" > docs/openapi.json
