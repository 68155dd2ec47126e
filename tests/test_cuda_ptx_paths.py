"""A budget of the PTX instructions ONE element costs in the hottest CUDA kernels (issue
22), counted without a GPU by bench/ptx_paths.py: the longest path from the kernel's
entry to its element loop plus one pass through the loop, the window's inner loops
counted trips times, divisions weighted by the machine code they expand to.

The whole-kernel budgets of tests/test_cuda_ptx.py catch a body compiled twice; these
catch a few instructions more per element on the path that runs (an index division, a
64-bit widening), which the whole-kernel count would hide among both paths' code.
Budgets are ~17 % above the counts of 2026-12-06 (bench/RESULTS.md, "one launch per
step, reorders on a 3-D grid"); lower them when a change lowers the counts.
"""

from __future__ import annotations

import os

import pytest
from ptx_paths import EXPANSIONS, element_costs, entry_blocks, find_loops, per_element
from ptx_registers import ELEMENT_PATHS, element_instructions, hot_kernels
from test_cuda_ptx import CC, ptx_unavailable_reason

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("NUMBA_ENABLE_CUDASIM")),
    reason="the CUDA simulator has no NVVM: PTX is compiled in a run without NUMBA_ENABLE_CUDASIM")

ELEMENT_BUDGETS = {
    "im2col 3×3 same": 270,  # 231 (242 with the 64-bit remainder of index.split)
    "im2col 11×11/4 (AlexNet conv1)": 5150,  # 4383
    "col2im 3×3 same": 335,  # 286
    "col2im 11×11/4 (3×3 windows)": 890,  # 760
    "max_pool_forward 3×3/2": 625,  # 531
    "max_pool_backward 3×3/2": 470,  # 399
    "gemm_to_nchw": 75,  # 64 (426 on the 1-D grid, a division per element)
    "nchw_to_gemm": 72,  # 61 (403 on the 1-D grid)
}


@pytest.fixture(scope="module")
def ptx_of() -> dict[str, str]:
    reason = ptx_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    from numba import cuda

    return {label: cuda.compile_ptx(fn, types, cc=CC, fastmath=False)[0]
            for label, fn, types in hot_kernels()}


def over_budget(counts: dict[str, int]) -> list[str]:
    return [f"{label}: {count} PTX instructions per element > {ELEMENT_BUDGETS[label]}"
            for label, count in counts.items() if count > ELEMENT_BUDGETS[label]]


def test_every_counted_path_has_a_budget():
    assert {label for label, *_ in ELEMENT_PATHS} == set(ELEMENT_BUDGETS)


def test_hot_kernels_stay_within_their_per_element_budget(ptx_of: dict[str, str]):
    counts = element_instructions(ptx_of)
    print("PTX instructions per element:", counts)
    assert not over_budget(counts), "\n".join(over_budget(counts))


def test_one_division_more_in_a_body_breaks_the_budget(ptx_of: dict[str, str]):
    """The check can fail: a 64-bit division added to im2col's 3×3 element loop (where
    a body's index arithmetic would put it) goes over the budget."""
    ptx = ptx_of["im2col"]
    blocks = entry_blocks(ptx)
    header = next(loop for loop in find_loops(blocks) if not loop.children).header
    label = blocks[header].label
    at = ptx.index(f"{label}:") + len(label) + 1
    regressed = ptx[:at] + "\n\tdiv.s64 \t%rd1, %rd1, %rd2;" + ptx[at:]
    counts = element_instructions({**ptx_of, "im2col": regressed})
    assert counts["im2col 3×3 same"] == element_instructions(ptx_of)["im2col 3×3 same"] + 80
    assert [line.split(":")[0] for line in over_budget(counts)] == ["im2col 3×3 same"]


# A kernel by hand: a prologue of 3, an element loop whose body has 2 instructions, an
# inner loop unrolled twice (2 stores an iteration, 6 instructions) and a branch whose
# longer side has 2 instructions, and the back edge.
SYNTHETIC = """
.visible .entry k(
.param .u64 p
)
{
.reg .b64 %rd<9>;
\tld.param.u64 \t%rd1, [p];
\tmov.u64 \t%rd2, 0;
\tbra.uni \t$L__BB0_1;
$L__BB0_1:
\tadd.s64 \t%rd3, %rd2, 1;
\tmov.u64 \t%rd4, 0;
$L__BB0_2:
\tst.global.f32 \t[%rd1], %f1;
\tst.global.f32 \t[%rd1+4], %f1;
\tadd.s64 \t%rd4, %rd4, 2;
\tadd.s64 \t%rd1, %rd1, 8;
\tsetp.lt.s64 \t%p1, %rd4, %rd3;
\t@%p1 bra \t$L__BB0_2;
\tsetp.eq.s64 \t%p2, %rd3, 0;
\t@%p2 bra \t$L__BB0_4;
\tdiv.u32 \t%r1, %r2, %r3;
\tmul.lo.s64 \t%rd5, %rd3, %rd3;
$L__BB0_4:
\tadd.s64 \t%rd2, %rd2, 1;
\tsetp.lt.s64 \t%p3, %rd2, %rd9;
\t@%p3 bra \t$L__BB0_1;
\tret;
}
"""


def test_counting_on_a_kernel_written_by_hand():
    """prologue 3; one pass: 2 + 5 taps × 6/2 + 2 + (16 for the div.u32 + 1: the branch's
    longer side) + 3 = 39."""
    (cost,) = element_costs(SYNTHETIC, trips=(5,), marker=r"st\.global")
    assert cost.has_inner_loops and cost.prologue == 3
    u32_division = next(w for pattern, w in EXPANSIONS if pattern.match("div.u32"))
    assert cost.iteration == 2 + 5 * 6 / 2 + 2 + (u32_division + 1) + 3 == 39
    assert per_element(SYNTHETIC, True, (5,)) == cost.total
    with pytest.raises(ValueError, match="no outermost loop without"):
        per_element(SYNTHETIC, False)
