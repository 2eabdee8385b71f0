# The two commands a fresh machine needs: `make demo` and `make test`. Both (re)build .venv/ first.
PY := .venv/bin/python
STAMP := .venv/.installed
PYTEST_WORKERS ?= 2

.PHONY: demo demo-vla test test-slow test-all lint format bench clean fuzz

$(STAMP): pyproject.toml constraints.txt scripts/bootstrap.sh
	./scripts/bootstrap.sh

demo: $(STAMP)
	$(PY) -m jrobot.demo $(DEMO_ARGS)

# the VLA: three coloured cubes, the instruction names the one to put in the bin
demo-vla: $(STAMP)
	$(PY) -m jrobot.demo --policy smolvla $(DEMO_ARGS)

# The real openpi client for the interoperability test (tests/serving/test_openpi.py), in a venv of its
# own (it needs numpy<2). If it cannot be built (no index reachable), the tests run without it and
# pytest reports that one test as skipped.
OPENPI_STAMP := .venvs/openpi/.installed
$(OPENPI_STAMP): scripts/openpi_client_env.sh
	./scripts/openpi_client_env.sh .venvs/openpi && touch $@ \
	  || echo "make: could not build .venvs/openpi: the openpi-client interoperability test will be skipped" >&2
# JROBOT_OPENPI_PYTHON as the caller set it, else the venv above when it was built
WITH_OPENPI = op="$${JROBOT_OPENPI_PYTHON:-}"; [ -n "$$op" ] || [ ! -f $(OPENPI_STAMP) ] \
	  || op="$(CURDIR)/.venvs/openpi/bin/python"; JROBOT_OPENPI_PYTHON="$$op"

test: $(STAMP) $(OPENPI_STAMP)
	$(PY) -m ruff check jrobot data_tools tests benchmarks configs fuzz tools
	$(PY) -m ruff format --check jrobot data_tools tests benchmarks configs fuzz tools
	$(WITH_OPENPI) $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -m slow $(PYTEST_ARGS)

test-all: $(STAMP) $(OPENPI_STAMP)
	$(WITH_OPENPI) $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check jrobot data_tools tests benchmarks configs fuzz tools
	$(PY) -m ruff format --check jrobot data_tools tests benchmarks configs fuzz tools

format: $(STAMP)
	$(PY) -m ruff check --fix jrobot data_tools tests benchmarks configs fuzz tools
	$(PY) -m ruff format jrobot data_tools tests benchmarks configs fuzz tools

# coverage-guided fuzzing (atheris/libFuzzer) of every parser of untrusted input, SECONDS each (fuzz/README.md)
SECONDS ?= 60
fuzz: $(STAMP)
	$(PY) -c "import atheris" 2>/dev/null || $(PY) -m pip install -q -c constraints.txt -e ".[fuzz]"
	$(PY) -m fuzz.run --seconds $(SECONDS) $(FUZZ_ARGS)

clean:
	rm -rf .venv .venvs .pytest_cache .ruff_cache
