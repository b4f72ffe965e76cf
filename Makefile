# tradebot: `make run` starts the whole bot in paper mode, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench status kill clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tradebot needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m tradebot.stack

test: lint
	TRADEBOT_DOTENV=0 TRADEBOT_VAR_DIR=$(CURDIR)/var/test $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	TRADEBOT_DOTENV=0 TRADEBOT_MODE=paper TRADEBOT_VAR_DIR=$(CURDIR)/var/test \
		$(BIN)/mypy tradebot broker feeds orders health strategies simulator manage.py

bench: $(STAMP)
	$(BIN)/python -m bench

status: $(STAMP)
	$(BIN)/python manage.py bot_status

kill: $(STAMP)
	$(BIN)/python manage.py kill_switch engage --reason "make kill"

clean:
	rm -rf var/test .pytest_cache
