"""What a CUDA training step costs besides its kernels, counted in a dry run.

:func:`step_traffic` counts the kernel launches (cuBLAS calls included), host↔device
copies and device allocations of one training step as ``numbacnn train`` runs it, and
of one progress update. ``numbacnn.backends.cuda.dry_run()`` records instead of
running, so no GPU is needed and nothing is computed. The suite reports it on CUDA;
``tests/test_step_traffic.py`` pins the fmnist figures that bench/RESULTS.md records.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numbacnn.training.profiler import LEARNING_RATE, spec_label


def step_traffic(spec: str, batch: int, gemm: str | None = None,
                 seed: int = 0) -> dict[str, Any]:
    """Counts of one CUDA training step of ``spec`` at ``batch`` images (batch upload from
    pinned memory, forward, loss and its device-side sums, backward, SGD update) and of
    one progress update (the sums read back and zeroed). The first steps allocate the
    buffers; the third step is counted. ``gemm``: count as with "cublas" or "numba"
    (default: the one in use)."""
    from numbacnn.backends import cuda as B
    from numbacnn.network import Network
    from numbacnn.training.optim import SGD
    from numbacnn.training.staging import BatchStaging

    # in a dry run device "cuda" needs no GPU; the GEMM choice is restored afterwards
    with B.dry_run(), B.using_gemm(gemm or B.gemm_name(), check=False):
        net = Network.from_spec(spec, device="cuda").initialize(seed)
        optimizer = SGD(momentum=0.9, weight_decay=5e-4)
        xs = BatchStaging((batch, *net.input_shape), device=net.device)
        ys = BatchStaging((batch,), np.int64, device=net.device)
        stats = B.zeros((2,))

        def step() -> None:
            xs.host(batch)[...] = 0.0
            ys.host(batch)[...] = 0
            net.train_step_on_device(xs.upload(batch), ys.upload(batch), stats)
            optimizer.step(net, LEARNING_RATE)

        step()
        step()
        B.reset_counters()
        step()
        per_step = B.reset_counters()
        B.to_host(stats)
        B.fill(2, stats, np.float32(0.0))
        per_update = B.reset_counters()
        gemm = B.gemm_name()
    return {"spec": spec_label(spec), "batch": batch, "gemm": gemm,
            "per_step": per_step, "per_progress_update": per_update}
