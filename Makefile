# make book   execute every chapter of book/_toc.yml (profile "full", cached) and build book/_build/html;
#             STUDENT=1 builds the student book without solutions (build/full-student/_build/html)
# make pdf    after make book: the whole book as one printable PDF, book/_build/pdf/stagewise.pdf (PROFILE=quick too)
# make test   unit tests, then every chapter with profile "quick" into build/quick (book: build/quick/_build/html),
#             then every page of that book in headless Chromium with the network blocked (tests/test_browser.py)
# make check  the fast unit tests only (no slow, kernel or book tests): about 1.5 min on 2 cores
# make run    NB=01 PROFILE=quick PARAMS="-p nbeta 300": one chapter, new parameters, new runs/ folder
#             (PROFILE: start from notebooks/profiles/<PROFILE>/<chapter>.yaml; default: the book's values)
# make sweep  NB=01 PARAMS="-p nbeta 100,300 --seeds 3": every combination, one run each, as Dask tasks
#             (runs/<chapter>/sweep-<stamp>/ with sweep.csv and sweep.parquet; --plot METRIC:PARAM, --workers N)
# make study  NAME=robustness_loo [PROFILE=quick] [WORKERS=2]: a study of notebooks/studies.yaml (cached, resumable)
#             into build/<profile>/studies/NAME/ (in-book) or studies/NAME/ (committed): results.csv, study.json
# make lab    JupyterLab on notebooks/, chapters open as notebooks (jupytext); LAB_ARGS="--port 8899 ..."
# make clean  remove build outputs and caches, .cache included (never runs/: those are your results)
#
# Every target creates .venv on first use from the pinned requirements.lock (Python 3.11, make and npm needed;
# see README). torch comes from PyTorch's CPU-only wheel index (TORCH_INDEX); set TORCH_INDEX= (empty) to take
# PyPI's torch instead, which on Linux x86_64 is a CUDA build of several GB.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# torch alone comes from TORCH_INDEX (one lookup there; the rest of the lock only from PyPI), then the whole lock.
# Where TORCH_INDEX cannot be reached (a machine that reaches only PyPI) pip gives it up after one retry
# (measured 3.8 s against 11.2 s with pip's default of 5 retries) and takes torch from PyPI or a local wheel.
TORCH_PIN := $(shell grep -E '^torch==' requirements.lock)
PIP_INSTALL = $(1)/bin/python -m pip install --quiet --no-deps \
	$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --retries 1 --timeout 15) \
	"$(TORCH_PIN)" && $(1)/bin/python -m pip install --quiet

.PHONY: venv book pdf test check run sweep study clean browser-deps lab

venv: $(INSTALLED)

$(INSTALLED): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call PIP_INSTALL,$(VENV)) -r requirements.lock
	$(PY) -m pip install --quiet -e . --no-deps
	touch $@

# STUDENT=1: the same book without the exercises' solutions, in build/full-student/_build/html.
book: $(INSTALLED)
	$(PY) -m stagewise book --profile full $(if $(STUDENT),--student)

# The built book as one printable PDF (Sphinx's one-page HTML printed by headless Chromium, offline): after
# `make book`, book/_build/pdf/stagewise.pdf (PROFILE=quick: build/quick/_build/pdf/stagewise.pdf).
pdf: $(INSTALLED) browser-deps
	$(PY) -m stagewise pdf $(if $(PROFILE),--profile $(PROFILE))

# The checks of a built book (marker "book": the bounds of notebooks/expected.yaml over its metrics, the browser
# test, the pages' text, the sweep commands the book prints) need the quick book, so they run last, in their own
# pytest run (the first deselects them);
# STAGEWISE_BOOK_BUILT=1 makes a missing book a failure there, not a skip.
test: $(INSTALLED) browser-deps
	$(PY) -m pytest -m "not book"
	$(PY) -m stagewise book --profile quick
	STAGEWISE_BOOK_BUILT=1 $(PY) -m pytest -rs -m book

# The fast tests while you work (about 1.5 min on 2 cores): everything but the statistical and end-to-end tests
# (marker slow), the ones that start a Jupyter kernel (kernel) and the checks of a built book (book).
# make test runs them all.
check: $(INSTALLED)
	$(PY) -m pytest -q -m "not slow and not kernel and not book"

# Headless Chromium for tests/test_browser.py: Debian's chromium (apt-get, as root) and the npm package
# playwright-core (pinned; cached in .cache/npm/browser) that drives it. Best effort: where either cannot
# be installed, the browser test is skipped and says why.
PLAYWRIGHT_CORE := playwright-core@1.65.1
BROWSER_NPM := .cache/npm/browser
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test ..."; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  else echo "warning: chromium is not installed and apt-get cannot install it here (not root); the browser test will be skipped"; fi; }
	@test -f $(BROWSER_NPM)/node_modules/playwright-core/package.json \
	  && grep -q '"version": "$(subst playwright-core@,,$(PLAYWRIGHT_CORE))"' $(BROWSER_NPM)/node_modules/playwright-core/package.json || { \
	  if command -v npm >/dev/null 2>&1; then \
	    mkdir -p $(BROWSER_NPM) && npm install --prefix $(BROWSER_NPM) --no-audit --no-fund --no-save --no-package-lock \
	      --loglevel=error $(PLAYWRIGHT_CORE) || echo "warning: could not install $(PLAYWRIGHT_CORE); the browser test will be skipped"; \
	  else echo "warning: npm is not installed; the browser test will be skipped"; fi; }

# JupyterLab with jupytext: the chapter sources (notebooks/NN_name.md) open as notebooks on a double click
# (the setting goes into the virtual environment, never into your own JupyterLab settings).
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
lab: $(INSTALLED)
	mkdir -p $(LAB_SETTINGS)
	cp lab/overrides.json $(LAB_SETTINGS)/overrides.json
	$(PY) -m jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

run: $(INSTALLED)
	@test -n "$(NB)" || { echo 'usage: make run NB=<notebook> [PROFILE=quick] PARAMS="-p name value ..."'; exit 2; }
	$(PY) -m stagewise run $(NB) $(if $(PROFILE),--profile $(PROFILE)) $(PARAMS)

sweep: $(INSTALLED)
	@test -n "$(NB)" || { echo 'usage: make sweep NB=<notebook> PARAMS="-p name v1,v2,... [--seeds K] [--workers N]"'; exit 2; }
	$(PY) -m stagewise sweep $(NB) $(if $(PROFILE),--profile $(PROFILE)) $(PARAMS)

study: $(INSTALLED)
	@test -n "$(NAME)" || { echo 'usage: make study NAME=<study of notebooks/studies.yaml> [PROFILE=quick] [WORKERS=N]'; exit 2; }
	$(PY) -m stagewise study $(NAME) $(if $(PROFILE),--profile $(PROFILE)) $(if $(WORKERS),--workers $(WORKERS))

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
	$(call PIP_INSTALL,$(BENCH_VENV)) -r requirements.lock -r benchmarks/requirements.txt
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . --no-deps
	touch $@

bench: $(BENCH_INSTALLED)
	$(BENCH_VENV)/bin/python benchmarks/bif_vs_devinterp.py $(BENCH_ARGS)
