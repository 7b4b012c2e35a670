# make book   execute every chapter of book/_toc.yml (profile "full", cached) and build book/_build/html
# make test   unit tests, then every chapter with profile "quick" into build/quick (book: build/quick/_build/html)
# make run    NB=01 PARAMS="-p nbeta 300 -p profile quick": one chapter, new parameters, new runs/ folder
# make clean  remove build outputs and caches, .cache included (never runs/: those are your results)
#
# Every target creates .venv on first use from the pinned requirements.lock.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: venv book test run clean

venv: $(INSTALLED)

$(INSTALLED): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet -e . --no-deps
	touch $@

book: $(INSTALLED)
	$(PY) -m stagewise book --profile full

test: $(INSTALLED)
	$(PY) -m pytest
	$(PY) -m stagewise book --profile quick

run: $(INSTALLED)
	@test -n "$(NB)" || { echo 'usage: make run NB=<notebook> PARAMS="-p name value ..."'; exit 2; }
	$(PY) -m stagewise run $(NB) $(PARAMS)

# Removes build outputs and caches (.cache holds cached artifacts such as trained checkpoints).
# runs/ is deliberately not removed: it holds the results of `make run`, which are never deleted for you.
clean:
	rm -rf build book/_build .cache .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# make bench  stagewise vs devinterp 2.0.1 on one BIF job (benchmarks/bif_vs_devinterp.py; BENCH_ARGS="--pairs 1").
# devinterp lives only in the benchmark's own environment .venv-bench (requirements.lock + benchmarks/requirements.txt).
.PHONY: bench
BENCH_VENV := .venv-bench
BENCH_INSTALLED := $(BENCH_VENV)/.installed

$(BENCH_INSTALLED): requirements.lock benchmarks/requirements.txt pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r requirements.lock -r benchmarks/requirements.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . --no-deps
	touch $@

bench: $(BENCH_INSTALLED)
	$(BENCH_VENV)/bin/python benchmarks/bif_vs_devinterp.py $(BENCH_ARGS)
