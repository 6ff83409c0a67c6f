# flexxray_nb: `make demo` runs the main job on the bundled samples; `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test setup setup-dev sync-check outputs-check notebooks pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# constraints.txt pins the tested set; pyproject.toml keeps compatible ranges for users who pip install the package.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@ $(VENV)/.installed

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

## The main job on the bundled FlexXray samples, local backend, no API key: writes reports/FlexXray/
demo: setup
	$(BIN)/flexxray run --company FlexXray --backend local
	@echo "open reports/FlexXray/report.html (and analysis.xlsx, results.json)"

## Every check: notebooks and package in sync (as nbdev's CI), notebooks as tests, then tests/
test: setup-dev sync-check
	$(BIN)/pytest -q tests

# nbdev-clean and nbdev-export must change nothing: the notebooks are the source and the package is what they export.
sync-check: setup-dev
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  before=$$(git status --porcelain -- nbs flexxray_nb && git diff -- nbs flexxray_nb | md5sum); \
	  $(BIN)/nbdev-clean && \
	  after=$$(git status --porcelain -- nbs flexxray_nb && git diff -- nbs flexxray_nb | md5sum); \
	  if [ "$$before" != "$$after" ]; then echo "nbdev-clean changed notebooks: commit clean notebooks"; git status --short -- nbs; exit 1; fi; \
	  $(BIN)/nbdev-export && \
	  after=$$(git status --porcelain -- nbs flexxray_nb && git diff -- nbs flexxray_nb | md5sum); \
	  if [ "$$before" != "$$after" ]; then echo "notebooks and library are not in sync: run nbdev-export and commit"; git status --short -- flexxray_nb; exit 1; fi; \
	  echo "notebooks clean and in sync with the package"; \
	else echo "not a git checkout: sync check skipped"; fi

# The outputs stored in the notebooks, checked against a fresh run of each (not part of `make test`: about 3 minutes).
outputs-check: setup-dev
	$(BIN)/python tools/check_outputs.py

bench: setup-dev
	$(BIN)/python benchmarks/eval_roles.py
	$(BIN)/python benchmarks/bench_parse.py

clean:
	rm -rf reports/*/ cache .pytest_cache
