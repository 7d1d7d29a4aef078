# Two commands for a brand-new machine with Python 3.11:
#   make demo   set up .venv, build the seed index, ask the design question
#   make test   set up .venv, lint, type-check, run the tests
# Both are idempotent; a second run only redoes what changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORE_STAMP := $(VENV)/.installed-core
QUESTION ?= who mediated Turkey-Israel?

# Models come from PyPI packages; nothing may reach a model hub at run time.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-core demo test lint notebooks notebooks-clean screenshot results clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: an unpinned torch (pulled in by sentence-transformers)
# would be a multi-GB CUDA build.
# The core only (what the demo needs): no jupyter, milvus, server or dev tools.
$(CORE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $(CORE_STAMP)

# Everything, every extra (what the tests need).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[all]"
	touch $(STAMP) $(CORE_STAMP)

install: $(STAMP)

install-core: $(CORE_STAMP)

demo: install-core
	$(BIN)/qa index seeds --quiet
	$(BIN)/qa ask "$(QUESTION)"

lint: install
	$(BIN)/ruff check qa tests benchmarks scripts notebooks/*.py
	$(BIN)/mypy qa
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# Run both notebooks in place, headless, with this venv's kernel (outputs stay local).
notebooks: install
	$(BIN)/python notebooks/build_notebooks.py --execute

# Rewrite the notebooks from their generator, without outputs: run before committing.
notebooks-clean: install
	$(BIN)/python notebooks/build_notebooks.py

# The README's picture of `qa serve`: the page test in headless Chromium saves its screenshot here.
screenshot: install
	QA_SERVE_SCREENSHOT=docs/serve.png $(BIN)/pytest tests/test_serve.py -q -k highlights

# Every number in the README's Results section: the evaluations and benchmarks, run one after
# another on a quiet machine (about two hours on 2 cores), then rendered into README.md.
results: install
	$(BIN)/python benchmarks/make_results.py

clean:
	rm -rf $(VENV) indexes/default .pytest_cache .mypy_cache .ruff_cache
