# make book   execute every chapter of book/_toc.yml (profile "full", cached) and build book/_build/html
# make test   unit tests, then every chapter with profile "quick" into build/quick (book: build/quick/_build/html),
#             then every page of that book in headless Chromium with the network blocked (tests/test_browser.py)
# make run    NB=01 PARAMS="-p nbeta 300 -p profile quick": one chapter, new parameters, new runs/ folder
# make clean  remove build outputs and caches, .cache included (never runs/: those are your results)
#
# Every target creates .venv on first use from the pinned requirements.lock.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: venv book test run clean browser-deps

venv: $(INSTALLED)

$(INSTALLED): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet -e . --no-deps
	touch $@

book: $(INSTALLED)
	$(PY) -m stagewise book --profile full

# The browser test needs the built quick book, so it runs last, in its own pytest run (the first ignores it);
# STAGEWISE_BOOK_BUILT=1 makes a missing book a failure there, not a skip.
test: $(INSTALLED) browser-deps
	$(PY) -m pytest --ignore=tests/test_browser.py
	$(PY) -m stagewise book --profile quick
	STAGEWISE_BOOK_BUILT=1 $(PY) -m pytest -rs tests/test_browser.py

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
