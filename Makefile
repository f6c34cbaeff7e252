# `make demo` runs the quickstart notebook on the built-in local cluster; `make test` runs the
# linters (`make lint`: ruff; eslint, prettier and tsc on the Lab extension), the extension's jest
# unit tests, the test suite against a real loopback sshd, then the browser tests (JupyterLab in
# headless Chromium; screenshots in build/test-artifacts/). Both install what they need (venv,
# pip, npm; Debian packages when run as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The editable pip install runs `npm install` only when it rebuilds the extension: this stamp
# brings labextension/node_modules up to date with package.json (the linters, jest) otherwise.
NPM_STAMP := labextension/node_modules/.installed-stamp
DEMO_OUT := build/demo

.PHONY: demo test test-fast lint docs dist dist-check binder-check bench bench-deps fuzz system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

$(NPM_STAMP): labextension/package.json labextension/package-lock.json | $(STAMP)
	npm --prefix labextension install --no-audit --no-fund
	touch $(NPM_STAMP)

system-deps:
	@if [ ! -x /usr/sbin/sshd ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; \
	  else echo "openssh-server is missing: sudo apt-get install openssh-server"; exit 1; fi; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing (the browser tests will fail): sudo apt-get install chromium"; fi; \
	fi
	@if [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/slurmd ] || [ ! -x /usr/sbin/munged ] || \
	    [ ! -x /usr/sbin/slurmdbd ] || [ ! -x /usr/sbin/mariadbd ] || ! command -v ip >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      slurm-wlm munge slurmdbd mariadb-server iproute2; \
	  else echo "Slurm is missing (the Slurm tests will be skipped): sudo apt-get install" \
	    "slurm-wlm munge slurmdbd mariadb-server iproute2"; fi; \
	fi

demo: $(STAMP)
	mkdir -p $(DEMO_OUT)
	$(BIN)/jupyter nbconvert --to notebook --execute notebooks/01-quickstart.ipynb \
	  --output-dir $(DEMO_OUT) --ExecutePreprocessor.timeout=300 \
	  --ExecutePreprocessor.store_widget_state=False
	@echo "Executed notebook: $(DEMO_OUT)/01-quickstart.ipynb"
	@$(BIN)/python -m gpu_magic.cli show-notebook $(DEMO_OUT)/01-quickstart.ipynb

lint: $(STAMP) $(NPM_STAMP)
	$(BIN)/ruff check gpu_magic tests bench docs release notebooks binder
	$(BIN)/ruff format --check gpu_magic tests bench docs release notebooks binder
	npm --prefix labextension run lint:check

# The documentation site (build/site): the reference pages must match what the code prints
# (docs/generate.py writes them), and any mkdocs warning fails the build.
docs: $(STAMP)
	$(BIN)/python docs/generate.py --check
	$(BIN)/python -m mkdocs build --strict

# The release: an sdist (sources + the built Lab extension) and a wheel built from it.
# gpu_magic/labextension goes first: the build hook skips npm when it exists (skip-if-exists),
# and the editable install leaves a development build there, which would ship.
dist: $(STAMP) $(NPM_STAMP)
	rm -rf build/dist gpu_magic/labextension
	$(BIN)/python -m build --outdir build/dist .

# That wheel in a fresh venv with no node on the PATH: the magics load, the server and Lab
# extensions are listed enabled, 01-quickstart runs (release/check_wheel.py).
dist-check: dist
	$(BIN)/python release/check_wheel.py

# Binder's recipe (binder/) replayed as an unprivileged user in a fresh venv, then the first two
# tutorials through binder/start (binder/replay.py; it needs root to make that user).
binder-check: system-deps
	python3 binder/replay.py

# The tests, then the tutorials under strict nbval (every output compared with the committed one,
# notebooks/sanitize.cfg masking ids, times and sizes; each notebook as a new user, with the demo
# SSH host: notebooks/conftest.py), then the browser tests (real JupyterLab + Debian Chromium via
# Playwright, in a pytest process of their own: Playwright's sync API and other event loops clash
# in one process), the release wheel and Binder. Coverage of gpu_magic (lines and branches, in the
# test processes) is printed at the end; under 80% fails.
test: system-deps $(STAMP) $(NPM_STAMP) lint docs
	npm --prefix labextension test
	mkdir -p build/coverage
	$(BIN)/pytest tests -p no:cacheprovider --ignore=tests/browser --cov --cov-report=
	$(BIN)/pytest notebooks --nbval --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider
	$(BIN)/pytest tests/browser -p no:cacheprovider
	$(MAKE) dist-check binder-check
	@$(BIN)/python -m coverage report > build/coverage/report.txt || \
	  { cat build/coverage/report.txt; echo "gpu_magic coverage is under 80%"; exit 1; }
	@echo "gpu_magic coverage (lines and branches; build/coverage/report.txt):" \
	  "$$($(BIN)/python -m coverage report --format=total)%"

# The edit-test loop, well under a minute: only what runs in-process (no sshd, Slurm, kernel,
# browser or real local processes: markers set by tests/harness/tiers.py), over every core.
test-fast: $(STAMP)
	$(BIN)/pytest tests -m "not ssh and not slurm and not kernel and not browser and not processes" \
	  --ignore=tests/browser -p no:cacheprovider -q -n auto

BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

# rsync: what bench_cache and bench_patch compare a resubmit with.
bench-deps:
	@if ! command -v rsync >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync; \
	  else echo "rsync is missing: sudo apt-get install rsync"; exit 1; fi; \
	fi

# Every bench, side by side with the tools users fall back to; bench/RESULTS.md is written.
bench: system-deps bench-deps $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py

fuzz: system-deps $(STAMP)
	$(BIN)/python bench/fuzz_hostile.py

clean:
	rm -rf $(VENV) build .pytest_cache
