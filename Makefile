# The two front-door commands: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test-services run test soak failover lint typecheck image lambda clean

# What serving needs, and no more: the server, and the drivers of the tiers the environment
# names (the embedded default needs none besides the package's own).
comma := ,
RUN_EXTRAS := server$(if $(filter mysql% mariadb%,$(TWOTIER_DATABASE_URL)),$(comma)mysql)$(if \
	$(filter postgres%,$(TWOTIER_DATABASE_URL)),$(comma)postgres)$(if \
	$(filter dynamodb%,$(TWOTIER_DATABASE_URL)),$(comma)dynamodb)$(if \
	$(filter redis% rediss% unix%,$(TWOTIER_CACHE_URL)),$(comma)redis)$(if \
	$(TWOTIER_DATABASE_SECRET_ARN),$(comma)s3)
RUN_STAMP := $(VENV)/.run-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)-$(RUN_EXTRAS)

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(RUN_EXTRAS)]'
	touch $@

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# What the tests run besides Python (dynalite: package.json); skipped where there is no npm.
node_modules/.installed: package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the tests on dynalite will be skipped"; fi

test-services: node_modules/.installed

# Serve the API: the embedded default (SQLite file under ./var, in-process cache) with the heroes'
# sample rows, or the tiers and resources the TWOTIER_* variables name (no sample rows then,
# unless a resource declares `samples`).
run: $(RUN_STAMP)
	$(BIN)/twotier db init
	$(BIN)/twotier db sample
	$(BIN)/twotier serve --host 127.0.0.1 --port 8000

lint: install
	$(BIN)/ruff check src tests benchmarks infra
	$(BIN)/ruff format --check src tests benchmarks infra

typecheck: install
	$(BIN)/mypy

# Two processes, one test file each at a time (a file's servers and fixtures stay together):
# most tests wait on servers, so two share the two cores well.
test: lint typecheck test-services
	$(BIN)/pytest -n 2 --dist loadfile

# The consistency checker at length (needs MariaDB and Redis): SOAK_OPERATIONS per run.
SOAK_OPERATIONS ?= 50000
soak: install
	TWOTIER_SOAK_OPERATIONS=$(SOAK_OPERATIONS) TWOTIER_SOAK_CLIENTS=64 \
		$(BIN)/pytest tests/consistency -k "never_see_stale" -v

# The consistency checker through a Redis Cluster failover, at length: FAILOVER_RUNS runs of
# each variant (make test runs each once).
FAILOVER_RUNS ?= 10
failover: install
	for run in $$(seq $(FAILOVER_RUNS)); do \
		$(BIN)/pytest -q -p no:cacheprovider \
			tests/consistency/test_cluster_consistency.py -k killed || exit 1; \
	done

# The server image (needs a Docker engine; there is none on the CI machines).
image:
	docker build -f infra/Dockerfile -t twotier .

# The Lambda deployment zip: python3.11, x86_64, manylinux wheels; prints its size.
lambda: install
	$(BIN)/python infra/build_lambda.py dist/twotier-lambda.zip

clean:
	rm -rf $(VENV) var dist .pytest_cache .mypy_cache .ruff_cache
