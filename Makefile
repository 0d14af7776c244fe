# Two entry points, each self-installing on first use: `make demo` and `make test`.
# Both install exact, hash-checked versions from requirements/lock-*.txt (pip --require-hashes), then the
# project itself without dependencies and without build isolation (the locked setuptools/wheel build it).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIPI   := $(BIN)/python -m pip install --quiet --disable-pip-version-check
LOCKED := $(PIPI) --require-hashes --no-deps -r
SELF   := $(PIPI) --no-deps --no-build-isolation -e .
TOOLS  := .venv-tools
SPU    := .venv-spu
FLOWER := .venv-flower
COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(TOOLS)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
           --no-emit-index-url --no-emit-find-links

.PHONY: demo test lint lock sbom release audit bench clean

demo: $(VENV)/.core
	$(BIN)/sampan demo

# The suite spreads over the machine's cores (pytest-xdist; tests use tmp_path, port 0 and fresh databases).
test: lint $(VENV)/.system $(SPU)/.installed $(FLOWER)/.installed
	$(BIN)/python -m pytest -n auto --dist worksteal --durations=30

# SecretFlow spu for the opt-in RR22 PSI backend, in its own venv (jax pinned, numpy < 2; never in $(VENV)): the
# RR22 tests start it. Installed once by tools/install_spu.sh (Python 3.11, Linux x86_64).
$(SPU)/.installed: tools/install_spu.sh bench/requirements-spu.txt
	tools/install_spu.sh $(SPU)
	@touch $@

# Flower (flwr 1.42) for the Flower platform under test (sampan.verify), in its own venv: flwr pins fastapi,
# protobuf, typer and uvicorn below Sampan's. Hash-checked from requirements/lock-flower.txt by tools/install_flower.sh.
$(FLOWER)/.installed: tools/install_flower.sh requirements/lock-flower.txt
	tools/install_flower.sh $(FLOWER)
	@touch $@

# Debian packages the suite needs (chromium for the browser tests, softhsm2 for the HSM tests): installed once,
# only those missing, by apt-get as root; otherwise the script says what to install and fails. Not for `make demo`.
$(VENV)/.system: $(VENV)/bin/python tools/install_system_deps.sh
	tools/install_system_deps.sh
	@touch $@

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sampan needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: $(VENV)/bin/python pyproject.toml requirements/lock-core.txt
	$(LOCKED) requirements/lock-core.txt
	$(SELF)
	@touch $@

$(VENV)/.test: $(VENV)/.core pyproject.toml requirements/lock-test.txt
	$(LOCKED) requirements/lock-test.txt
	$(SELF)
	@touch $@

# Static checks (ruff, mypy; configured in pyproject.toml), run by `make test` after the install, before pytest.
lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy

# Release/supply-chain tools live in their own venv, never in the project's.
$(TOOLS)/.installed: requirements/lock-tools.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "needs Python 3.11+")'
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/lock-tools.txt
	@touch $@

$(TOOLS)/bin/pip-compile: $(TOOLS)/.installed
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check 'pip-tools>=7.4' pyyaml  # maintainer-only (make lock)

# Regenerate the locks (keeps current pins; `make lock UPGRADE=--upgrade` moves them), the derived
# constraints, and the list of packages in the advisory snapshot (needs ADVISORY_DB=/path/to/advisory-database).
lock: $(TOOLS)/bin/pip-compile
	$(COMPILE) $(UPGRADE) --extra test -o requirements/lock-test.txt pyproject.toml requirements/build.in
	{ echo '# Derived from requirements/lock-test.txt by `make lock` (do not edit): the exact versions as pip -c constraints,'; \
	  echo '# for venvs that cannot use the hash-pinned locks directly (bench, lock-core resolution).'; \
	  grep -E '^[A-Za-z]' requirements/lock-test.txt | sed 's/ .*//'; } > requirements/constraints.txt
	$(COMPILE) -c requirements/constraints.txt -o requirements/lock-core.txt pyproject.toml requirements/build.in
	$(COMPILE) $(UPGRADE) -o requirements/lock-tools.txt requirements/tools.in
	@if [ -n "$(ADVISORY_DB)" ]; then $(TOOLS)/bin/python tools/advisory_snapshot.py $(ADVISORY_DB) requirements/lock-test.txt requirements/lock-core.txt; \
	 else echo "lock: advisory snapshot not refreshed (set ADVISORY_DB=/path/to/pypa/advisory-database)"; fi

# CycloneDX SBOMs of exactly what `make demo` and `make test` install.
sbom: $(TOOLS)/.installed
	mkdir -p dist
	$(TOOLS)/bin/cyclonedx-py requirements --pyproject pyproject.toml --output-reproducible -o dist/sbom-core.cdx.json requirements/lock-core.txt
	$(TOOLS)/bin/cyclonedx-py requirements --pyproject pyproject.toml --output-reproducible -o dist/sbom-test.cdx.json requirements/lock-test.txt

# Wheel and sdist into dist/, built by the locked backend, with the SBOMs beside them.
release: $(VENV)/.core sbom
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation -w dist .
	$(BIN)/python -c 'from setuptools import build_meta as b; print("dist/" + b.build_sdist("dist"))'

# Known-vulnerability check of the locked dependencies: always the offline snapshot (requirements/advisories.json);
# also pip-audit against the live advisory services when SAMPAN_ONLINE_AUDIT=1 (needs network).
audit: $(TOOLS)/.installed
	$(TOOLS)/bin/python tools/audit_deps.py requirements/lock-core.txt requirements/lock-test.txt requirements/lock-tools.txt
	@if [ "$(SAMPAN_ONLINE_AUDIT)" = 1 ]; then set -e; for lock in requirements/lock-core.txt requirements/lock-test.txt requirements/lock-tools.txt; do \
	  $(TOOLS)/bin/pip-audit --strict --require-hashes --disable-pip -r $$lock; done; \
	 else echo "audit: online pip-audit skipped (set SAMPAN_ONLINE_AUDIT=1 where pypi.org / osv.dev are reachable)"; fi

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache build src/*.egg-info

# Benchmarks (not part of the two-command contract): a separate venv with Flower for the comparison.
.venv-bench/.installed: pyproject.toml bench/requirements-flower.txt requirements/constraints.txt
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet -c requirements/constraints.txt -e .
	.venv-bench/bin/python -m pip install --quiet -r bench/requirements-flower.txt
	@touch $@

bench: .venv-bench/.installed
	.venv-bench/bin/python bench/horizontal_bench.py
