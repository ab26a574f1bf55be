# Two entry points: `make demo` and `make test` (see README). Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND := tensorflow

.PHONY: install test test-fast demo data clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24" -c constraints.txt

$(STAMP): $(BIN)/python setup.cfg pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,data]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The fast tier: everything except tests marked `slow` (server processes, exports loaded in
# other processes, training runs, large images). `make test` runs both tiers.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: install
	$(BIN)/tfgcrf demo --out out

data: install
	$(BIN)/tfgcrf data build-offline data/offline

clean:
	rm -rf $(VENV) out build *.egg-info
