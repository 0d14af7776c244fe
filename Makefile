# Two entry points, each self-installing on first use: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt

.PHONY: demo test bench clean

demo: $(VENV)/.core
	$(BIN)/sampan demo

test: $(VENV)/.test
	$(BIN)/python -m pytest

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sampan needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: $(VENV)/bin/python pyproject.toml requirements/constraints.txt
	$(PIP) -e .
	@touch $@

$(VENV)/.test: $(VENV)/.core pyproject.toml requirements/constraints.txt
	$(PIP) -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info

# Benchmarks (not part of the two-command contract): a separate venv with Flower for the comparison.
.venv-bench/.installed: pyproject.toml bench/requirements-flower.txt
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet -c requirements/constraints.txt -e .
	.venv-bench/bin/python -m pip install --quiet -r bench/requirements-flower.txt
	@touch $@

bench: .venv-bench/.installed
	.venv-bench/bin/python bench/horizontal_bench.py
