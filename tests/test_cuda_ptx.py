"""Every CUDA kernel compiles to PTX for sm_90, computes in float32 only and keeps its
locals in registers (no GPU needed).

Inside the CUDA backend's dry run (``tests/device_context.py``), on networks built on
"cuda", the forward and backward passes of a network of every layer type and of each
layer kind alone in its tiny classifier (tests/layer_cases.py), the loss and its batch
statistics,
both optimizers, ``zeros`` (fill) and the four SGEMM transposes (with and without
split-K) run on host arrays and record each launch as (kernel function, numba argument
types). Each distinct pair is compiled with ``numba.cuda.compile_ptx(..., cc=(9, 0))``
with the kernel's own options: its PTX must hold no ``.f64`` (a bare Python float in a
kernel body silently makes the GPU compute in double precision), no ``.local`` memory
and no approximate transcendental (``.approx`` other than the SGEMM's). Every driver of
the CUDA backend must have been recorded, so a new kernel cannot escape the check.

Where a ``ptxas`` that reads numba-cuda's PTX version is installed (the ``test`` extra
brings NVIDIA's ``nvidia-cuda-nvcc``), every kernel is assembled for sm_90: no spills,
and the numba SGEMM within 128 registers per thread.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from device_context import dry_cuda
from layer_cases import LAYER_CASES

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("NUMBA_ENABLE_CUDASIM")),
    reason="the CUDA simulator has no NVVM: PTX is compiled in a run without NUMBA_ENABLE_CUDASIM")

CC = (9, 0)


def ptx_unavailable_reason() -> str | None:
    """Why compile_ptx cannot run here (numba-cuda or its NVVM missing), or None."""
    try:
        import numba_cuda  # noqa: F401
        from numba import cuda, types
        from numba.cuda.cudadrv.error import CudaSupportError, NvvmError, NvvmSupportError
    except ImportError as exc:
        return f"numba-cuda is not installed ({exc})"

    def probe(out):
        out[0] = out[0] + np.float32(1.0)

    try:
        cuda.compile_ptx(probe, (types.float32[::1],), cc=CC)
    except (NvvmSupportError, NvvmError, CudaSupportError, OSError) as exc:
        return f"NVVM is not available to numba-cuda ({type(exc).__name__}: {exc})"
    return None


Record = tuple[Callable, tuple]


def drive_every_kernel() -> list[Record]:
    """Run all layers, the loss, SGD, Adam and the four GEMMs under dry_run on "cuda"."""
    from numbacnn.backends import cuda as cuda_backend
    from numbacnn.layers import (
        ELU,
        LRN,
        AvgPool2D,
        BatchNorm,
        Conv2D,
        Dense,
        Dropout,
        Flatten,
        LeakyReLU,
        Maxout,
        MaxPool2D,
        ReLU,
        Sigmoid,
        Tanh,
    )
    from numbacnn.network import Network
    from numbacnn.training.optim import SGD, Adam

    rng = np.random.default_rng(0)
    # the numba SGEMM, to record it too
    with dry_cuda("numba") as records, warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # the loss reads unwritten buffers
        # Tanh first: the first layer's backward skips dx, the convolution's must not. The
        # ReLUs after the first convolution and after BatchNorm are fused into them; the
        # later one runs its kernels.
        layers = [Tanh(), Conv2D(4, 3, stride=2, pad=1), ReLU(), Maxout(2), LRN(3),
                  MaxPool2D(2), LeakyReLU(0.1), Conv2D(2, 1), BatchNorm(), ReLU(), AvgPool2D(2, 1),
                  Sigmoid(), Tanh(), ELU(), ReLU(), Dropout(0.5), Flatten(), Dense(6), Dense(3)]
        net = Network(layers, input_shape=(2, 7, 7), device="cuda").initialize(seed=1)
        x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
        net.train_step(x, np.array([0, 2]))
        net.loss.label_smoothing = 0.1  # the smoothed loss's kernel too
        net.train_step_on_device(x, np.array([0, 2]), cuda_backend.zeros((2,)))
        for optimizer in (SGD(), Adam()):
            optimizer.step(net, 0.01)
        net.predict_proba(x)
        for case in LAYER_CASES.values():  # each layer kind (tests/layer_cases.py), after a
            # tanh so that its backward kernel computes dx (a first layer's skips it)
            alone = Network.from_spec(case.network_spec(classes=3, before="tanh"),
                                      device="cuda").initialize(seed=1)
            alone.train_step(case.draw(rng), np.arange(case.shape[0]) % 3)
        # Winograd's kernels (a fused ReLU: the masked transforms; dx after the tanh)
        winograd = Network.from_spec("input 7x7x2\ntanh\nconv 3 3 pad=1 algo=winograd "
                                     "activation=relu\nfc 3\nsoftmax", device="cuda")
        winograd.initialize(seed=1).train_step(x, np.array([0, 2]))
        # the direct convolution's kernels (a fused ReLU; dx after the tanh)
        direct = Network.from_spec("input 7x7x2\ntanh\nconv 3 3 pad=1 algo=direct "
                                   "activation=relu\nfc 3\nsoftmax", device="cuda")
        direct.initialize(seed=1).train_step(x, np.array([0, 2]))
        winograd5 = Network.from_spec("input 7x7x2\ntanh\nconv 3 5 pad=2 algo=winograd "
                                      "activation=relu\nfc 3\nsoftmax", device="cuda")
        winograd5.initialize(seed=1).train_step(x, np.array([0, 2]))
        s2d = Network.from_spec("input 9x9x2\ntanh\nconv 3 5 stride=2 algo=s2d activation=relu\n"
                                "fc 3\nsoftmax", device="cuda")  # space-to-depth's kernels
        s2d.initialize(seed=1).train_step(rng.standard_normal((2, 2, 9, 9)).astype(np.float32),
                                          np.array([0, 2]))
        B = cuda_backend
        for trans_a, trans_b in itertools.product((False, True), repeat=2):
            a = np.ones((3, 5) if trans_a else (5, 3), np.float32)
            b = np.ones((4, 3) if trans_b else (3, 4), np.float32)
            B.gemm(a, b, B.empty((5, 4)), trans_a=trans_a, trans_b=trans_b)
        tall = np.ones((5, 4096), np.float32)  # a weight-gradient shape: split-K
        B.gemm(tall, tall, B.empty((5, 5)), trans_b=True)
        return list(records)


@pytest.fixture(scope="module")
def records() -> list[Record]:
    reason = ptx_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return drive_every_kernel()


def expected_kernels() -> dict[Callable, str]:
    """Every kernel function of the CUDA backend: its drivers and the 4 SGEMM variants."""
    from numbacnn.backends import cuda as cuda_backend
    from numbacnn.backends import cuda_direct, cuda_space_to_depth, cuda_winograd, cuda_winograd5
    from numbacnn.backends.sgemm import sgemm_kernel, sum_splits

    # launchers carry py_func; device functions (numba dispatchers) are compiled inside them
    kernels = {obj.py_func: name for module in (cuda_backend, cuda_winograd, cuda_winograd5,
                                                 cuda_direct, cuda_space_to_depth)
               for name, obj in vars(module).items()
               if callable(obj) and hasattr(obj, "py_func") and not hasattr(obj, "targetoptions")}
    for trans_a, trans_b in itertools.product((False, True), repeat=2):
        kernels[sgemm_kernel(trans_a, trans_b).py_func] = f"sgemm(trans_a={trans_a}, " \
                                                          f"trans_b={trans_b})"
    kernels[sum_splits.py_func] = "sum_splits"
    return kernels


def compile_options(fn: Callable) -> dict:
    """The options the backend compiles ``fn`` with (fastmath, launch bounds)."""
    from numbacnn.backends import sgemm

    if fn in {sgemm.sgemm_kernel(a, b).py_func
              for a, b in itertools.product((False, True), repeat=2)}:
        return {"fastmath": True, "launch_bounds": sgemm.LAUNCH_BOUNDS}
    return {"fastmath": False}


@pytest.fixture(scope="module")
def compiled(records: list[Record]) -> list[tuple[str, Callable, tuple, str]]:
    """(label, kernel, argument types, PTX) of each distinct recorded launch."""
    from numba import cuda

    names = expected_kernels()
    out = []
    for fn, argtypes in dict.fromkeys(records):  # dedupe, keep the order of first launch
        ptx, _ = cuda.compile_ptx(fn, argtypes, cc=CC, **compile_options(fn))
        out.append((f"{names.get(fn, fn.__name__)}{argtypes}", fn, argtypes, ptx))
    return out


def test_every_cuda_driver_is_recorded(records: list[Record]):
    """The dry run launched every kernel the CUDA backend defines (at least 35)."""
    expected = expected_kernels()
    assert len(expected) >= 37
    missing = sorted(name for fn, name in expected.items()
                     if fn not in {fn for fn, _ in records})
    assert not missing, f"kernels never launched by the dry run: {missing}"


# What fastmath puts in: hardware approximations that replace the accurate libdevice
# routines (those use ex2.approx / rcp.approx internally, with corrections: allowed).
FAST_MATH = r"(tanh|sin|cos|lg2|sqrt|rsqrt)\.approx|div\.(approx|full)"


def ptx_problems(ptx: str, approx_allowed: bool) -> list[str]:
    """What a float32 kernel's PTX must not hold: float64 instructions, local memory (an
    array not promoted to registers), approximate math where exactness is promised."""
    problems = []
    lines = [line.strip() for line in ptx.splitlines()]
    f64 = [line for line in lines if ".f64" in line]
    if f64:
        problems.append(f"{len(f64)} float64 PTX lines, e.g. {f64[:3]}")
    local = [line for line in lines if ".local" in line]
    if local:
        problems.append(f"local memory: {local[:3]}")
    approx = [line for line in lines if re.match(FAST_MATH, line)]
    if approx and not approx_allowed:
        problems.append(f"approximate math: {approx[:3]}")
    return problems


def test_ptx_check_catches_f64_local_memory_and_approximations():
    """The checker itself: each problem in a small PTX text is reported."""
    assert ptx_problems("add.f32 %f1, %f2, %f3;", approx_allowed=False) == []
    assert ptx_problems("add.f64 %fd1, %fd2, %fd3;", False)[0].startswith("1 float64")
    assert ptx_problems(".local .align 4 .b8 __local_depot0[32];", False)[0].startswith("local")
    assert ptx_problems("tanh.approx.f32 %f1, %f2;", False)[0].startswith("approximate")
    assert ptx_problems("tanh.approx.f32 %f1, %f2;", approx_allowed=True) == []
    assert ptx_problems("div.full.f32 %f1, %f2, %f3;", False)[0].startswith("approximate")
    assert ptx_problems("ex2.approx.ftz.f32 %f6, %f5;", False) == []  # inside accurate expf


def test_every_kernel_compiles_to_ptx_without_f64(compiled: list):
    """compile_ptx for sm_90 succeeds for each distinct (kernel, types); no .f64, no local
    memory, no approximate math outside the SGEMM."""
    started = time.perf_counter()
    failures = []
    for label, fn, _, ptx in compiled:
        approx_allowed = compile_options(fn)["fastmath"]
        failures += [f"{label}: {problem}" for problem in ptx_problems(ptx, approx_allowed)]
    print(f"checked {len(compiled)} kernels' PTX (cc {CC}) in "
          f"{time.perf_counter() - started:.1f} s")
    assert len(compiled) >= 37
    assert not failures, "\n".join(failures)


def find_ptxas() -> str | None:
    """NVIDIA's pip ptxas (nvidia-cuda-nvcc), else one on the PATH."""
    try:
        import nvidia

        for root in nvidia.__path__:
            for candidate in sorted(Path(root).glob("cu*/bin/ptxas"), reverse=True):
                return str(candidate)
    except ImportError:
        pass
    return shutil.which("ptxas")


def assemble(ptx: str, tmp_path: Path) -> str:
    """``ptxas -v`` output for sm_90; skip when no ptxas here reads this PTX version."""
    ptxas = find_ptxas()
    if ptxas is None:
        pytest.skip("no ptxas installed (pip install nvidia-cuda-nvcc matching numba-cuda's "
                    "CUDA version)")
    source = tmp_path / "kernel.ptx"
    source.write_text(ptx)
    proc = subprocess.run([ptxas, "-arch=sm_90", "-v", str(source), "-o",
                           str(tmp_path / "kernel.cubin")], capture_output=True, text=True)
    if "Unsupported .version" in proc.stderr:
        pytest.skip(f"{ptxas} does not read this PTX: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_every_kernel_assembles_without_spills(compiled: list, tmp_path: Path):
    """ptxas -v for sm_90: 0 spill bytes in every kernel; the SGEMM ≤ 128 registers."""
    from numbacnn.backends import sgemm

    sgemm_kernels = {sgemm.sgemm_kernel(a, b).py_func
                     for a, b in itertools.product((False, True), repeat=2)}
    failures, registers = [], {}
    for label, fn, _, ptx in compiled:
        report = assemble(ptx, tmp_path)
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
        if not spills:
            failures.append(f"{label}: no spill report in {report[:200]!r}")
        elif any(int(a) or int(b) for a, b in spills):
            failures.append(f"{label}: spills {spills}")
        used = [int(n) for n in re.findall(r"Used (\d+) registers", report)]
        if fn in sgemm_kernels:
            registers[label] = max(used)
            if max(used) > sgemm.MAX_REGISTERS:
                failures.append(f"{label}: {max(used)} registers > {sgemm.MAX_REGISTERS}")
    print("SGEMM registers per thread:", registers)
    assert len(registers) == 4
    assert not failures, "\n".join(failures)


PTX_PARAM_BYTES = {"u64": 8, "s64": 8, "b64": 8, "f64": 8, "u32": 4, "s32": 4, "b32": 4,
                   "f32": 4, "u16": 2, "s16": 2, "b16": 2, "u8": 1, "s8": 1, "b8": 1}
SLOT_BYTES = {"q": 8, "Q": 8, "d": 8, "f4x": 4, "i4x": 4, "I4x": 4, "h6x": 2, "H6x": 2,
              "b7x": 1, "B7x": 1}


def entry_parameter_bytes(ptx: str) -> list[int]:
    """The size of each parameter of the PTX's kernel entry, in order."""
    entry = ptx[ptx.index(".entry"):]
    params = entry[entry.index("(") + 1:entry.index(")")]
    return [PTX_PARAM_BYTES[kind] for kind in re.findall(r"\.param\s+\.(\w+)", params)]


def test_fast_launch_packs_every_kernel_as_its_ptx_expects(compiled: list):
    """launch.py writes each argument word where numba's kernel ABI puts it: for every
    recorded kernel, one slot per PTX parameter, of the parameter's size."""
    from numbacnn.backends.launch import slot_codes

    checked = 0
    for label, _, argtypes, ptx in compiled:
        codes = slot_codes(argtypes)
        if codes is None:
            continue  # launched by numba itself
        assert [SLOT_BYTES[c] for c in codes] == entry_parameter_bytes(ptx), label
        checked += 1
    assert checked >= 37  # every kernel of the backend takes the fast path


def test_fast_launch_layout_check_can_fail():
    """A slot list that drops an array's stride or widens a float32 is caught."""
    reason = ptx_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from numba import types

    from numbacnn.backends.launch import slot_codes

    codes = slot_codes((types.float32[:, ::1], types.float32, types.int64))
    assert [SLOT_BYTES[c] for c in codes] == [8] * 9 + [4, 8]
    ptx = ".entry k(\n.param .u64 a,\n" * 1 + ".param .u64 b,\n" * 8 + ".param .f32 c,\n" \
        ".param .u64 d\n)"
    assert [SLOT_BYTES[c] for c in codes] == entry_parameter_bytes(ptx)
    assert [SLOT_BYTES[c] for c in codes[1:]] != entry_parameter_bytes(ptx)
    assert slot_codes((types.boolean,)) is None


# The hottest element kernels (issue 22): at most 64 registers per thread, i.e. at least
# 50 % occupancy on sm_90 (65,536 registers for 2,048 threads an SM), and a budget of PTX
# instructions. Both catch a CPU-shaped body (whole planes, int64 range loops) compiled
# into the kernel again: with the span bodies im2col took 122 registers and 2,049
# instructions, col2im 96 and 1,353, max-pool backward 90 and 1,205
# (bench/ptx_registers.py, bench/RESULTS.md).
HOT_REGISTERS = 64
HOT_PTX_INSTRUCTIONS = {"im2col": 1000, "col2im": 900, "max_pool_forward": 550,
                        "max_pool_backward": 450}


def ptx_instructions(ptx: str) -> int:
    """Instructions of the PTX's kernel entry (statements, not declarations or labels)."""
    body = ptx[ptx.index("{", ptx.index(".entry")):]
    return sum(1 for line in body.splitlines()
               if line.strip().endswith(";") and not line.strip().startswith((".", "//")))


def test_ptx_instruction_count_reads_statements_only():
    ptx = ".entry k(\n.param .u64 a\n)\n{\n.reg .b64 %rd<3>;\n$L1:\nadd.s64 %rd1, %rd2, 1;" \
          "\n// note;\n@%p1 bra $L1;\nret;\n}"
    assert ptx_instructions(ptx) == 3


def test_hot_kernels_keep_registers_and_instructions_within_budget(compiled: list,
                                                                   tmp_path: Path):
    """im2col, col2im and max pooling (every signature the dry run launched): ≤ 64
    registers, no spills, PTX instructions within HOT_PTX_INSTRUCTIONS."""
    from numbacnn.backends import cuda as cuda_backend

    hot = {getattr(cuda_backend, name).py_func: name for name in HOT_PTX_INSTRUCTIONS}
    failures, seen = [], {}
    for label, fn, _, ptx in compiled:
        name = hot.get(fn)
        if name is None:
            continue
        report = assemble(ptx, tmp_path)
        registers = max(int(n) for n in re.findall(r"Used (\d+) registers", report))
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
        count = ptx_instructions(ptx)
        seen[label] = (registers, count)
        if registers > HOT_REGISTERS:
            failures.append(f"{label}: {registers} registers > {HOT_REGISTERS}")
        if any(int(a) or int(b) for a, b in spills):
            failures.append(f"{label}: spills {spills}")
        if count > HOT_PTX_INSTRUCTIONS[name]:
            failures.append(f"{label}: {count} PTX instructions > {HOT_PTX_INSTRUCTIONS[name]}")
    print("registers, PTX instructions:", seen)
    assert set(HOT_PTX_INSTRUCTIONS) <= {hot[fn] for _, fn, _, _ in compiled if fn in hot}
    assert not failures, "\n".join(failures)


# Over 64: ptxas gave a whole 6×6 tile 90, half of one 70, a third 80 (it schedules the
# loads early); no spills
WINOGRAD5_INPUT_REGISTERS = 72


def test_winograd_kernels_keep_within_64_registers(compiled: list, tmp_path: Path):
    """The Winograd transforms (one thread per tile: 16 values in registers, 36 for 5×5)
    assemble within HOT_REGISTERS registers and without spills; the 5×5 input transform
    (half a tile a thread) within WINOGRAD5_INPUT_REGISTERS."""
    from numbacnn.backends import cuda_winograd, cuda_winograd5

    kernels = {obj.py_func: name for module in (cuda_winograd, cuda_winograd5)
               for name, obj in vars(module).items()
               if name.startswith("winograd") and hasattr(obj, "py_func")}
    failures, seen = [], {}
    for label, fn, _, ptx in compiled:
        if fn not in kernels:
            continue
        report = assemble(ptx, tmp_path)
        registers = max(int(n) for n in re.findall(r"Used (\d+) registers", report))
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
        seen[kernels[fn]] = registers
        budget = WINOGRAD5_INPUT_REGISTERS if kernels[fn] == "winograd5_inputs" else HOT_REGISTERS
        if registers > budget or any(int(a) or int(b) for a, b in spills):
            failures.append(f"{label}: {registers} registers, spills {spills}")
    print("Winograd registers:", seen)
    assert set(seen) == set(kernels.values()) and len(seen) == 10
    assert not failures, "\n".join(failures)


def test_direct_convolution_kernels_keep_within_64_registers(compiled: list, tmp_path: Path):
    """The direct convolution's kernels (one thread per output, weight or input element)
    assemble within HOT_REGISTERS registers and without spills."""
    from numbacnn.backends import cuda_direct

    kernels = {obj.py_func: name for name, obj in vars(cuda_direct).items()
               if name.startswith("direct_") and hasattr(obj, "py_func")}
    failures, seen = [], {}
    for label, fn, _, ptx in compiled:
        if fn not in kernels:
            continue
        report = assemble(ptx, tmp_path)
        registers = max(int(n) for n in re.findall(r"Used (\d+) registers", report))
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
        seen[kernels[fn]] = registers
        if registers > HOT_REGISTERS or any(int(a) or int(b) for a, b in spills):
            failures.append(f"{label}: {registers} registers, spills {spills}")
    print("registers:", seen)
    assert set(seen) == set(kernels.values()), f"not recorded: {set(kernels.values()) - set(seen)}"
    assert not failures, "\n".join(failures)
