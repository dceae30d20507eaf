PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install bench clean

$(BIN)/helpdesk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/helpdesk

install: $(BIN)/helpdesk

run: install
	$(BIN)/helpdesk run

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Benchmarks print ratios against a baseline measured in the same run (see bench/).
bench: install
	$(BIN)/python bench/ingest.py 1000
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/web.py

clean:
	rm -rf $(VENV) build *.egg-info
