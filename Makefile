# erpbridge: `make run` (install, start the stack and workers, run the demo) and `make test`.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
STATE := .local
STAMP := $(STATE)/.installed-$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
SAMPLE ?= samples/claims.csv
APPROVALS ?= samples/approvals.jsonl
INVOICES ?= samples/einvoices.xml
REFERENCE ?= $(wildcard samples/reference/*.csv)

.PHONY: install system-deps browser browser-deps prometheus prometheus-deps up down status workers run demo test unit chaos bench lint clean \
	container-deps image compose-up compose-demo compose-down test-containers test-testcontainers

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v java >/dev/null && command -v mvn >/dev/null || $(MAKE) system-deps
	$(PYTHON) -m pip install -q --disable-pip-version-check -e ".[dev,erp,postgres]"
	@mkdir -p $(STATE) && touch $@

# Java 17 + Maven run the Kafka broker; redis-server is installed on first `make up` if missing.
system-deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openjdk-17-jre-headless maven redis-server

# Debian's Chromium (and CJK fonts, for the console's Chinese): the browser tests drive it
# headless (playwright, with the system executable; no browser download works offline). Only the
# tests need it, so `make test` installs it when missing and `make run` never does.
browser:
	@command -v chromium >/dev/null && dpkg -s fonts-noto-cjk >/dev/null 2>&1 || $(MAKE) browser-deps

browser-deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-noto-cjk

# Debian's Prometheus: promtool unit-tests the alerting rules (deploy/prometheus), and the tests
# run a real Prometheus that sees the breaker alert fire and resolve. `make test` installs it.
prometheus:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || $(MAKE) prometheus-deps

prometheus-deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus

# Containers without a registry (README, Deploying): podman, buildah and mmdebstrap from Debian;
# `make image` builds the base from Debian's archive, then the app, Kafka and Redis images on it.
container-deps:
	@command -v podman >/dev/null && command -v mmdebstrap >/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    podman buildah mmdebstrap runc uidmap slirp4netns netavark aardvark-dns \
	    containernetworking-plugins iptables; }
	@$(PYTHON) -c "import podman_compose" 2>/dev/null || \
	  $(PYTHON) -m pip install -q --disable-pip-version-check -e ".[containers]"

image: install container-deps
	$(PYTHON) -m deploy.images build

compose-up: image
	$(PYTHON) -m deploy.images compose up

compose-demo: compose-up
	$(PYTHON) -m deploy.images compose demo

compose-down:
	$(PYTHON) -m deploy.images compose down

# The containers suite (tests/containers): the images, the compose stack booking the demo, the
# Kubernetes manifests played with podman. Not in `make test`: a fresh machine spends about 5
# minutes installing podman and building the images before the first test.
test-containers: install container-deps
	$(PYTHON) -m pytest -q --durations=5 -m containers tests/containers

# The contract and end-to-end tests on a broker from testcontainers, through podman's Docker API
# (the run's header says which broker path it took: make test takes the local launcher).
test-testcontainers: image
	$(PYTHON) -m deploy.images docker-api up
	DOCKER_HOST=unix://$(CURDIR)/$(STATE)/run/podman.sock TESTCONTAINERS_RYUK_DISABLED=true \
	  $(PYTHON) -m pytest -q tests/integration/test_contracts_on_kafka.py \
	  tests/integration/test_pipeline_end_to_end.py

up: install
	$(PYTHON) -m deploy.local up

down:
	$(PYTHON) -m deploy.local down

status:
	$(PYTHON) -m deploy.local status

workers: up
	$(PYTHON) -m erpbridge topics
	$(PYTHON) -m erpbridge reference load $(REFERENCE)
	$(PYTHON) -m deploy.local workers-up

demo:
	$(PYTHON) -m erpbridge demo $(SAMPLE) --approvals $(APPROVALS) --invoices $(INVOICES) --timeout 180

run: workers
	@$(MAKE) --no-print-directory demo
	@echo
	@echo "The pipeline keeps running. Feed more:  erpbridge source file <claims.csv>"
	@echo "Look up bookings:  erpbridge erp invoices <claim-id>...     Stop everything:  make down"

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy erpbridge erpbridge_cli streams connectors deploy ops books
	$(PYTHON) -c "from importlinter.cli import lint_imports_command as lint; lint()"
	$(PYTHON) -m erpbridge schemas check

unit: install
	$(PYTHON) -m pytest -q tests/unit

# Integration tests start (and stop) the broker, Redis and Tryton they need themselves.
# `make test` runs the kill suites at a bounded size, CI's budget: the exactly-once SIGKILL test
# (250 claims, then 1,500 with the kill) and the broken-transaction test's fenced variant.
# The tests marked long are left to `make chaos`, which runs everything marked chaos or long at
# full size, as many times as CHAOS_RUNS says: the fault suite on the 3-broker cluster (20
# trials with 60 s ERP outages; 4-5 minutes even at 2 trials, with the cluster's start), the
# repeated kills (1,000 claims and 12 kills; 400 and 6 on the cluster), a worker added then one
# killed (400 claims), the rolling restart (300), a worker paused past its transaction timeout,
# a broker killed mid-stream and two brokers gone on the cluster, and the SIGKILL test at 500
# then 3,000 claims. Each proves what the suites in make test prove, under other faults.
test: lint browser prometheus
	ERPBRIDGE_EO_CLAIMS=$${ERPBRIDGE_EO_CLAIMS:-250,1500} \
	  $(PYTHON) -m pytest -q --durations=15 -m "not containers and not long"

# The repeated-kill tests and the fault suite CHAOS_RUNS times in a row, each with a new seed
# (printed; replay one with ERPBRIDGE_CHAOS_SEED=N); stops at the first failure.
CHAOS_RUNS ?= 5
# The whole pipeline against its limits and a peer, one run (bench/suite.py): a table, and
# bench/results/<time>.json. BENCH_ARGS="--only streams" and the like narrow it.
bench: install
	$(PYTHON) -m pip install -q --disable-pip-version-check -e ".[dev,erp,postgres,bench]"
	$(PYTHON) -m bench.suite $(BENCH_ARGS)

chaos: install
	@for run in $$(seq $(CHAOS_RUNS)); do \
	  echo "chaos run $$run of $(CHAOS_RUNS)"; \
	  $(PYTHON) -m pytest -q -s -m "chaos or long" tests/integration tests/chaos || exit 1; \
	done

clean: down
	rm -rf $(STATE)/kafka/data $(STATE)/redis $(STATE)/tryton $(STATE)/faust $(STATE)/logs $(STATE)/run
