# Cobalt Mail. The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Python >= 3.12: python3.13 or python3.12 on PATH, else a pyenv install of either.
PYTHON := $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python3.13 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then echo $$p; break; fi; done)

.PHONY: run test test-fast lint format bench clean freeze vendor check-python

check-python:
	@if [ -z "$(PYTHON)" ]; then \
		echo "Cobalt Mail needs Python 3.12 or 3.13 (Django 6.1). Neither python3.13 nor python3.12 was found."; \
		echo "Install one (e.g. 'apt-get install python3.13' or 'pyenv install 3.13') and run make again."; \
		exit 1; fi

$(BIN)/.installed: requirements.txt | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

venv: $(BIN)/.installed

# Sends at most 20 messages/s unless SEND_RATE is set (`SEND_RATE=100 make run`); the banner says so.
run: $(BIN)/.installed
	@DEBUG=1 $(BIN)/python -m cobalt_mail.devserver

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the browser tests (tests/e2e) and the real-qcluster worker tests: the markers are
# set in tests/conftest.py. `make test` before pushing.
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not browser and not worker" $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# bench.scaleout: three qcluster clusters (one SIGKILLed), two web processes, 50,000 recipients at
# 500 msg/s; it prints "scale-out: skipped: needs PostgreSQL and Redis" when either is not reachable.
bench: $(BIN)/.installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.scaleout

freeze: $(BIN)/.installed
	$(BIN)/python -m pip freeze | grep -v '^pip==' > requirements.txt

# Refresh the vendored front-end assets from the npm registry (they are committed; no CDN).
vendor:
	cd /tmp && rm -rf cobalt-vendor && mkdir cobalt-vendor && cd cobalt-vendor && npm pack bulma@1.0.4 >/dev/null && tar xzf bulma-1.0.4.tgz
	cp /tmp/cobalt-vendor/package/css/bulma.min.css /tmp/cobalt-vendor/package/LICENSE static/vendor/bulma/
	cd /tmp/cobalt-vendor && rm -rf package && npm pack quill@2.0.3 >/dev/null && tar xzf quill-2.0.3.tgz
	cp /tmp/cobalt-vendor/package/dist/quill.js /tmp/cobalt-vendor/package/dist/quill.js.LICENSE.txt /tmp/cobalt-vendor/package/dist/quill.snow.css /tmp/cobalt-vendor/package/LICENSE static/vendor/quill/
	# axe-core: for the accessibility browser tests only (tests/e2e/), never served to users.
	cd /tmp/cobalt-vendor && rm -rf package && npm pack axe-core@4.14.1 >/dev/null && tar xzf axe-core-4.14.1.tgz
	mkdir -p tests/e2e/vendor/axe-core && cp /tmp/cobalt-vendor/package/axe.min.js /tmp/cobalt-vendor/package/LICENSE /tmp/cobalt-vendor/package/LICENSE-3RD-PARTY.txt tests/e2e/vendor/axe-core/

clean:
	rm -rf var/*.sqlite3* var/staticfiles tests/artifacts .pytest_cache
