# revcurse: `make demo` runs Experiment 1 end to end on a tiny model; `make test` runs the test suite.
# Both create .venv when missing and install exactly what requirements.lock says (versions and hashes, every
# dependency listed, so --no-deps): a fresh machine gets what CI tested. torch comes first and apart, pinned to the
# CPU build (an unpinned torch would fetch a CUDA build). `make lock` refreshes the lock from pyproject.toml's
# ranges (which is what `pip install revcurse` gets). The lock was compiled on CPython 3.11 for Linux, as CI runs;
# elsewhere install the ranges: pip install -e ".[dev]".
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
TORCH := torch==2.13.0
# -qq: pip's errors only (this machine's package mirror prints a warning for every package it does not hold).
PIP := $(BIN)/pip install -qq

.PHONY: demo test test-cluster bench lock clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)
	$(PIP) --require-hashes --no-deps -r $(LOCK)
	$(PIP) --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/revcurse demo

test: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

# The tests on real engines alone (also in `make test`): a sweep over a two-node Ray cluster started on this
# machine with a worker killed mid-cell, and sweeps and seeds as submitit jobs (~1.5 minutes on 2 cores).
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster

bench: $(STAMP)
	$(BIN)/python bench/demo_wall_time.py

# Newest versions within pyproject.toml's ranges, with the hashes of every file of each (a few minutes).
lock: $(STAMP)
	$(BIN)/pip-compile --upgrade --quiet --extra dev --generate-hashes --strip-extras --unsafe-package torch \
		--no-emit-index-url --no-emit-find-links --constraint lock-constraints.txt --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) runs
