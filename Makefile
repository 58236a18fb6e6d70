# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PYTEST_ARGS ?=
# Test processes (pytest-xdist). Most of the suite is single-threaded tracing and
# conversion, so two processes on two cores take 8.5 min where one takes 15.
TEST_WORKERS ?= 2

.PHONY: demo test test-slow test-all lint docs bench data chromium clean help

help:
	@echo "make demo   - set up .venv and run 'tfcompress demo' (digits, under 3 minutes)"
	@echo "make test   - set up .venv with test extras, run ruff (lint) and the test suite (CI; not the slow tier)"
	@echo "make test-slow - the slow tier only (every keras.applications model, the README's own-data walk-through, multi-worker runs, ...)"
	@echo "make test-all  - both tiers"
	@echo "make lint   - ruff check (the house style) and mypy (the public modules), configured in pyproject.toml"
	@echo "make docs   - build the documentation site into docs/_build/html (strict: any warning fails; offline)"
	@echo "make bench  - run benchmarks/ and refresh docs/RESULTS.md"
	@echo "make data   - install Fashion-MNIST (Debian package dataset-fashion-mnist; needs root)"
	@echo "make chromium - install headless Chromium for the site's screenshot test (Debian package; needs root)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

# One install for everything make runs: the package, its test tools and its docs tools.
$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test,docs]"
	@touch $@

# Fashion-MNIST comes from Debian; install it when we can (root), else say how.
data:
	@if [ -f $(FASHION) ]; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "installing dataset-fashion-mnist"; \
	  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)); \
	else echo "note: Fashion-MNIST missing; run 'sudo apt-get install dataset-fashion-mnist' (its tests will skip)"; fi

# The screenshot test (tests/test_docs_site.py) needs a browser; it skips, saying why, without one.
chromium:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (headless screenshots of the site)"; \
	  (apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null)); \
	else echo "note: chromium missing; run 'sudo apt-get install chromium' (the site screenshot test will skip)"; fi

# The site: Sphinx, strict (-W: a warning fails; -n: a cross-reference to nothing fails), built offline.
# The API, recipe and CLI reference pages are generated from the code at build time (docs/_ext/).
# -E: every page read afresh, so a warning an earlier build cached away still fails this one.
docs: $(STAMP)
	$(BIN)/python -m sphinx -E -W -n --keep-going -q -b html docs docs/_build/html
	@echo "site: docs/_build/html/index.html"

demo: $(STAMP)
	$(BIN)/tfcompress demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# CI runs `make test` (~15 min budget on 2 cores): the slow tier (tests marked
# `slow`: whole keras.applications models, multi-minute walk-throughs) runs on demand.
test: lint data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

test-slow: lint data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m slow $(PYTEST_ARGS)

test-all: lint data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

bench: $(STAMP) data
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) tfcompress-out .pytest_cache *.egg-info docs/_build docs/api
