# `make run` and `make test` are the README's two commands. Both create the virtual environment
# .venv on first use from the pinned lock (torch, open_clip_torch, snakemake, ... at the versions
# the results were made with), then add the project itself without re-resolving anything.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin
LOCK := requirements.lock
UV ?= uv
UV_ARGS ?=

.PHONY: run test lint benchmark lock gpu-wheels

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# Re-resolve the lock after a change to pyproject.toml's dependencies (or the `test` extra): one
# universal resolution (Linux, macOS, Windows) for Python >= 3.11 with uv (https://docs.astral.sh/uv/).
# The pins already in the lock are kept wherever they still fit; `make lock UV_ARGS=--upgrade`
# (or `UV_ARGS='--upgrade-package torch'`) moves them. uv does not read pip's config: pass a local
# index or a constraints file in UV_ARGS if pip uses one (e.g. `-c /etc/xdg/pip/constraints.txt`).
lock:
	if [ -f $(LOCK) ]; then cp $(LOCK) $(LOCK).tmp; fi
	$(UV) pip compile pyproject.toml --extra test --universal --python-version 3.11 --quiet \
		--no-header $(UV_ARGS) -o $(LOCK).tmp
	{ printf '%s\n' \
		'# The pinned environment of `make run` / `make test`: pyproject.toml with the `test` extra,' \
		'# resolved by uv for every platform, Python >= 3.11. Do not edit; regenerate with `make lock`' \
		'# (see the Makefile). The Makefile installs it with `pip install -r requirements.lock`, then' \
		'# the project with `pip install --no-deps -e .`.'; cat $(LOCK).tmp; } > $(LOCK)
	rm $(LOCK).tmp

# The offline default: synthesise Shapes, train the two small CLIPs, extract, analyse (CPU: ~25 min
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
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

benchmark: $(BIN)/.installed
	$(BIN)/python benchmarks/extraction.py
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/omp.py
	$(BIN)/python benchmarks/patching.py
	$(BIN)/python benchmarks/sae.py
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/atlas.py
	$(BIN)/python benchmarks/scaling.py

# The wheels benchmarks/gpu/run.sh installs on a machine that has PyTorch and nothing else (CPython 3.12,
# Linux x86-64): exactly benchmarks/gpu/requirements.txt, no dependency resolution, into $(GPU_WHEELS)
# (.whl is ignored by git); then `benchmarks/gpu/run.sh --wheels $(GPU_WHEELS)` there.
GPU_WHEELS ?= .whl
GPU_PLATFORMS := manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
	manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 manylinux1_x86_64
gpu-wheels:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(addprefix --platform ,$(GPU_PLATFORMS)) -d $(GPU_WHEELS) -r benchmarks/gpu/requirements.txt
