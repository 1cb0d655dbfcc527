# Set-up and everyday tasks. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-postgres test-deployment lint format emulator run worker release \
	collectstatic soak clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

## demo: the runbook's story on SQLite and the local Zoho emulator (no credentials needed)
demo: $(STAMP)
	scripts/demo.sh

## test: the test suite (SQLite; set DATABASE_URL=postgres://... for PostgreSQL) and lint
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

## test-postgres: the same suite on the local PostgreSQL
test-postgres: $(STAMP)
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/billing_sync $(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## emulator: the Zoho emulator in the foreground on port 8765
emulator: $(STAMP)
	$(PY) manage.py zoho_emulator --port 8765

## run: the admin on http://127.0.0.1:8000/admin/ (migrates first)
run: $(STAMP)
	$(PY) manage.py migrate -v 0
	$(PY) manage.py runserver

## worker: the django-q2 cluster that runs the schedules and queued syncs
worker: $(STAMP)
	$(PY) manage.py migrate -v 0
	$(PY) manage.py qcluster

## release: the Procfile's release step (migrate, then the zoho-sync schedule), with this venv
release: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" deploy/release.sh

## collectstatic: the admin's CSS and JS into DJANGO_STATIC_ROOT (var/static), as the image does
collectstatic: $(STAMP)
	$(PY) manage.py collectstatic --noinput

## test-deployment: the production layout alone (the Procfile's commands run, compose read)
test-deployment: $(STAMP)
	$(VENV)/bin/pytest tests/test_deployment.py

## soak: 1,000 customers against the emulator with 5% random faults of every kind
soak: $(STAMP)
	$(PY) bench/soak.py --customers 1000 --fault-rate 0.05

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
