# EdgeSync: the two commands a new machine needs are `make demo` and `make test`.
# Both create .venv (Python 3.11) and fetch the offline assets on first use.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint protos assets browser clean help

# root installs Debian packages directly; anyone else through sudo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU machine has these on local disk and pip caps torch at them
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[assets,dev]'
	touch $(STAMP)

assets: $(STAMP)  ## fetch vtest.avi (Debian's opencv-doc) and check the offline teacher is installed
	$(PY) -c "from edgesync.assets import vtest_path, ssd_model_files; print(vtest_path()); ssd_model_files()"

demo: assets  ## bootstrap a student if needed, then stream vtest.avi through drift with a cloud and an edge
	$(VENV)/bin/edgesync demo

browser:  ## install Debian's chromium for the dashboard's browser test (once per machine)
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

test: assets browser  ## the whole suite: unit and integration (real gRPC, real Redis, real footage, real browser)
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

protos: $(STAMP)  ## regenerate edgesync/v1 from protos/
	$(PY) scripts/gen_protos.py

clean:  ## remove runs/ (demo output, bootstrap cache)
	rm -rf runs
