# Gatehouse: `make run` serves the embedded default, `make test` runs everything CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The production configuration the suite runs against a second time (SPEC §3).
PROD_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/gatehouse
PROD_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install browser run bootstrap test test-embedded test-production lint format bench clean

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
	$(VENV)/bin/uvicorn gatehouse.asgi:application --host 127.0.0.1 --port 8000 --lifespan on --timeout-graceful-shutdown 25

bootstrap: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap

test: install browser lint test-embedded test-production

# Debian's Chromium for the console's browser tests (tests/e2e/test_console_browser.py).
browser:
	deploy/install-chromium.sh

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
	GATEHOUSE_TEST_PROFILE=production \
	DATABASE_URL=$(PROD_DATABASE_URL) \
	REDIS_URL=$(PROD_REDIS_URL) \
	GATEHOUSE_INFERENCE_EXECUTOR=celery \
	$(PY) -m pytest

# SPEC §8 side by side; production-like where PostgreSQL and Redis answer, embedded otherwise.
bench: install
	DATABASE_URL=$(PROD_DATABASE_URL) REDIS_URL=$(PROD_REDIS_URL) $(PY) -m bench

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
