# civicgrid: the two commands that must work on a fresh machine are `make run` and `make test`.
# Everything they need (Python deps, Kafka's jars, the FerretDB binary) is installed by `make setup`,
# cached outside the clone (~/.cache/civicgrid, uv's cache), and reused on the next run.

SHELL := /bin/bash
PY    := .venv/bin/python
UV_VERSION := 0.13.8
CACHE ?= $(HOME)/.cache/civicgrid
UV    ?= $(CACHE)/uv-$(UV_VERSION)/bin/uv
INFRA := $(PY) deploy/local/infra.py
export UV_LINK_MODE := copy
# Python's bytecode cache, outside the clone like every other cache. Where the environment says not
# to write bytecode (PYTHONDONTWRITEBYTECODE: this machine kind sets it), every process compiled each
# module it imported again at every start -- about 3 s of CPU per service process and pytest worker
export PYTHONPYCACHEPREFIX := $(CACHE)/pycache
unexport PYTHONDONTWRITEBYTECODE
# the demo, the tests and the benchmarks run with the built-in development secrets; a service started
# any other way refuses them (CIVICGRID_ENV defaults to production: docs/adr/0400-fail-closed-secrets.md)
DEV   := CIVICGRID_ENV=development

.PHONY: help setup deps infra-setup tools console-setup browser up down status run test unit faults bench lint chart-topics schemas clean-data

help:
	@echo "make run     - start Kafka, the store and all four services with a demo city (Ctrl-C stops)"
	@echo "make test    - set up what is missing, start the infrastructure, run the whole suite, stop"
	@echo "make unit    - only the unit layer: the tests that need no broker, store or browser, on every core"
	@echo "make bench   - benchmarks (unit layer + foundation + every service + full pipeline + scaling)"
	@echo "make up/down - start/stop only Kafka and the store;  make lint;  make schemas"
	@echo "make lint    - ruff, and the Helm chart (kubeconform -strict) and docker-compose.yml validated offline"
	@echo "make chart-topics - regenerate the chart's topic list from contracts/' registry"

# --- installation ------------------------------------------------------------------------------

$(UV):
	python3 -m pip install --quiet --disable-pip-version-check --target "$(CACHE)/uv-$(UV_VERSION)" "uv==$(UV_VERSION)"

deps: $(UV)
	$(UV) sync --all-packages --frozen --quiet

infra-setup: deps
	$(INFRA) setup

# helm and kubeconform for `make lint`, built once from the Go module proxy (cached in $(CACHE)/bin)
tools:
	bash deploy/local/tools.sh

# the console's front-end packages (htmx, Leaflet, ECharts; axe-core for the browser tests) from the
# npm registry by its committed lock file, into a git-ignored folder; npm's cache stays outside the clone
CONSOLE := services/console
$(CONSOLE)/node_modules/.installed: $(CONSOLE)/package-lock.json $(CONSOLE)/package.json
	cd $(CONSOLE) && npm ci --cache "$(CACHE)/npm" --no-audit --no-fund --loglevel=error
	touch $@

console-setup: $(CONSOLE)/node_modules/.installed

# the browser tests drive Debian's Chromium (Playwright's own browser download is not reachable);
# a CJK font so that screenshots show the Chinese pages
browser:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk"; then \
	  echo "installing Debian's chromium and a CJK font"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei >/dev/null; \
	fi

setup: deps infra-setup tools console-setup browser

# --- infrastructure ----------------------------------------------------------------------------

up: setup
	$(INFRA) up

down:
	@if [ -x $(PY) ]; then $(INFRA) down; fi

status:
	$(INFRA) status

clean-data: down
	$(INFRA) reset
	CIVICGRID_STATE_DIR=$(CURDIR)/.run/test $(INFRA) reset
	CIVICGRID_STATE_DIR=$(CURDIR)/.run/bench $(INFRA) reset

# --- the platform ------------------------------------------------------------------------------

run: setup
	$(DEV) $(PY) deploy/local/run.py $(RUN_ARGS)

# --- quality -----------------------------------------------------------------------------------

# tests and benchmarks keep their own broker and store data (.run/test, .run/bench): the events they
# publish never reach the demo's topics and consumer groups in .run
test: lint setup
	$(DEV) CIVICGRID_STATE_DIR=$(CURDIR)/.run/test bash deploy/local/with-infra.sh $(PY) -m pytest $(PYTEST_ARGS)

# the unit layer (fakes and pure code; a test there that reaches for a real part fails): no set-up
# beyond the Python dependencies, one pytest-xdist worker per core
unit: deps
	env -u KAFKA_BOOTSTRAP_SERVERS -u MONGODB_URL -u CI $(DEV) $(PY) -m pytest --fakes-only -n auto -q -p no:cacheprovider $(PYTEST_ARGS)

faults: setup
	$(DEV) CIVICGRID_STATE_DIR=$(CURDIR)/.run/test bash deploy/local/with-infra.sh $(PY) -m pytest tests/faults -s --timeout 1800 $(PYTEST_ARGS)

# every run starts from an empty broker and store (unless they are given): what earlier runs left
# behind (hundreds of emptied databases, topics full of old events) made the figures drift
bench: setup
	@if [ -z "$${KAFKA_BOOTSTRAP_SERVERS:-}$${MONGODB_URL:-}" ]; then CIVICGRID_STATE_DIR=$(CURDIR)/.run/bench $(INFRA) reset; fi
	$(DEV) CIVICGRID_STATE_DIR=$(CURDIR)/.run/bench bash deploy/local/with-infra.sh $(PY) bench/run_all.py

lint: deps tools
	$(PY) -m ruff check contracts services tests bench deploy
	$(PY) deploy/validate.py

chart-topics: deps
	$(PY) deploy/helm/chart_registry.py

schemas: deps
	$(PY) -m civicgrid_contracts.schemas generate
