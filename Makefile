# revcurse: `make demo` runs Experiment 1 end to end on a tiny model; `make test` runs the test suite.
# Both create .venv when missing: the CPU build of torch first (pinned, so pip does not fetch a CUDA build),
# then the package, whose own torch requirement is a range.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/revcurse demo

test: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/demo_wall_time.py

clean:
	rm -rf $(VENV) runs
