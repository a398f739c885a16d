# Gatehouse: `make run` serves the embedded default, `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The production configuration the suite runs against a second time (SPEC §3).
PROD_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/gatehouse
PROD_REDIS_URL ?= redis://127.0.0.1:6379/15
PROD_ENV = GATEHOUSE_TEST_PROFILE=production DATABASE_URL=$(PROD_DATABASE_URL) \
	REDIS_URL=$(PROD_REDIS_URL) GATEHOUSE_INFERENCE_EXECUTOR=celery

.PHONY: install browser run bootstrap test test-embedded test-production test-reliability lint deploy-check restore-drill format bench bench-gpu clean promtool

install: $(STAMP)

$(STAMP): pyproject.toml deploy/install-torch.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	deploy/install-torch.sh $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py bootstrap --print-urls
	$(VENV)/bin/uvicorn gatehouse.asgi:application --host 127.0.0.1 --port 8000 --lifespan on --timeout-graceful-shutdown 25 --ws-max-size 66560 --ws-per-message-deflate false

bootstrap: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap

test: install browser promtool lint deploy-check test-embedded test-production test-reliability

# What a release is checked against before it ships: Django's deployment check on production
# settings (throwaway keys: nothing is signed), the Kubernetes manifests against the API's
# schemas, the compose file against the Compose specification, the PrometheusRule and KEDA's
# ScaledObject and TriggerAuthentication against their CRDs' schemas (vendored in
# deploy/monitoring/schemas/ and deploy/k8s/schemas/). tests/deploy/ checks more.
deploy-check: install
	@echo "== deploy checks: check --deploy, Kubernetes manifests, compose file"
	DEBUG=false ALLOWED_HOSTS=gatehouse.example.com \
	SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') \
	JWT_SIGNING_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') \
	GATEHOUSE_ENCRYPTION_KEYS=main:$$($(PY) -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())') \
	$(PY) manage.py check --deploy --fail-level WARNING
	$(VENV)/bin/kubernetes-validate --strict --kubernetes-version 1.31.0 deploy/k8s/*.yaml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(VENV)/bin/check-jsonschema --schemafile deploy/monitoring/schemas/prometheusrule-v1.json \
		deploy/k8s/monitoring/prometheusrule.yaml
	$(VENV)/bin/kubernetes-validate --strict --kubernetes-version 1.31.0 deploy/k8s/autoscaling/broker-secret.yaml
	$(VENV)/bin/check-jsonschema --schemafile deploy/k8s/schemas/scaledobject-v1alpha1.json \
		deploy/k8s/autoscaling/inference-*.yaml
	$(VENV)/bin/check-jsonschema --schemafile deploy/k8s/schemas/triggerauthentication-v1alpha1.json \
		deploy/k8s/autoscaling/trigger-authentication.yaml

# Back up a populated stack as the backup jobs do (audit material, then pg_dump), restore it into
# a fresh database with pg_restore, and prove audit_verify passes and a chat runs there
# (gatehouse.restore_drill). Scratch databases on DRILL_SERVER, dropped afterwards; pg_dump
# and pg_restore must be of the server's major version. docs/production.md, "Backups".
DRILL_SERVER ?= postgres://postgres@127.0.0.1:5432
restore-drill: install
	$(PY) -m gatehouse.restore_drill --server $(DRILL_SERVER)

# Debian's Chromium for the console's browser tests (tests/e2e/test_console_browser.py).
browser:
	deploy/install-chromium.sh

# Debian's promtool for the alerting rules' checks and unit tests (tests/deploy/test_alert_rules.py).
promtool:
	deploy/install-promtool.sh

lint: install
	mkdir -p .typecheck && ln -sfn ../platform .typecheck/gatehouse
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-embedded: install
	@echo "== test suite: embedded default (SQLite, in-memory channel layer, in-process executor)"
	$(PY) -m pytest

test-production: install
	@echo "== test suite: production configuration (PostgreSQL, Redis, a real Celery worker)"
	$(PROD_ENV) $(PY) -m pytest

# Faults, fuzzing, websocket abuse and a bounded soak, on the production configuration
# (tests/reliability/ and the tests marked `reliability` elsewhere). SOAK_SECONDS sets the soak.
SOAK_SECONDS ?= 120
test-reliability: install
	@echo "== reliability suite: faults, fuzzing, abuse, soak (production configuration)"
	$(PROD_ENV) GATEHOUSE_SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest -m reliability

# SPEC §8 side by side; production-like where PostgreSQL and Redis answer, embedded otherwise.
# `make bench BENCH_ARGS=--profile` also samples the server per goal (var/bench/profiles/).
BENCH_ARGS ?=
bench: install
	DATABASE_URL=$(PROD_DATABASE_URL) REDIS_URL=$(PROD_REDIS_URL) $(PY) -m bench $(BENCH_ARGS)

# The CUDA path, on a machine with a GPU: P3 and P5 with the served model and the baselines on
# the GPU in bf16, and decode tokens/s against the memory-bandwidth roofline (bench/gpu.py).
# Refuses at once where torch sees no CUDA device.
bench-gpu: install
	DATABASE_URL=$(PROD_DATABASE_URL) REDIS_URL=$(PROD_REDIS_URL) $(PY) -m bench --gpu --goals P3,P5 $(BENCH_ARGS)

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
