# The two set-up commands of the README:
#   make quickstart   create .venv, install trainforge, train the digits example locally
#   make test         install the test dependencies, run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: quickstart test venv bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools

venv: $(PY)

quickstart: $(PY)
	$(PIP) install -e '.[examples]'
	$(VENV)/bin/trainforge quickstart

test: $(PY)
	$(PIP) install -e '.[test]'
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(PY)
	$(PY) bench/local_bench.py
	$(PY) bench/container_start.py

clean:
	rm -rf $(VENV) build *.egg-info trainforge-quickstart.png
