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

.PHONY: demo test test-fast lint bench bench-deps fuzz system-deps clean

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
	$(BIN)/ruff check gpu_magic tests bench
	$(BIN)/ruff format --check gpu_magic tests bench
	npm --prefix labextension run lint:check

# The browser tests (real JupyterLab + Debian Chromium via Playwright) run in a pytest process of
# their own: Playwright's sync API and other event loops clash in one process.
test: system-deps $(STAMP) $(NPM_STAMP) lint
	npm --prefix labextension test
	$(BIN)/pytest tests notebooks --nbval-lax -p no:cacheprovider --ignore=tests/browser
	$(BIN)/pytest tests/browser -p no:cacheprovider

# The edit-test loop: what needs no real sshd, Slurm or kernel (markers set by tests/harness/tiers.py).
test-fast: $(STAMP)
	$(BIN)/pytest tests -m "not ssh and not slurm and not kernel" --ignore=tests/browser \
	  -p no:cacheprovider -q

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
