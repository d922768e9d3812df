# Two entry points: `make run` (Meterline on the embedded default) and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= data
PORT    ?= 8080

.PHONY: install run test lint bench clean services

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m infra.demo.toolchain prepare
	touch $(STAMP)

install: $(STAMP)

services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done

run: install
	METERLINE_DEV=1 $(BIN)/meterline up --data-dir $(DATA) --port $(PORT) --demo-model

test: install services
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 tests

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .hypothesis
