# configsync — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck migrations-check migrations install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# honcho gives the first Procfile entry (web) the port -p, so PORT (default 8000) reaches it; the
# venv's bin/ goes first on PATH so the Procfile's `python` and `celery` are the venv's.
run: $(STAMP)
	mkdir -p var
	$(PY) manage.py migrate --noinput
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile -p $${PORT:-8000}

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy configsync providers settings multinode

migrations-check: $(STAMP)
	DJANGO_SETTINGS_MODULE=settings.test $(PY) manage.py makemigrations --check --dry-run

test: $(STAMP) lint typecheck migrations-check
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Pre-release: the initial migrations are regenerated from the models (no deployed databases yet).
migrations: $(STAMP)
	rm -f configsync/migrations/0*.py providers/migrations/0*.py
	DJANGO_SETTINGS_MODULE=settings.test $(PY) manage.py makemigrations configsync providers

bench: $(STAMP)
	$(PY) -m bench

clean:
	# control/ is where older versions' broker wrote its exchange tables (now var/celery/control).
	rm -rf $(VENV) var/*.sqlite3* var/celery control
