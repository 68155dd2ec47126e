"""Groups of ONNX nodes that are one numbacnn layer, for ``numbacnn import``.

numbacnn export writes a few layers as several nodes (docs/onnx.md): GELU as
x·(erf(x/√2) + 1)·½ (PyTorch's export of nn.GELU is the same), LRN with an even size
written out (ONNX's LRN window differs), maxout as Reshape + ReduceMax; other tools
write a fully connected layer as MatMul + Add. Each ``PATTERNS`` entry is
(``match``, ``read``): ``match(walk, nodes, i)`` returns the group of nodes starting
at ``nodes[i]`` when they have that exact shape (else an empty list, and the first
node is read on its own), ``read(walk, group)`` adds the layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from numbacnn.io.onnx_graph import Node
from numbacnn.io.onnx_ops import attribute_values, fully_connected, number
from numbacnn.io.onnx_walk import Walk

Match = Callable[[Walk, list[Node], int], list[Node]]
Read = Callable[[Walk, list[Node]], None]


def _follows(nodes: list[Node], j: int, op: str, *inputs: str) -> Node | None:
    """nodes[j] when it is ``op`` taking each of ``inputs`` (in any order)."""
    if j < len(nodes) and nodes[j].op == op and all(t in nodes[j].inputs for t in inputs):
        return nodes[j]
    return None


def _operand(walk: Walk, node: Node | None, computed: str) -> np.ndarray | None:
    """The stored constant that a two-input ``node`` combines with ``computed``."""
    if node is None or len(node.inputs) != 2 or computed not in node.inputs:
        return None
    other = node.inputs[1] if node.inputs[0] == computed else node.inputs[0]
    return walk.graph.constants.get(other)


def _is(value: np.ndarray | None, expected: float, tolerance: float = 1e-6) -> bool:
    return (value is not None and value.size == 1 and value.dtype.kind == "f"
            and abs(float(value.reshape(-1)[0]) - expected) <= tolerance * abs(expected))


# ----------------------------------------------------------------------------- GELU


def _match_gelu(walk: Walk, nodes: list[Node], i: int) -> list[Node]:
    x = walk.current
    div = nodes[i]
    if not _is(_operand(walk, div, x), 2 ** 0.5) or div.inputs[0] != x:
        return []
    erf = _follows(nodes, i + 1, "Erf", div.outputs[0])
    add = erf and _follows(nodes, i + 2, "Add", erf.outputs[0])
    mul = add and _follows(nodes, i + 3, "Mul", x, add.outputs[0])
    half = mul and _follows(nodes, i + 4, "Mul", mul.outputs[0])
    if not (add and _is(_operand(walk, add, erf.outputs[0]), 1.0) and half
            and _is(_operand(walk, half, mul.outputs[0]), 0.5)):
        return []
    return nodes[i:i + 5]


def _read_gelu(walk: Walk, group: list[Node]) -> None:
    for node in group:
        attribute_values(node, ())
    walk.add(group[0], "gelu", {})


# ----------------------------------------------------------------------------- LRN


def _match_even_lrn(walk: Walk, nodes: list[Node], i: int) -> list[Node]:
    """x², Reshape, Conv with a ones window, Reshape, ·alpha/size, +k, ^−beta, ·x."""
    x = walk.current
    if nodes[i].inputs != [x, x] or walk.flat:
        return []
    ops = ("Reshape", "Conv", "Reshape", "Mul", "Add", "Pow")
    group = [nodes[i]]
    for j, op in enumerate(ops, start=i + 1):
        node = _follows(nodes, j, op, group[-1].outputs[0])
        if node is None:
            return []
        group.append(node)
    last = _follows(nodes, i + 7, "Mul", x, group[-1].outputs[0])
    window = walk.graph.constants.get(group[2].inputs[1]) if len(group[2].inputs) > 1 else None
    if last is None or window is None or window.ndim != 4 or window.shape[:2] != (1, 1):
        return []
    size = window.shape[2]
    C, H, W = walk.shape
    conv = group[2].attributes
    if (window.shape[3] != 1 or not np.all(window == 1) or len(group[2].inputs) != 2
            or conv.get("pads") != [size // 2, 0, (size - 1) // 2, 0]
            or set(conv) - {"pads", "kernel_shape"}
            or _shape(walk, group[1]) != [0, 1, C, H * W] or _shape(walk, group[3]) != [0, C, H, W]
            or any(_operand(walk, n, n.inputs[0]) is None for n in group[4:7])):
        return []
    return [*group, last]


def _shape(walk: Walk, reshape: Node) -> list[int] | None:
    target = walk.graph.constants.get(reshape.inputs[1]) if len(reshape.inputs) > 1 else None
    return None if target is None else [int(d) for d in target.reshape(-1)]


def _read_even_lrn(walk: Walk, group: list[Node]) -> None:
    size = int(walk.graph.constants[group[2].inputs[1]].shape[2])
    alpha_n, k, power = (float(_operand(walk, n, n.inputs[0]).reshape(-1)[0])
                         for n in group[4:7])
    walk.add(group[0], "lrn", {"size": str(size), "alpha": _times(alpha_n, size),
                               "beta": number(-power), "k": number(k)})


def _times(fraction: float, size: int) -> str:
    """The shortest decimal alpha with float32(alpha / size) == fraction (export wrote
    alpha/size as float32)."""
    target = np.float32(fraction)
    for digits in range(1, 18):
        text = f"{fraction * size:.{digits}g}"
        if np.float32(float(text) / size) == target:
            return text
    return repr(fraction * size)


# ----------------------------------------------------------------------------- maxout


def _match_maxout(walk: Walk, nodes: list[Node], i: int) -> list[Node]:
    reshape = nodes[i]
    target = _shape(walk, reshape)
    reduce = _follows(nodes, i + 1, "ReduceMax", reshape.outputs[0])
    C, H, W = walk.shape
    if walk.flat or target is None or reduce is None or len(target) != 5 or target[3:] != [H, W]:
        return []
    groups, pieces = target[1:3]
    axes = reduce.attributes.get("axes")
    if axes is None and len(reduce.inputs) > 1:
        stored = walk.graph.constants.get(reduce.inputs[1])
        axes = None if stored is None else [int(a) for a in stored.reshape(-1)]
    if (target[0] not in (0, -1) or groups * pieces != C or axes not in ([2], [-3])
            or reduce.attributes.get("keepdims", 1) != 0
            or set(reduce.attributes) - {"axes", "keepdims"}):
        return []
    return [reshape, reduce]


def _read_maxout(walk: Walk, group: list[Node]) -> None:
    attribute_values(group[0], (), {"allowzero": 0})
    walk.add(group[0], "maxout", {"pieces": str(_shape(walk, group[0])[2])})


# ----------------------------------------------------------------------------- MatMul


def _match_matmul(walk: Walk, nodes: list[Node], i: int) -> list[Node]:
    matmul = nodes[i]
    if len(matmul.inputs) != 2 or matmul.inputs[0] != walk.current:
        return []
    add = _follows(nodes, i + 1, "Add", matmul.outputs[0])
    if add is not None and _operand(walk, add, matmul.outputs[0]) is not None:
        return [matmul, add]
    return [matmul]


def _read_matmul(walk: Walk, group: list[Node]) -> None:
    for node in group:
        attribute_values(node, ())
    B = walk.weights(group[0], 1, "weights")
    bias: Any = None
    if len(group) == 2:
        add = group[1]
        bias = walk.weights(add, 1 if add.inputs[0] == group[0].outputs[0] else 0, "biases")
    fully_connected(walk, group[0], B.T, bias)


PATTERNS: dict[str, list[tuple[Match, Read]]] = {
    "Div": [(_match_gelu, _read_gelu)],
    "Mul": [(_match_even_lrn, _read_even_lrn)],
    "Reshape": [(_match_maxout, _read_maxout)],
    "MatMul": [(_match_matmul, _read_matmul)],
}
