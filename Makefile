# The two commands the README promises: `make demo` and `make test`.
# Each makes (or reuses) .venv, installs torch first, then cvload in editable mode.
#   make test TORCH_SPEC=torch        # any torch instead of the pinned one
#   make test PYTEST_ARGS="-k motion" # pass options to pytest

PYTHON ?= $(shell command -v python3.11 || command -v python3)
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
VPY := $(VENV)/bin/python
# One stamp per torch spec, so changing TORCH_SPEC reinstalls torch and nothing else does.
TORCH_STAMP := $(VENV)/.torch-$(shell printf '%s' '$(TORCH_SPEC)' | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: demo test bench doctor clean

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(TORCH_STAMP): | $(VPY)
	$(VPY) -m pip install --quiet '$(TORCH_SPEC)'
	rm -f $(VENV)/.torch-* && touch $@

$(VENV)/.deps-test: pyproject.toml $(TORCH_STAMP)
	$(VPY) -m pip install --quiet -e '.[test,bench,plot,ray]'
	touch $@

demo: $(VENV)/.deps-test
	$(VENV)/bin/cvload demo

test: $(VENV)/.deps-test
	$(VPY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.deps-test
	$(VPY) -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/latest.json $(PYTEST_ARGS)

doctor: $(VENV)/.deps-test
	$(VENV)/bin/cvload doctor

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
