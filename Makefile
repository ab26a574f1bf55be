# Two entry points: `make demo` and `make test` (see README). Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND := tensorflow

.PHONY: install browser test test-fast demo data clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24" -c constraints.txt

$(STAMP): $(BIN)/python setup.cfg pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,data,pardiso]"
	touch $(STAMP)

install: $(STAMP)

# The studio's browser test drives Debian's chromium through chromedriver: installed here when
# missing (CI runs as root). Without them that test fails loudly; it never skips.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing chromium and chromium-driver (Debian) for the studio's browser test"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	fi

test: install browser
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
