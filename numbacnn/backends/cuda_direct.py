"""The GPU's direct convolution over the whole batch (``algo=direct``; bodies: the element
bodies of ``numbacnn/kernels/direct_conv.py``).

Forward: one thread per output element, summing its channels' taps in a register.
Backward: one thread per (image, filter, tap) computes that image's share of the tap's
weight gradient (and one per (image, filter) its bias gradient) into a buffer of N
rows, then one thread per weight sums the N rows in image order (gather form, no
atomics); the input gradient: one thread per input element, gathering from the output
gradient. Re-exported by ``cuda.py``, whose ``DIRECT_AUTO_MAX_TAPS`` (None) keeps
``algo=auto`` from picking it on the GPU until a GPU measurement says where it pays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import config, cuda

from numbacnn.backends.cuda_grid import grid_stride, python_bodies
from numbacnn.errors import DeviceError
from numbacnn.kernels import direct_conv

if config.ENABLE_CUDASIM:  # the simulator runs kernels as Python: call the bodies' Python source
    direct_conv = python_bodies(direct_conv)  # noqa: F811


def direct_workspace(N: int, C: int, K: int, H: int, W: int, OH: int, OW: int, geo: tuple,
                     groups: int) -> dict[str, tuple]:
    """Shapes of the float32 buffers of :func:`direct_backward`: each image's weight and
    bias gradients, N × K × ((C/G)·FH·FW + 1)."""
    return {"direct_images": (N, K, C // groups * geo[0] * geo[1] + 1)}


def direct_forward(x: Any, H: int, W: int, w2: Any, b: Any, y: Any, ws: dict[str, Any],
                   geo: tuple, groups: int, OH: int, OW: int, relu: int) -> None:
    """y (N×K×OH×OW, passed flat) = the stride-1 convolution of x (N×C×(H·W)) with w2
    (K × (C/G)·FH·FW) plus b, then ReLU when ``relu``."""
    N, K = x.shape[0], w2.shape[0]
    direct_forward_elements(N * K * OH * OW, y, x, w2, b, H, W, geo, groups, OH, OW,
                            np.int64(relu))


def direct_backward(x: Any, H: int, W: int, w2: Any, y: Any, dy: Any, dw2: Any, db: Any,
                    dx: Any, ws: dict[str, Any], geo: tuple, groups: int, OH: int, OW: int,
                    relu: int) -> None:
    """dw2 (K × (C/G)·FH·FW), db (K) and, unless it is None, dx (N×C×(H·W)) from dy
    (passed flat like y), with the forward pass's input x and output y (its ReLU mask,
    when ``relu``)."""
    images = ws["direct_images"]
    N, K, E = images.shape
    mask = np.int64(relu)
    direct_image_grads(N * K * E, images, x, dy, y, H, W, geo, groups, OH, OW, mask)
    direct_sum_images(K * E, dw2, db, images)
    if dx is not None:
        direct_input_grads(dx.shape[0] * dx.shape[1] * H * W, dx, dy, y, w2, H, W, geo, groups,
                           OH, OW, mask)


# conv → ReLU → 2×2 stride-2 max pooling: the CPU fuses them (``cpu_direct.py``); the GPU
# keeps the two layers apart (``DIRECT_POOL_FUSES`` False), as nothing here measured a
# fused kernel faster, so its names only refuse
def direct_pool_workspace(*args: Any) -> Any:
    """Refuses: the GPU runs the convolution and the pooling as their own layers."""
    raise DeviceError("the fused convolution → ReLU → max pooling runs on the CPU only; on "
                      "the GPU the layers run one after the other (DIRECT_POOL_FUSES is False)")


direct_pool_forward = direct_pool_backward = direct_pool_workspace


# What cuda.py re-exports: the drivers, then DIRECT_AUTO_MAX_TAPS (None: not measured on a
# GPU) and DIRECT_POOL_FUSES (False: the pooling drivers above refuse)
DRIVERS = (direct_workspace, direct_forward, direct_backward, direct_pool_workspace,
           direct_pool_forward, direct_pool_backward, None, False)


# --- kernels: one thread per element ----------------------------------------------------
@grid_stride
def direct_forward_elements(n, y, x, w2, b, H, W, geo, groups, OH, OW, relu):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        direct_conv.forward_element_at(i, y, x, w2, b, H, W, geo, groups, OH, OW, relu)


@grid_stride
def direct_image_grads(n, images, x, dy, y, H, W, geo, groups, OH, OW, relu):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        direct_conv.image_grads_at(i, images, x, dy, y, H, W, geo, groups, OH, OW, relu)


@grid_stride
def direct_sum_images(n, dw2, db, images):
    for j in range(cuda.grid(1), n, cuda.gridsize(1)):
        direct_conv.sum_images_at(j, dw2, db, images)


@grid_stride
def direct_input_grads(n, dx, dy, y, w2, H, W, geo, groups, OH, OW, relu):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        direct_conv.input_grad_element_at(i, dx, dy, y, w2, H, W, geo, groups, OH, OW, relu)
