# configsync — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck migrations-check install bench chaos fuzz clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# honcho gives the first Procfile entry (web) the port -p, so PORT (default 8000) reaches it; the
# venv's bin/ goes first on PATH so the Procfile's `python` and `celery` are the venv's.
# The settings create this node's folder (CONFIGSYNC_VAR_DIR, default var/) themselves.
run: $(STAMP)
	$(PY) manage.py migrate --noinput
	@url="http://127.0.0.1:$${PORT:-8000}"; \
	vars="$${CONFIGSYNC_VAR_DIR:+CONFIGSYNC_VAR_DIR=$$CONFIGSYNC_VAR_DIR }"; \
	echo ""; \
	echo "configsync: $$url/"; \
	echo "  admin:     $$url/admin/"; \
	echo "  API docs:  $$url/api/v1/docs/"; \
	echo "  no admin account yet? in another terminal, once:"; \
	echo "    $$vars$(PY) manage.py createsuperuser"; \
	echo ""
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile -p $${PORT:-8000}

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy configsync providers settings multinode

# 0.1.0 is released: a model change gets an ordinary numbered migration
# (`python manage.py makemigrations`), never a regenerated 0001. This fails when one is missing
# (so does tests/test_migrations.py).
migrations-check: $(STAMP)
	DJANGO_SETTINGS_MODULE=settings.test $(PY) manage.py makemigrations --check --dry-run

# The whole suite: the single-process tests on TEST_JOBS pytest-xdist workers (each with its own
# test database, Redis DB and var/), then the multi-node tests, which start real node processes,
# on MULTINODE_JOBS workers: --dist loadfile keeps each test module (and so its cluster) on one
# worker, and each worker's clusters have node databases and Redis DBs of their own
# (tests/support/xdist.py; with REDIS_URL set, MULTINODE_REDIS_DBS must list 3 DBs per worker:
# its default, 10-15, fits 2). PYTEST_ARGS runs exactly what it names, in one process.
TEST_JOBS ?= 2
MULTINODE_JOBS ?= 2
# SECOND_PASS=1 (CI's second pass, on the other backend) leaves out the tests marked `one_pass`:
# the database and cache under test never reach them (they build environments of their own, or
# check parsers and the browser's scripts), so they ran, the same, in the first pass.
SECOND_PASS ?=
ONE_PASS := $(if $(filter 1,$(SECOND_PASS)), and not one_pass,)
# Python's bytecode caches on, even where the environment turns them off (empty counts as unset):
# every process the suite starts would otherwise compile the project again, and every pytest
# worker would rewrite every test module's assertions again.
test: export PYTHONDONTWRITEBYTECODE =

test: $(STAMP) lint typecheck migrations-check
ifeq ($(strip $(PYTEST_ARGS)),)
	$(VENV)/bin/pytest -n $(TEST_JOBS) -m "not multinode$(ONE_PASS)" --durations=15
	$(VENV)/bin/pytest -n $(MULTINODE_JOBS) --dist loadfile -m "multinode$(ONE_PASS)" --durations=15
else
	$(VENV)/bin/pytest $(PYTEST_ARGS)
endif

bench: $(STAMP)
	$(PY) -m bench

# The long convergence run of the chaos harness (tests/chaos): more seeds, rounds and nodes than
# the short one inside `make test`. CHAOS_SEED (comma-separated, or `random`), CHAOS_ROUNDS and
# CHAOS_NODES override; a failure prints its seed: `CHAOS_SEED=<seed> make chaos` replays it.
# The model-based test (tests/chaos/test_state_machine.py) runs CHAOS_EXAMPLES examples from the
# first seed.
CHAOS_SEED ?= 1,2,3,4,5
CHAOS_ROUNDS ?= 6
CHAOS_NODES ?= 5
CHAOS_EXAMPLES ?= 40
chaos: $(STAMP)
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_NODES=$(CHAOS_NODES) \
		CHAOS_EXAMPLES=$(CHAOS_EXAMPLES) \
		$(VENV)/bin/pytest -m chaos tests/chaos -s -q --durations=5

# The parser fuzzers, long: tests/fuzz's hypothesis properties with FUZZ_EXAMPLES examples each
# (drawn anew every run; `make test` runs a fixed 60), then every atheris harness under fuzz/ for
# FUZZ_SECONDS seconds (`make test` runs each for a few hundred inputs). What a harness finds
# grows var/fuzz/corpus/<parser>/ (kept between runs); a crash stops the target and leaves its
# input in var/fuzz/ (`python fuzz/<parser>.py var/fuzz/crash-...` replays it).
FUZZ_SECONDS ?= 60
FUZZ_EXAMPLES ?= 1000
FUZZ_HARNESSES := $(filter-out fuzz/_harness.py fuzz/seeds.py,$(wildcard fuzz/*.py))

fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -q tests/fuzz --deselect tests/fuzz/test_atheris.py
	@for harness in $(FUZZ_HARNESSES); do \
		name=$$(basename $$harness .py); \
		mkdir -p var/fuzz/corpus/$$name; \
		echo "== $$name ($(FUZZ_SECONDS) s)"; \
		$(PY) $$harness var/fuzz/corpus/$$name fuzz/corpus/$$name -max_total_time=$(FUZZ_SECONDS) \
			-timeout=30 -artifact_prefix=var/fuzz/ || exit 1; \
	done

clean:
	# control/ is where older versions' broker wrote its exchange tables (now var/celery/control).
	rm -rf $(VENV) var/*.sqlite3* var/celery control
