# The two newcomer commands (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format clean

demo: $(STAMP)
	$(BIN)/edgefleet demo

test: $(STAMP)
	./scripts/system-deps.sh test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# torch is pinned in pyproject (a looser pin pulls a multi-GB CUDA build) and installed
# first, on its own: with it in place the resolver keeps it instead of backtracking into
# another 2.13.0 build (seen: a CPU wheel from a local find-links swapped for the CUDA one).
$(STAMP): pyproject.toml setup.py requirements/dev.lock
	./scripts/system-deps.sh demo
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[dev]' -c requirements/dev.lock
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) build dist *.egg-info
