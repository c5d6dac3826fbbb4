# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,dask]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/supplier-eval demo

# Two workers, sharing one Prefect API server that the first to need it starts (see tests/conftest.py).
# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: otherwise each worker and each command a test
# starts compiles the project and rewrites the test modules again (about a fifth of the suite's CPU time).
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n auto --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check flows rules suppliers reports tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/run.py

# Re-pin the versions CI tests with (run after changing dependencies in pyproject.toml).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet '.[test,dask,bench]'
	.lock-venv/bin/python -m pip freeze --exclude supplier-eval > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) demo-work .pytest_cache
