# casetrail — the two commands a new user needs: `make run` and `make test`.
# Everything is installed into .venv from PyPI at the versions pinned in constraints.txt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test soak soak-properties soak-crash chaos lint typecheck imports unit bench bench-quick demo clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "casetrail needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## run: create the environment, create keys on first start, serve the API on 127.0.0.1:8000
run: venv
	$(BIN)/casetrail keys init
	@echo "pages (web front end): http://127.0.0.1:8000/   API docs: http://127.0.0.1:8000/docs"
	@echo "(no one to sign in as yet? run 'make demo' first: it prints a user id and password per role)"
	$(BIN)/casetrail serve --host 127.0.0.1 --port 8000

# The suite runs on two workers (pytest-xdist), a whole test file per worker so that a module's
# fixtures (a fuzzed service, a NATS stack, a browser) are set up once, the longest files first
# (tests/conftest.py LONGEST_FIRST). TEST_WORKERS=0 runs it in this one process. Three workers
# ran it faster here (817 s against 918 s, 2026-12-04) but their load made a timing test
# flaky (test_need_to_know, bench/README.md "eighth round"): two until that test is steadier.
TEST_WORKERS ?= 2
PYTEST       := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
# Schemathesis examples per operation and phase (tests/integration/test_schema_fuzz.py): a small
# run in `make test`, the documented default (12) in `make soak`. The environment's value wins.
TEST_FUZZ_EXAMPLES ?= 4
SOAK_FUZZ_EXAMPLES ?= 12

## test: lint, type-check, the import rules and the test suite without the long soaks (about
## 15 minutes on two cores); every property a soak checks is also checked here, briefly
test: venv lint typecheck imports
	CASETRAIL_FUZZ_EXAMPLES=$${CASETRAIL_FUZZ_EXAMPLES:-$(TEST_FUZZ_EXAMPLES)} $(PYTEST) -m "not soak"

## soak: the long runs `make test` leaves out (tests marked `soak`; pytest's exit 5, "none
## selected", is not a failure) and the schema fuzz at its full size
soak: venv soak-properties
	$(PYTEST) -m soak -rP || [ $$? -eq 5 ]
	CASETRAIL_FUZZ_EXAMPLES=$${CASETRAIL_FUZZ_EXAMPLES:-$(SOAK_FUZZ_EXAMPLES)} \
		$(PYTEST) tests/integration/test_schema_fuzz.py

lint: venv
	$(BIN)/ruff check domain projections gateway tests bench docs/specs/examples

typecheck: venv
	$(BIN)/mypy domain projections gateway tests bench docs/specs/examples

## imports: the import rules ([tool.importlinter] in pyproject.toml); fails when one is broken
imports: venv
	$(BIN)/lint-imports --no-cache --no-logo

## demo: fill the embedded store with synthetic cases; print a token and a password per role
demo: venv
	$(BIN)/casetrail keys init
	$(BIN)/casetrail demo
	@echo "then 'make run' and sign in at http://127.0.0.1:8000/ with a user id and password above"

## soak-properties: the property tests (tests/properties) with many more examples (docs/reliability.md)
soak-properties: venv
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest -p no:cacheprovider --hypothesis-show-statistics tests/properties

## soak-crash: only the crash and contention campaigns' soaks (50 SIGKILLs per store; 10 rounds
## of 50 writers and 200 readers per store), in this one process, their seeds and figures printed
## (docs/reliability.md)
soak-crash: venv
	$(BIN)/python -m pytest -p no:cacheprovider -m soak -s \
		tests/reliability/test_crash_safety.py tests/reliability/test_contention.py

## chaos: the chaos run's long version (issue 21; README "The chaos run"): PostgreSQL under its
## least-privilege roles, the broker, two API processes, the relay, `projections run` and two
## unit clients as processes; CHAOS_ROUNDS rounds (default 3) of SIGKILLs of a broker node, an
## API, the relay and the projections process under load through both APIs, the three keys
## rotated and a backup taken mid-run; then every answer checked, the figures printed. Needs
## PostgreSQL at 127.0.0.1:5432 (CASETRAIL_TEST_PG); `make test` runs one short round
CHAOS_ROUNDS ?= 3
chaos: venv
	CASETRAIL_CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(BIN)/python -m pytest -p no:cacheprovider -m soak -s \
		tests/reliability/test_chaos.py

## bench: the full benchmark suite (over an hour on 2 cores); bench-quick: a short run of each
bench: venv
	$(BIN)/python -m bench.suite

bench-quick: venv
	$(BIN)/python -m bench.suite --quick

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
