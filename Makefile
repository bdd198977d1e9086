# `make run` and `make test` are the README's two commands. Both create the virtual environment
# .venv on first use (pip install -e '.[test]': torch, open_clip_torch, snakemake, ...).
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: run test lint benchmark

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The offline default: synthesise Shapes, train the two small CLIPs, extract, analyse (CPU: ~12 min
# on 2 cores, after the venv).
run: $(BIN)/.installed
	$(BIN)/snakemake --cores $(CORES)

# Unit, slow (paper architectures with random weights) and integration tests, lint and format.
# One BLAS thread per process: on 2 cores, threaded BLAS in small tests is slower, not faster.
test: $(BIN)/.installed
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow

benchmark: $(BIN)/.installed
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/omp.py
