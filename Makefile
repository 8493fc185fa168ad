# The README's two commands: `make demo` and `make test`. Each creates or refreshes .venv
# itself (re-installing only when pyproject.toml changed), then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
DEMO := demo_out

.PHONY: test test-fast lint demo env clean-demo

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# Every test that trains or builds no Mask R-CNN (those are marked `slow`): about a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

demo: $(STAMP)
	bash scripts/demo.sh $(DEMO)

clean-demo:
	rm -rf $(DEMO)
