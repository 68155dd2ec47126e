"""In numba's CUDA simulator: the GEMM reorders on their 3-D grid equal the CPU drivers
bit for bit, and the optimizer's one flat update equals one update per parameter bit
for bit (issue 22: no per-element division; one launch per step).

Run by tests/test_cuda_simulator.py with NUMBA_ENABLE_CUDASIM=1 (tiny shapes: the
simulator runs each CUDA thread as a Python thread).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from numbacnn import to_host
from numbacnn.backends import cpu
from numbacnn.backends import cuda as B
from numbacnn.backends.cuda_grid import plane_grid_shape
from numbacnn.network import Network
from numbacnn.training.optim import SGD, Adam

pytestmark = pytest.mark.skipif(
    not os.environ.get("NUMBA_ENABLE_CUDASIM"),
    reason="needs NUMBA_ENABLE_CUDASIM=1 before numba is imported; "
           "tests/test_cuda_simulator.py runs these in a subprocess")

DEVICE = "cuda"  # read by the autouse fixture of tests/conftest.py


def test_plane_grid_shape_covers_every_element_in_whole_warps():
    assert plane_grid_shape(3 * 5, 5, 7) == ((1, 1, 3), (32, 8))
    assert plane_grid_shape(2 * 96, 96, 27 * 27) == ((3, 96, 2), (256, 1))
    assert plane_grid_shape(128 * 384, 384, 13 * 13) == ((1, 384, 128), (192, 1))
    assert plane_grid_shape(70000 * 2, 2, 49)[0][2] == 65535  # block-stride over images


@pytest.mark.parametrize("N, K, P", [(2, 3, 5), (3, 9, 40), (1, 2, 1)])
@pytest.mark.parametrize("relu", [0, 1])
def test_reorders_on_the_3d_grid_equal_the_cpu(N: int, K: int, P: int, relu: int,
                                               rng: np.random.Generator):
    """K not a multiple of the block's planes, P not a multiple of a warp."""
    out = rng.standard_normal((K, N * P)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    y_cpu = np.empty(N * K * P, np.float32)
    cpu.gemm_to_nchw(N * K, P, y_cpu, out, b, K, P, relu)
    y = B.zeros((N * K * P,))
    B.gemm_to_nchw(N * K, P, y, B.to_device(out), B.to_device(b), K, P, relu)
    np.testing.assert_array_equal(to_host(y), y_cpu)

    dy = rng.standard_normal(N * K * P).astype(np.float32)
    dy2_cpu = np.empty((K, N * P), np.float32)
    cpu.nchw_to_gemm(K * N, P, dy2_cpu, dy, y_cpu, K, P, relu)
    dy2 = B.zeros((K, N * P))
    B.nchw_to_gemm(K * N, P, dy2, B.to_device(dy), B.to_device(y_cpu), K, P, relu)
    np.testing.assert_array_equal(to_host(dy2), dy2_cpu)


@pytest.mark.parametrize("optimizer", [SGD, Adam])
def test_one_flat_update_equals_one_update_per_parameter(optimizer: type,
                                                         rng: np.random.Generator):
    """Two steps of the flat update against the same kernel launched per parameter on
    copies (the update before the flat buffers), all on the simulated GPU."""
    net = Network.from_spec("input 4x4x1; conv 2 3 pad=1; batchnorm; fc 3",
                            device=DEVICE).initialize(seed=0)
    names = [name for name, _, _ in net.parameters()]
    weights = {name: B.to_device(to_host(w)) for name, w, _ in net.parameters()}
    slots = {name: [B.zeros(w.shape) for _ in optimizer.slots] for name, w in weights.items()}
    opt = optimizer(weight_decay=0.01)
    for _ in range(2):
        grads = {name: rng.standard_normal(weights[name].shape).astype(np.float32)
                 for name in names}
        for name, _, g in net.parameters():
            B.upload(grads[name], g)
        opt.step(net, 0.1)
        for name, w in weights.items():
            g, n = B.to_device(grads[name]), w.size
            if optimizer is SGD:
                B.sgd_momentum(n, w.reshape(-1), slots[name][0].reshape(-1), g.reshape(-1),
                               np.float32(0.1), np.float32(opt.momentum), np.float32(0.01))
            else:
                lr_t = 0.1 * np.sqrt(1 - opt.beta2 ** opt.t) / (1 - opt.beta1 ** opt.t)
                m, v = slots[name]
                B.adam(n, w.reshape(-1), m.reshape(-1), v.reshape(-1), g.reshape(-1),
                       np.float32(lr_t), np.float32(opt.beta1), np.float32(opt.beta2),
                       np.float32(opt.eps), np.float32(0.01))
    for name, w, _ in net.parameters():
        np.testing.assert_array_equal(to_host(w), to_host(weights[name]), err_msg=name)
