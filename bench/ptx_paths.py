"""The PTX instructions one element costs in a CUDA kernel, counted statically (no GPU).

A grid-stride kernel gives each thread one element when the grid covers them all, which
the launchers do up to 65,536 blocks. What such a thread executes is the way from the
kernel's entry to its element loop's head, then one pass through the loop body. This
module parses the PTX of the kernel entry into basic blocks and their control flow,
finds the loops (back edges to a dominating block, natural loops, their nesting), and
counts, for each outermost loop (a kernel with a constant 3×3 path and a general path
has one or more for each; LLVM may also version a loop on a runtime condition):

    per element = longest path entry → loop head (other outermost loops left out)
                + longest path head → back edge through one iteration

An inner loop (the window's taps) counts as ``trips`` × one iteration of it, with
``trips`` given per nesting depth (FH then FW); an innermost loop that LLVM unrolled
counts per *marker*, the instruction every tap executes once (im2col's store, the
loads of col2im and pooling): iteration / markers in it × trips. Branches count their
longer side, and the remainder of an unrolled loop, which lies after it, counts whole:
the figure is an upper bound of the straight-line path, and any instruction added to a
body (a division, a 64-bit widening) raises it. ``bench/ptx_registers.py`` prints it and
``tests/test_cuda_ptx_paths.py`` keeps it within budgets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LABEL = re.compile(r"^(\$\w+):")
# 64-bit integer arithmetic (no moves, no memory)
INT64 = r"^(?!ld|st|cvta|mov)[a-z.]*\.[sub]64\b"
# PTX instructions that sm_90 has no instruction for, weighted by their machine code:
# the growth of a cubin's .text (16-byte instructions, to 8) when ptxas 13 assembles one
# of them in a kernel of a load and a store (slow paths included: an upper bound).
EXPANSIONS = [(re.compile(r"^(div|rem)\.[su]64"), 80), (re.compile(r"^(div|rem)\.[su]32"), 16),
              (re.compile(r"^div\.rn\.f32"), 112), (re.compile(r"^sqrt\.rn\.f32"), 40)]
_BRANCH = re.compile(r"^(@!?%\w+\s+)?bra(?:\.uni)?\s+(\$\w+);")


def weight(instruction: str) -> int:
    """1 for a PTX instruction, or what it expands to (:data:`EXPANSIONS`)."""
    for pattern, machine in EXPANSIONS:
        if pattern.match(instruction):
            return machine
    return 1


@dataclass
class Block:
    label: str
    instructions: list[str] = field(default_factory=list)
    successors: list[int] = field(default_factory=list)

    def cost(self, only: re.Pattern | None = None) -> float:
        """Its weighted instructions, or with ``only`` the count of those matching it."""
        if only is not None:
            return float(sum(1 for i in self.instructions if only.match(i)))
        return float(sum(weight(i) for i in self.instructions))


@dataclass
class Loop:
    header: int
    body: set[int]
    latches: set[int]
    children: list[Loop] = field(default_factory=list)
    depth: int = 0  # 0 for an outermost loop


def entry_blocks(ptx: str) -> list[Block]:
    """The basic blocks of the PTX's (first) kernel entry, with their successors."""
    body = ptx[ptx.index("{", ptx.index(".entry")) + 1:]
    blocks: list[Block] = [Block("entry")]
    ends: list[tuple[str | None, bool]] = []  # per block: branch target, falls through

    def close(target: str | None, falls: bool) -> None:
        ends.append((target, falls))
        blocks.append(Block(""))

    for raw in body.splitlines():
        line = raw.strip()
        label = _LABEL.match(line)
        if label:
            if blocks[-1].instructions or blocks[-1].label:
                close(None, True)
            blocks[-1].label = label.group(1)
            continue
        if not line.endswith(";") or line.startswith((".", "//")):
            continue
        blocks[-1].instructions.append(line)
        branch = _BRANCH.match(line)
        if branch:
            close(branch.group(2), bool(branch.group(1)))
        elif line.startswith("ret;") or line.startswith("exit;"):
            close(None, False)
    ends.append((None, False))
    index = {b.label: i for i, b in enumerate(blocks) if b.label}
    for i, (block, (target, falls)) in enumerate(zip(blocks, ends, strict=True)):
        if target is not None:
            block.successors.append(index[target])
        if falls and i + 1 < len(blocks):
            block.successors.append(i + 1)
    return blocks


def dominators(blocks: list[Block]) -> list[set[int]]:
    everything = set(range(len(blocks)))
    preds: list[list[int]] = [[] for _ in blocks]
    for i, b in enumerate(blocks):
        for s in b.successors:
            preds[s].append(i)
    dom = [everything.copy() for _ in blocks]
    dom[0] = {0}
    changed = True
    while changed:
        changed = False
        for i in range(1, len(blocks)):
            new = {i} | (set.intersection(*(dom[p] for p in preds[i])) if preds[i] else set())
            if new != dom[i]:
                dom[i], changed = new, True
    return dom


def find_loops(blocks: list[Block]) -> list[Loop]:
    """The outermost natural loops, each with its nested loops as ``children``."""
    dom = dominators(blocks)
    preds: list[list[int]] = [[] for _ in blocks]
    for i, b in enumerate(blocks):
        for s in b.successors:
            preds[s].append(i)
    loops: dict[int, Loop] = {}
    for u, b in enumerate(blocks):
        for h in b.successors:
            if h in dom[u]:  # a back edge u → h
                loop = loops.setdefault(h, Loop(h, {h}, set()))
                loop.latches.add(u)
                stack = [u]
                while stack:
                    v = stack.pop()
                    if v not in loop.body:
                        loop.body.add(v)
                        stack.extend(preds[v])
    ordered = sorted(loops.values(), key=lambda lp: len(lp.body))
    outermost = []
    for i, loop in enumerate(ordered):
        parent = next((p for p in ordered[i + 1:] if loop.body < p.body), None)
        (parent.children if parent else outermost).append(loop)

    def set_depth(loop: Loop, depth: int) -> None:
        loop.depth = depth
        for child in loop.children:
            set_depth(child, depth + 1)

    for loop in outermost:
        set_depth(loop, 0)
    return sorted(outermost, key=lambda lp: lp.header)


def _longest(nodes: dict[int, float], edges: dict[int, set[int]], start: int,
             ends: set[int]) -> float:
    """Longest node-weighted path from ``start`` to any of ``ends`` in an acyclic graph."""
    best: dict[int, float] = {}
    visiting: set[int] = set()

    def walk(v: int) -> float:  # longest path from v to an end, v included
        if v in best:
            return best[v]
        if v in visiting:
            raise ValueError("irreducible control flow: a cycle left after collapsing loops")
        visiting.add(v)
        tails = [walk(s) for s in edges.get(v, ()) if s in nodes]
        visiting.discard(v)
        reach = [t for t in tails if t != float("-inf")]
        if v in ends:
            reach.append(0.0)
        best[v] = nodes[v] + max(reach) if reach else float("-inf")
        return best[v]

    return walk(start)


def _collapse(blocks: list[Block], region: set[int], loops: list[Loop], cost_of: dict[int, float],
              only: re.Pattern | None) -> tuple[dict[int, float], dict[int, set[int]],
                                               dict[int, int]]:
    """Nodes (blocks of ``region`` outside ``loops``, and each loop as its header) with
    their costs, and the edges between them."""
    owner = {b: loop.header for loop in loops for b in loop.body}
    nodes = {b: blocks[b].cost(only) for b in region if b not in owner}
    nodes.update({loop.header: cost_of[loop.header] for loop in loops})
    edges: dict[int, set[int]] = {}
    for b in region:
        u = owner.get(b, b)
        for s in blocks[b].successors:
            if s in region:
                v = owner.get(s, s)
                if v != u:
                    edges.setdefault(u, set()).add(v)
    return nodes, edges, owner


def _iteration(blocks: list[Block], loop: Loop, trips: tuple[int, ...], marker: re.Pattern,
               only: re.Pattern | None = None) -> float:
    """Instructions of one pass head → back edge of ``loop``, its inner loops counted."""
    cost_of = {}
    for child in loop.children:
        once = _iteration(blocks, child, trips, marker, only)
        if child.depth - 1 >= len(trips):
            raise ValueError(f"a loop at depth {child.depth} but trips for {len(trips)} only")
        per = once
        if not child.children:  # innermost: maybe unrolled, count per tap
            marks = sum(1 for b in child.body for ins in blocks[b].instructions
                        if marker.match(ins))
            per = once / max(marks, 1)
        cost_of[child.header] = per * trips[child.depth - 1]
    nodes, edges, owner = _collapse(blocks, loop.body, loop.children, cost_of, only)
    for u in edges:
        edges[u].discard(loop.header)  # the back edges
    latches = {owner.get(b, b) for b in loop.latches}
    return _longest(nodes, edges, loop.header, latches)


@dataclass
class ElementCost:
    header: str  # the loop head's PTX label
    has_inner_loops: bool
    prologue: float
    iteration: float

    @property
    def total(self) -> int:
        return round(self.prologue + self.iteration)


def element_costs(ptx: str, trips: tuple[int, ...] = (), marker: str = r"st\.global",
                  inner: bool | None = None, only: str | None = None) -> list[ElementCost]:
    """Per outermost loop of the kernel (those with inner loops or those without when
    ``inner`` says), the PTX instructions one element costs (see the module's
    docstring): inner loops run ``trips[d]`` times at depth d + 1, an innermost loop
    counted per instruction matching ``marker``. With ``only``, the instructions matching
    it are counted instead (e.g. :data:`INT64`), each as one, along the same paths."""
    blocks = entry_blocks(ptx)
    selected = re.compile(only) if only is not None else None
    loops = find_loops(blocks)
    pattern = re.compile(marker)
    out = []
    for loop in loops:
        if inner is not None and bool(loop.children) != inner:
            continue
        others = set().union(*(lp.body for lp in loops if lp is not loop))
        region = set(range(len(blocks))) - others - (loop.body - {loop.header})
        nodes = {b: blocks[b].cost(selected) for b in region}
        nodes[loop.header] = 0.0  # counted in the iteration
        edges = {b: {s for s in blocks[b].successors if s in region} for b in region}
        edges[loop.header] = set()  # the path ends there
        prologue = _longest(nodes, edges, 0, {loop.header})
        iteration = _iteration(blocks, loop, trips, pattern, selected)
        out.append(ElementCost(blocks[loop.header].label, bool(loop.children), prologue,
                               iteration))
    return out


def per_element(ptx: str, inner: bool, trips: tuple[int, ...] = (),
                marker: str = r"st\.global", only: str | None = None) -> int:
    """The largest per-element cost over the kernel's outermost loops with inner loops
    (``inner``: the general geometry's path) or without (constant windows, reorders)."""
    costs = [c.total for c in element_costs(ptx, trips, marker, inner, only)]
    if not costs:
        raise ValueError(f"no outermost loop {'with' if inner else 'without'} inner loops")
    return max(costs)
