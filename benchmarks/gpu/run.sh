#!/usr/bin/env bash
# The GPU measurements of clipmech on one GPU, in under 8 minutes (each step has its own time limit):
#   1. extraction throughput against a bare forward pass (benchmarks/extraction.py), fp32 and bf16,
#      ViT-B/16 and ViT-L/14 with random weights;
#   2. the batched patching engine against one forward per patch and nnsight (benchmarks/patching.py),
#      fp32 and bf16, ViT-B/16;
#   3. SAE training, ours against sparsify, and the chunk stream (benchmarks/sae.py, parts 1 and 2).
#
#   benchmarks/gpu/run.sh [--wheels DIR] [--out DIR] [--smoke]
#
# It runs where only PyTorch (with numpy, pandas, scipy, scikit-learn, xarray, pyyaml, tqdm, pillow) is
# installed: it lists the other packages it needs (benchmarks/gpu/requirements.txt) that do not import,
# and with --wheels DIR installs them from the wheel files in DIR (`make gpu-wheels` fills one) into a
# folder of their own on PYTHONPATH, never into the Python environment; without DIR it stops there.
# --out DIR (default results/benchmarks/gpu) receives figures.txt (every step's output under a header
# naming its command) and environment.txt (GPU, torch, the packages). --smoke runs the same steps on the
# CPU at tiny sizes, the test that keeps this script working (tests/workflow/test_gpu_benchmark.py).
# A step that fails or runs out of time is recorded in figures.txt and the next one runs.
# Exit status: 0 when every step finished, 1 when one did not, 2 when a package is missing, 64 on bad usage.
# PYTHON (default python3) is the interpreter.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}
usage="usage: benchmarks/gpu/run.sh [--wheels DIR] [--out DIR] [--smoke]"
wheels="" out="$ROOT/results/benchmarks/gpu" smoke=0
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) wheels=${2:?$usage}; shift 2 ;;
        --out) out=${2:?$usage}; shift 2 ;;
        --smoke) smoke=1; shift ;;
        -h | --help) echo "$usage"; exit 0 ;;
        *) echo "$usage" >&2; exit 64 ;;
    esac
done
mkdir -p "$out"
figures="$out/figures.txt"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# The imports of the three scripts that a bare PyTorch image may lack (each from requirements.txt).
modules=(open_clip zarr numcodecs google_crc32c dask.array jsonschema nnsight sparsify)
missing() {
    "$PYTHON" - "${modules[@]}" <<'EOF'
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:
        print(name)
EOF
}
absent=$(missing)
if [ -n "$absent" ]; then
    if [ -z "$wheels" ]; then
        echo "missing: $(echo $absent); rerun with --wheels DIR, DIR filled by 'make gpu-wheels'" >&2
        exit 2
    fi
    site="${TMPDIR:-/tmp}/clipmech-gpu-site"
    echo "missing: $(echo $absent); installing benchmarks/gpu/requirements.txt from $wheels into $site"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" --find-links "$wheels" -r "$ROOT/benchmarks/gpu/requirements.txt" || exit 2
    export PYTHONPATH="$PYTHONPATH:$site"
    absent=$(missing)
    if [ -n "$absent" ]; then
        echo "still missing after the install: $(echo $absent)" >&2
        exit 2
    fi
fi

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: none"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.is_available())'
    "$PYTHON" -m pip list 2>/dev/null | grep -i -E "^(torch|numpy|open.clip|zarr|nnsight|eai.sparsify) " || true
} >"$out/environment.txt"

failed=0
# step LIMIT SCRIPT ARGS...: run benchmarks/SCRIPT under a limit of LIMIT seconds, its output into figures.txt.
step() {
    local limit=$1 script=$2
    shift 2
    echo "== benchmarks/$script $* (limit ${limit} s)" | tee -a "$figures"
    timeout "$limit" "$PYTHON" "$ROOT/benchmarks/$script" "$@" 2>"$out/last-step.err" | tee -a "$figures"
    local status=${PIPESTATUS[0]}
    if [ "$status" -eq 124 ]; then
        echo "-- ran out of its ${limit} s" | tee -a "$figures"
        failed=1
    elif [ "$status" -ne 0 ]; then
        echo "-- failed (exit $status):" | tee -a "$figures"
        tail -n 20 "$out/last-step.err" | tee -a "$figures"
        failed=1
    fi
}

: >"$figures"
if [ "$smoke" -eq 1 ]; then
    common=(--device cpu --threads 1)
    step 60 extraction.py --model clipmech-vit-tiny --images 4 --batch-size 2 --repeats 1 \
        --precision fp32,bf16 "${common[@]}"
    step 60 patching.py --model clipmech-vit-tiny --pairs 1 --families mlp_out --positions 1 --batch-size 5 \
        --repeats 1 --precision fp32,bf16 "${common[@]}"
    step 60 sae.py --d 16 --atoms 32 --k-true 2 --images 40 --tokens-per-image 9 --chunk-images 8 \
        --expansion 2 --k 2 --steps 3 --batch-size 32 --buffer-tokens 128 --random-reads 10 --no-latents \
        "${common[@]}"
else
    common=(--device cuda --threads 8)
    step 140 extraction.py --model ViT-B-16 --images 256 --batch-size 64 --repeats 2 --precision fp32,bf16 \
        "${common[@]}"
    step 140 extraction.py --model ViT-L-14 --images 96 --batch-size 32 --repeats 2 --precision fp32,bf16 \
        "${common[@]}"
    step 100 patching.py --model ViT-B-16 --pairs 4 --families resid_pre,attn_out,mlp_out --positions 4 \
        --batch-size 256 --repeats 2 --precision fp32,bf16 "${common[@]}"
    step 70 sae.py --d 768 --atoms 1024 --k-true 8 --images 4000 --tokens-per-image 65 --chunk-images 50 \
        --expansion 16 --k 32 --steps 200 --batch-size 4096 --buffer-tokens 262144 --dead-tokens 10000000 \
        --no-latents "${common[@]}"
fi
rm -f "$out/last-step.err"
echo "figures: $figures"
exit "$failed"
