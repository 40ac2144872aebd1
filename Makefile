# Developer and CI entry points. `make help` lists them.
VENV        := .venv
PY          := $(VENV)/bin/python
MANAGE      := $(PY) manage.py
RUFF        := $(VENV)/bin/ruff
# PYTEST_N: pytest-xdist workers (0 = one process, measured faster on 2 cores for this suite);
# PYTEST_ARGS: extra pytest arguments; SKIP_LINT=1: `make test` skips ruff.
PYTEST_N    ?= 0
PYTEST_ARGS ?=
SKIP_LINT   ?=

.DEFAULT_GOAL := help
.PHONY: help install run run-prod test lint fmt lock clean clean-db

help:
	@echo "make install   create $(VENV) (Python >= 3.12) and install the project with its dev tools"
	@echo "make run       migrate, seed demo data, start web + worker on http://127.0.0.1:$${PORT:-8000}/"
	@echo "make run-prod  the same on local PostgreSQL + Redis, with 2 gunicorn and 2 qcluster processes"
	@echo "make test      ruff, migrations check, pytest (PYTEST_ARGS=..., PYTEST_N=2, SKIP_LINT=1)"
	@echo "make lint      ruff check + ruff format --check"
	@echo "make fmt       ruff check --fix + ruff format"
	@echo "make lock      regenerate requirements.lock from a fresh venv"
	@echo "make clean     remove $(VENV), staticfiles, var (keeps db.sqlite3; make clean-db removes it too)"

install: $(VENV)/.installed

# Reuse an existing venv only if it runs Python >= 3.12; otherwise (re)create it.
$(VENV)/.installed: pyproject.toml requirements.lock
	@$(PY) -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null || { \
		py="$$(bash scripts/find-python)" || exit 1; \
		echo "Creating $(VENV) with $$py"; rm -rf $(VENV) && "$$py" -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[dev]"
	@touch $@

run: install
	mkdir -p var
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) seed_demo --token-file var/demo_api_token --history $${DEMO_HISTORY_DAYS:-60}
	exec $(PY) scripts/run.py

# The production-like topology: the PostgreSQL and Redis that CI uses (scripts/ensure-*, started or
# reused), with the database settings production uses, whatever a .env says; always the simulator.
run-prod: export DATABASE_URL := postgres://backoffice:backoffice@127.0.0.1:5432/backoffice
run-prod: export REDIS_URL := redis://127.0.0.1:6390/0
run-prod: export DATABASE_CONN_MAX_AGE := 600
run-prod: export DATABASE_CONN_HEALTH_CHECKS := true
run-prod: export MPESA_ENVIRONMENT := simulator
run-prod: install
	bash scripts/ensure-postgres
	bash scripts/ensure-redis
	mkdir -p var
	$(MANAGE) migrate --noinput
	$(MANAGE) collectstatic --noinput -v0
	$(MANAGE) seed_demo --token-file var/demo_api_token --history $${DEMO_HISTORY_DAYS:-60}
	exec $(PY) scripts/run.py --prod

test: install $(if $(SKIP_LINT),,lint)
	@test -x /usr/bin/chromium || echo "NOTE: /usr/bin/chromium is missing, so browser tests are skipped (scripts/ensure-chromium installs it)."
	DJANGO_SETTINGS_MODULE=backoffice.settings_test $(MANAGE) makemigrations --check --dry-run
	$(PY) -m pytest -q $(if $(filter-out 0,$(PYTEST_N)),-n $(PYTEST_N)) $(PYTEST_ARGS)

lint: install
	$(RUFF) check .
	$(RUFF) format --check .

fmt: install
	$(RUFF) check --fix --exit-zero .
	$(RUFF) format .
	$(RUFF) check .

lock:
	rm -rf $(VENV)-lock
	"$$(bash scripts/find-python)" -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install -q --upgrade pip
	$(VENV)-lock/bin/python -m pip install -q -e ".[dev]"
	{ sed -n '/^#/p' requirements.lock; $(VENV)-lock/bin/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf $(VENV)-lock
	@echo "requirements.lock regenerated; run 'make install' to apply it."

clean:
	rm -rf $(VENV) $(VENV)-lock staticfiles var .pytest_cache .ruff_cache *.egg-info

clean-db: clean
	rm -f db.sqlite3 db.sqlite3-journal db.sqlite3-wal db.sqlite3-shm
