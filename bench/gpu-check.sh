#!/usr/bin/env bash
# The one prepared check for a lent NVIDIA GPU (H100), run from the repository root:
#
#     bash bench/gpu-check.sh            # logs and results under $OUT (or a new temp dir)
#
# 1. installs numpy 2.4 wheels carried in .whl/ (if any) into /tmp/site, then numbacnn
#    itself (pip install -e . --no-deps --no-build-isolation: the device machine has no
#    network, so pip must not fetch setuptools for an isolated build);
# 2. prints nvidia-smi and `numbacnn devices`;
# 3. runs tests/cuda_sim on the real GPU: NUMBACNN_DEVICE=cuda with NUMBA_ENABLE_CUDASIM=0
#    (numba reads "0" as "simulator off", while those tests' skip check only asks whether
#    the variable is set), then the normal suite's CUDA-related tests (PTX compilation
#    and the like, without the simulator subprocess);
# 4. runs the GPU benchmark: numbacnn bench fmnist alexnet --device cuda --batch 128
#    --compare torch --json > $OUT/gpu-bench.json (plus a text rendering beside it).
#
# Every step has a `timeout` cut from one 570 s budget, so the whole script ends within
# 10 minutes; a failing step is logged and the script goes on. $OUT/summary.txt lists
# each step's exit status (124 = timed out).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_BUDGET:-570}
START=$SECONDS
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

log() { echo "[gpu-check $((SECONDS - START))s] $*" | tee -a "$OUT/gpu-check.log" >&2; }

# step NAME CAP_SECONDS LOGFILE COMMAND...: run COMMAND under timeout min(CAP, time left)
step() {
    local name=$1 cap=$2 logfile=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START)))
    if ((left < 10)); then
        log "$name: skipped, the time budget is spent"
        echo "$name: skipped (no time left)" >> "$SUMMARY"
        return 0
    fi
    local limit=$((cap < left ? cap : left))
    log "$name: start (limit ${limit}s) -> $logfile"
    timeout --kill-after=10 "$limit" "$@" > "$logfile" 2>&1
    local rc=$?
    log "$name: exit $rc"
    echo "$name: exit $rc ($((SECONDS - START))s)" >> "$SUMMARY"
    return 0
}

# --- 1. install ---------------------------------------------------------------------------
if compgen -G ".whl/*.whl" > /dev/null; then
    step "carried wheels" 90 "$OUT/pip-wheels.log" \
        python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
step "pip install -e ." 90 "$OUT/pip-install.log" \
    python3 -m pip install -q -e . --no-deps --no-build-isolation
python3 - > "$OUT/versions.txt" 2>&1 <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("numpy", "numba", "numba_cuda", "torch", "cupy", "threadpoolctl"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:
        print(name, "not available:", type(exc).__name__, exc)
EOF
cat "$OUT/versions.txt" >&2

# --- 2. the device ------------------------------------------------------------------------
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
step "numbacnn devices" 60 "$OUT/devices.txt" python3 -m numbacnn_cli.main devices
cat "$OUT/devices.txt" >&2

# --- 3. CUDA tests on the real GPU ----------------------------------------------------------
step "tests/cuda_sim on the GPU" 180 "$OUT/test-cuda-device.log" \
    env NUMBACNN_DEVICE=cuda NUMBA_ENABLE_CUDASIM=0 \
    python3 -m pytest tests/cuda_sim -q -x -p no:cacheprovider -rs
tail -n 3 "$OUT/test-cuda-device.log" >&2
if grep -qE "^[0-9]+ skipped" "$OUT/test-cuda-device.log"; then
    log "WARNING: tests/cuda_sim skipped everything: their skip check no longer accepts" \
        "NUMBA_ENABLE_CUDASIM=0; give them a real-GPU switch"
fi
step "CUDA tests of the normal suite" 90 "$OUT/test-cuda-suite.log" \
    env -u NUMBA_ENABLE_CUDASIM python3 -m pytest tests -q -x -p no:cacheprovider -rs \
    --ignore=tests/cuda_sim -k "(cuda or gpu) and not simulator"
tail -n 3 "$OUT/test-cuda-suite.log" >&2

# --- 4. the GPU benchmark --------------------------------------------------------------------
step "numbacnn bench (cuda)" 300 "$OUT/gpu-bench.log" \
    env -u NUMBA_ENABLE_CUDASIM sh -c "python3 -m numbacnn_cli.main bench fmnist alexnet \
        --device cuda --batch 128 --compare torch --json > '$OUT/gpu-bench.json'"
if [ -s "$OUT/gpu-bench.json" ]; then
    python3 - "$OUT/gpu-bench.json" > "$OUT/gpu-bench.txt" 2>&1 <<'EOF'
import json, sys
from numbacnn.bench import format_text
print(format_text(json.load(open(sys.argv[1]))))
EOF
    cat "$OUT/gpu-bench.txt" >&2
fi

log "done; logs in $OUT"
cat "$SUMMARY" >&2
