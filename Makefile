# The two set-up commands of the README. Each creates its own virtual environment (.venv) with
# Python 3.11 and installs the project into it, so a fresh machine needs only python3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/hypomag: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(BIN)/hypomag

install: $(BIN)/hypomag

## make demo: run the whole pipeline on data_samples/ (embedded DuckDB) and print where the report is
demo: install
	$(BIN)/hypomag demo

## make test: run the whole test suite
test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) out
