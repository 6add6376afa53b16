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

# A machine without a GPU can take PyTorch's CPU-only wheels (about 200 MB
# instead of several GB of CUDA libraries) from PyTorch's own index, e.g.
#   make quickstart TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Empty (the default): PyTorch comes from PyPI with the rest. torch is then
# installed first from that index, and the examples' `torch>=2.2` finds it
# satisfied, so nothing is downloaded twice (pip's cache covers re-runs).
TORCH_INDEX_URL ?=

quickstart: $(PY)
	@started=$$(date +%s); \
	$(if $(TORCH_INDEX_URL),$(PIP) install --index-url '$(TORCH_INDEX_URL)' 'torch>=2.2' && ,)\
	$(PIP) install -e '.[examples]' && \
	$(VENV)/bin/trainforge quickstart && \
	echo "make quickstart took $$(( $$(date +%s) - started )) s (set-up and training)"

test: $(PY)
	$(PIP) install -e '.[test]'
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(PY)
	$(PY) bench/local_bench.py
	$(PY) bench/container_start.py

clean:
	rm -rf $(VENV) build *.egg-info trainforge-quickstart.png trainforge-tuning.png
