# The index of commands. `make run` starts the whole stack; `make test` runs every test tier.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install bytecode run test test-unit test-e2e system-deps compose-check bench chaos clean

help:
	@echo "make run     start Redis, an SMTP sink and the four services (Ctrl-C stops them)"
	@echo "make test    run the whole test suite"
	@echo "make clean   remove ./var (local data) and the virtual environment"

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# Bytecode up front: services start in half the time where PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	touch $@

bytecode:
	@$(BIN)/python -m compileall -q -j 0 shared services >/dev/null 2>&1 || true

install: $(VENV)/.installed

# Debian packages the tests drive: docker-compose validates the compose file offline,
# chromium runs the browser tests of the staff console.
SYSTEM_PACKAGES := docker-compose chromium
system-deps:
	@missing=""; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing$$missing (Debian)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "please install Debian packages:$$missing"; exit 1; fi; \
	fi

run: install bytecode
	$(BIN)/python -m shared.devstack

test: install system-deps bytecode
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

compose-check: system-deps
	docker-compose -f docker-compose.yml config -q

clean:
	rm -rf var $(VENV)

# --- operations: `refuge` is the operator's command (`$(BIN)/refuge --help`) ---
.PHONY: docs backup restore

docs: install
	$(BIN)/refuge docs

# make backup [DIR=...]: Redis, then every store, into a new directory (URLs from INTAKE_DATABASE_URL, ...,
# REFUGE_REDIS_URL, REFUGE_NAMESPACE; defaults are the local ./var stores and Redis).
backup: install
	$(BIN)/refuge backup $(or $(DIR),var/backups/$(shell date -u +%Y%m%dT%H%M%SZ))

# make restore DIR=... [FORCE=--force]: stop the services first.
restore: install
	@test -n "$(DIR)" || { echo "usage: make restore DIR=var/backups/<time> [FORCE=--force]"; exit 2; }
	$(BIN)/refuge restore $(DIR) $(FORCE)

# make bench [QUICK=1] [POSTGRES_URL=postgresql://…]: the benchmark of issue 9 on the real stack;
# prints a table and writes var/bench/bench-<time>.json and .png (BENCH_ARGS passes more options).
bench: install
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(if $(POSTGRES_URL),--postgres-url $(POSTGRES_URL)) $(BENCH_ARGS)

# Fault-injection suite (issue 8): its own Redis (AOF) behind a TCP proxy, the four services as
# processes, a workload under kills, stops, Redis restarts, network cuts and bad entries; prints
# the counts of lost, duplicated and unexpected effects and the time to converge.
# make chaos OPS=20000 SEED=7 [DURATION=seconds] [STORE=postgres POSTGRES_URL=postgresql://...]
OPS  ?= 2000
SEED ?= 1
STORE ?= sqlite
chaos: install
	$(BIN)/python -m chaos --seed $(SEED) --ops $(OPS) --store $(STORE) \
	  $(if $(DURATION),--duration $(DURATION)) $(if $(POSTGRES_URL),--postgres-url $(POSTGRES_URL)) $(CHAOS_ARGS)

# Re-pin every dependency: the full lock (tests included) and the image's runtime lock.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra test -o requirements.lock --python-version 3.11 -q
	$(BIN)/uv pip compile pyproject.toml -o requirements.runtime.lock --python-version 3.11 -q
