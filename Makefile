# 311 for Cities. `make run` starts the service; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# apt-get for the test servers when we may use it (root, or sudo without a password).
SUDO := $(shell [ "$$(id -u)" = 0 ] && echo "" || (sudo -n true 2>/dev/null && echo sudo || echo none))

.PHONY: install install-test system-deps model run test check bench bench-quick clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(PY)
	$(PIP) install --quiet -e .
	$(PY) -m nlp.build

install-test: $(PY) system-deps
	$(PIP) install --quiet -e ".[test]"
	$(PY) -m nlp.build

# Dovecot (IMAP tests) and Chromium (browser tests) from Debian, when missing and allowed.
system-deps:
	@missing=""; \
	command -v dovecot >/dev/null 2>&1 || missing="$$missing dovecot-imapd dovecot-lmtpd"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$(SUDO)" = none ]; then echo "not installing$$missing (needs root)"; \
	  else $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq $$missing; fi; \
	fi

model: $(PY)
	$(PY) -m nlp.build

run: install
	$(VENV)/bin/city311 serve

test: install-test
	$(PY) -m pytest -q

check: $(PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install-test
	$(PY) -m bench

# The quick run reinstalls only when pyproject.toml has changed since it last did, and has the
# model built before its benchmarks load it side by side.
$(VENV)/.bench-quick-installed: pyproject.toml | $(PY)
	$(MAKE) install-test
	touch $@

bench-quick: $(VENV)/.bench-quick-installed
	$(PY) -m nlp.build
	$(PY) -m bench --quick

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
