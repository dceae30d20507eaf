PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check install bench clean translations

$(BIN)/helpdesk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/helpdesk

install: $(BIN)/helpdesk

run: install
	$(BIN)/helpdesk run

test: install
	$(BIN)/python -m pytest -q --durations=25 $(PYTEST_ARGS)

# Types (mypy, strict on core and mailgateway), lint (ruff) and the import rule web -> core <- mailgateway.
# Settings in pyproject.toml; tools/typecheck.py shows mypy the installed names (helpdesk.core, ...).
LINT_PATHS := core mailgateway web helpdesk templates tools tests/test_import_rule.py
check: install
	$(BIN)/python tools/typecheck.py
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/python -m pytest -q tests/test_import_rule.py

# Benchmarks print ratios against a baseline measured in the same run (see bench/).
bench: install
	$(BIN)/python bench/ingest.py 1000
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/web.py

# Catalogues (one domain, messages): extract every marked string into the .pot, merge it into each
# language's .po (the only source: the desk compiles the .po in memory at start), and check that each compiles.
I18N := templates/translations
translations: install
	$(BIN)/pybabel extract -F babel.cfg --no-location --sort-output --project=helpdesk -o $(I18N)/messages.pot .
	$(BIN)/pybabel update -i $(I18N)/messages.pot -d $(I18N) -D messages --ignore-obsolete --no-fuzzy-matching -w 120
	for po in $(I18N)/*/LC_MESSAGES/messages.po; do $(BIN)/pybabel compile --statistics -i $$po -o /dev/null || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
