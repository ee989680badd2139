# The two commands: `make run` (serve the embedded default) and `make test` (the whole suite).
# Both build .venv on first use; they re-install only when a requirements file changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint worker beat serve-uvicorn bench clean

help:
	@echo "make run    create .venv, migrate, seed the demo, serve on http://$(HOST):$(PORT)/ (Daphne)"
	@echo "make test   run the test suite (SQLite + in-memory layer, or DATABASE_URL / REDIS_URL)"
	@echo "make worker / make beat   Celery worker and beat (need REDIS_URL or CELERY_BROKER_URL)"
	@echo "make lint   ruff"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.base-installed: requirements/base.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.dev-installed: requirements/base.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $(VENV)/.base-installed $@

run: $(VENV)/.base-installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo ""
	@echo "AI Professor: http://$(HOST):$(PORT)/   admin: http://$(HOST):$(PORT)/admin/   API docs: http://$(HOST):$(PORT)/api/docs/"
	@echo "Press Ctrl-C to stop."
	$(BIN)/daphne --bind $(HOST) --port $(PORT) tutor_project.asgi:application

test: $(VENV)/.dev-installed
	@$(BIN)/python -c "import os; print('make test: database =', 'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'SQLite (no DATABASE_URL)', '| channel layer =', 'Redis pub/sub (REDIS_URL)' if os.environ.get('REDIS_URL') else 'in-memory (no REDIS_URL)', '| services required =', os.environ.get('REQUIRE_SERVICES', '0'))"
	$(BIN)/python manage.py makemigrations --check --dry-run --verbosity 0
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

worker: $(VENV)/.base-installed
	$(BIN)/celery -A tutor_project worker --loglevel INFO

beat: $(VENV)/.base-installed
	$(BIN)/celery -A tutor_project beat --loglevel INFO

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
