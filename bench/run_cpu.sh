#!/usr/bin/env bash
# The full CPU benchmark, appended as a dated section to bench/RESULTS.md:
#
#     bash bench/run_cpu.sh [extra bench/suite.py options]
#
# Runs `bench/suite.py fmnist alexnet --device cpu --compare torch` (per-layer tables,
# training throughput, JIT warm-up, conv GFLOP/s against numpy's SGEMM, peak RSS of
# alexnet batch-16 training in fresh processes, start-up of a second process), then
# bench/alternate.py (each framework in its own process, alternating, 5 runs each,
# medians and spread; quiet and beside a second training) and bench/gemm_rates.py --conv
# (conv forward ÷ SGEMM in 5 fresh processes), all with
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for this run only, so numpy's OpenBLAS
# picks its native kernel (which one is recorded, via threadpoolctl). Needs PyTorch for
# the comparison (pip install torch==2.13.0, a CPU build) and threadpoolctl for the BLAS
# line; without them those parts say so. The text and JSON of the run are kept in
# $BENCH_OUT (default: a new temp dir). Sections are appended, never replaced, so
# RESULTS.md keeps the history.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_OUT:-$(mktemp -d /tmp/numbacnn-bench.XXXXXX)}
mkdir -p "$out"
json="$out/cpu-bench.json"
text="$out/cpu-bench.txt"

python3 -c "import torch" 2>/dev/null ||
    echo "run_cpu.sh: PyTorch is not installed (pip install torch==2.13.0): no comparison" >&2
python3 -c "import threadpoolctl" 2>/dev/null ||
    echo "run_cpu.sh: threadpoolctl is not installed: the BLAS kernel is not recorded" >&2

# Other work on the machine skews every figure: with BENCH_WAIT_IDLE=SECONDS wait up to that
# long for the 1-minute load average to fall below 0.5 (it is recorded either way).
wait_idle=${BENCH_WAIT_IDLE:-0}
while ((wait_idle > 0)) && awk '{exit !($1 >= 0.5)}' /proc/loadavg; do
    sleep 10
    wait_idle=$((wait_idle - 10))
done
echo "run_cpu.sh: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

args=(fmnist alexnet --device cpu --compare torch "$@")
shown="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/suite.py ${args[*]}"
notes="OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} and OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)}"
notes+=" in the calling shell, unset for this run only"
echo "run_cpu.sh: $shown" >&2

env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    python3 bench/suite.py "${args[@]}" --output "$json" | tee "$text"

python3 bench/report.py "$json" --command "bash bench/run_cpu.sh: $shown" \
    --notes "$notes" >> bench/RESULTS.md

# Each framework in its own process, alternating, 5 runs each: quiet, then beside a second
# training (bench/alternate.py); the tables go under the section just written.
{
    echo "### Separate processes, alternating (bench/alternate.py)"
    echo
    for load in "" "--load"; do
        python3 bench/alternate.py fmnist --batch 128 --runs 5 $load --markdown
        python3 bench/alternate.py alexnet --batch 16 --runs 5 --steps 5 $load --markdown |
            tail -n 1
        echo
    done
    # The conv ÷ SGEMM target, judged on 5 fresh processes (one process's 10 steps swing
    # ±20 % on this VM): bench/gemm_rates.py --conv.
    echo "### Conv forward ÷ numpy SGEMM, 5 fresh processes (bench/gemm_rates.py --conv)"
    echo
    python3 bench/gemm_rates.py --conv fmnist alexnet --runs 5 --markdown
    echo
} | tee -a "$text" >> bench/RESULTS.md
echo "run_cpu.sh: appended a section to bench/RESULTS.md; text and JSON in $out" >&2
