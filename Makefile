# `make demo` runs the quickstart notebook on the built-in local cluster; `make test` runs the
# test suite against a real loopback sshd. Both install what they need (venv, pip; Debian
# packages when run as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_OUT := build/demo

.PHONY: demo test lint bench system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

system-deps:
	@if [ ! -x /usr/sbin/sshd ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; \
	  else echo "openssh-server is missing: sudo apt-get install openssh-server"; exit 1; fi; \
	fi

demo: $(STAMP)
	mkdir -p $(DEMO_OUT)
	$(BIN)/jupyter nbconvert --to notebook --execute notebooks/01-quickstart.ipynb \
	  --output-dir $(DEMO_OUT) --ExecutePreprocessor.timeout=300 \
	  --ExecutePreprocessor.store_widget_state=False
	@echo "Executed notebook: $(DEMO_OUT)/01-quickstart.ipynb"
	@$(BIN)/python -m gpu_magic.cli show-notebook $(DEMO_OUT)/01-quickstart.ipynb

lint: $(STAMP)
	$(BIN)/ruff check gpu_magic tests bench
	$(BIN)/ruff format --check gpu_magic tests bench

test: system-deps $(STAMP) lint
	$(BIN)/pytest tests notebooks --nbval-lax -p no:cacheprovider

bench: system-deps $(STAMP)
	$(BIN)/python bench/bench_transfer.py
	$(BIN)/python bench/bench_latency.py
	$(BIN)/python bench/bench_store.py

clean:
	rm -rf $(VENV) build .pytest_cache
