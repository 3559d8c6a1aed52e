# Interlock: `make run` starts everything on embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python manage.py serve

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python bench/intake.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/end_to_end.py
	$(BIN)/python bench/file_drop.py --rows 100000
	$(BIN)/python bench/db_poll.py --rows 10000
	$(BIN)/python bench/redaction.py

clean:
	rm -rf $(VENV) var/static
