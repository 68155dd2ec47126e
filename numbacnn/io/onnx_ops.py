"""ONNX operators → numbacnn layers: the mapping table of ``numbacnn import``.

Two tables. ``ATTRIBUTES``: for each operator with a window, which spec option each
ONNX attribute becomes and how its value is written (``Attribute`` rows); an
attribute is taken as soon as the layer declares that option and the option takes
the value (so a new layer option needs no change here), and until then it is refused
unless numbacnn computes that value anyway (group=1, dilations of 1, ceil_mode that
changes no size). ``OPS``: each operator's reader, and ``PATTERNS``: the groups of
nodes that numbacnn export writes for one layer (GELU, LRN with an even size,
maxout, MatMul + Add). docs/onnx.md ("Importing") lists what each becomes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from numbacnn.io.onnx_graph import Node
from numbacnn.io.onnx_walk import Walk, refuse


@dataclass(frozen=True)
class Attribute:
    """ONNX attribute ``name`` (``default`` when the node leaves it out) → spec option
    ``option`` written as ``text(value)`` (None: the value has no spec text, ``why``).
    ``needed(value, values, shape)``: whether only the option can express the value
    (False: numbacnn computes it without the option); ``only_when_needed``: write the
    option only then (the rounding of a size that is whole anyway). ``missing``: why it
    is refused while the layer lacks the option ('' for "KIND has no OPTION option").
    ``synthetic``: not an ONNX attribute but what the operator always does (Conv floors
    its output size), so a node cannot set it."""

    name: str
    default: Any
    option: str | None
    text: Callable[[Any], str | None] = str
    needed: Callable[[Any, dict[str, Any], tuple[int, int, int]], bool] = (
        lambda value, values, shape: True)
    why: str = ""
    only_when_needed: bool = False
    missing: str = ""
    synthetic: bool = False


def _pair(value: Any) -> str | None:
    """[H, W] → 'H' when equal, else 'HxW' (the spec's rectangular form)."""
    if len(value) != 2:
        return None
    return f"{value[0]}" if value[0] == value[1] else f"{value[0]}x{value[1]}"


def _pads(value: Any) -> str | None:
    """ONNX pads [top, left, bottom, right] → the pair when both ends of each axis match,
    else 'top,left,bottom,right'."""
    if len(value) != 4:
        return None
    if list(value[:2]) != list(value[2:]):
        return ",".join(str(v) for v in value)
    return _pair(value[:2])


def number(value: float) -> str:
    """A float attribute (stored as float32) as its shortest decimal: 1e-05, not
    9.99999974738e-06."""
    return str(np.float32(value))


def _other_than(default: Any) -> Callable[[Any, dict[str, Any], Any], bool]:
    return lambda value, values, shape: list(np.atleast_1d(value)) != list(
        np.atleast_1d(default))


def _not_whole(value: Any, values: dict[str, Any], shape: tuple[int, int, int]) -> bool:
    """(W + pads − D·(F − 1) − 1)/S is not whole on an axis: ONNX then floors it (ceils it
    with ceil_mode=1), numbacnn needs its round option for either."""
    pads, dilations = values["pads"], values.get("dilations", [1, 1])
    for size, F, S, before, after, d in zip(shape[1:], values["kernel_shape"], values["strides"],
                                            pads[:2], pads[2:], dilations, strict=False):
        if (size + before + after - (F - 1) * d - 1) % S:
            return True
    return False


_ROUNDING = ("ONNX rounds (W − F + 2P)/S + 1 where it is not whole, and {kind} has no round "
             "option")


_PAIR_WHY = "a 2-D window is needed"
_WINDOW = (
    Attribute("kernel_shape", None, "size", _pair, why=_PAIR_WHY),
    Attribute("strides", [1, 1], "stride", _pair, why=_PAIR_WHY),
    Attribute("pads", [0, 0, 0, 0], "pad", _pads, _other_than([0, 0, 0, 0]),
              "numbacnn pads both sides of an axis alike"),
    Attribute("dilations", [1, 1], "dilation", _pair, _other_than([1, 1]), _PAIR_WHY),
)
_POOL = (*_WINDOW,
         Attribute("ceil_mode", 0, "round", lambda v: "ceil" if v else "floor", _not_whole,
                   only_when_needed=True, missing=_ROUNDING))
ATTRIBUTES: dict[str, tuple[Attribute, ...]] = {
    "Conv": (*_WINDOW, Attribute("group", 1, "groups", str, _other_than(1)),
             Attribute("rounding", "floor", "round", str, _not_whole, only_when_needed=True,
                       missing=_ROUNDING, synthetic=True)),
    "MaxPool": (*_POOL, Attribute("storage_order", 0, None, needed=_other_than(0))),
    "AveragePool": (*_POOL, Attribute(
        "count_include_pad", 0, "count_pad", lambda v: "yes" if v else "no",
        lambda value, values, shape: any(values["pads"]), only_when_needed=True)),
    "LRN": (Attribute("size", None, "size"), Attribute("alpha", 1e-4, "alpha", number),
            Attribute("beta", 0.75, "beta", number), Attribute("bias", 1.0, "k", number)),
    "BatchNormalization": (
        Attribute("epsilon", 1e-5, "eps", number), Attribute("momentum", 0.9, "momentum", number),
        Attribute("training_mode", 0, None, needed=_other_than(0)),
        Attribute("spatial", 1, None, needed=_other_than(1))),
    "LeakyRelu": (Attribute("alpha", 0.01, "alpha", number),),
    "Elu": (Attribute("alpha", 1.0, "alpha", number),),
    "Gemm": (Attribute("alpha", 1.0, None, needed=_other_than(1.0)),
             Attribute("beta", 1.0, None, needed=_other_than(1.0)),
             Attribute("transA", 0, None, needed=_other_than(0)),
             Attribute("transB", 0, None, needed=lambda v, values, shape: False)),
}


def attribute_values(node: Node, table: tuple[Attribute, ...],
                     defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The node's value of every attribute of ``table`` (ONNX's default, or
    ``defaults``, where it leaves one out); refused for an attribute not in the table."""
    names = {row.name for row in table if not row.synthetic} | set(defaults or {})
    for name in node.attributes:
        if name not in names:
            raise refuse(node, f"attribute {name} is not supported")
    values = {row.name: row.default for row in table} | (defaults or {})
    values.update(node.attributes)
    for row in table:
        if values[row.name] is None:
            raise refuse(node, f"has no {row.name} attribute")
    return values


def _window(walk: Walk, node: Node, kernel: Any = None) -> dict[str, Any]:
    """Attribute values of a Conv or pooling node, ``auto_pad`` turned into ``pads``."""
    extra = {"auto_pad": "NOTSET"} | ({"kernel_shape": kernel} if kernel is not None else {})
    values = attribute_values(node, ATTRIBUTES[node.op], extra)
    auto = values.pop("auto_pad")
    if auto == "VALID":
        values["pads"] = [0, 0, 0, 0]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        before, after = [], []
        for size, F, S, d in zip(walk.shape[1:], values["kernel_shape"], values["strides"],
                                 values.get("dilations", [1, 1]), strict=False):
            total = max((-(-size // S) - 1) * S + (F - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            before.append(small if auto == "SAME_UPPER" else large)
            after.append(large if auto == "SAME_UPPER" else small)
        values["pads"] = before + after
    elif auto != "NOTSET":
        raise refuse(node, f"auto_pad={auto} is not supported")
    return values


# ----------------------------------------------------------------------------- operators


def _conv(walk: Walk, node: Node) -> None:
    walk.need_volume(node)
    W = walk.weights(node, 1, "weights")
    if W.ndim != 4:
        raise refuse(node, f"weights of shape {list(W.shape)} are not K x C x FH x FW: numbacnn "
                     "has 2-D convolutions only")
    b = walk.weights(node, 2, "biases", optional=True)
    values = _window(walk, node, list(W.shape[2:]))
    options = {"filters": str(W.shape[0]), **walk.options(node, "conv", ATTRIBUTES["Conv"],
                                                           values)}
    walk.add(node, "conv", options, {"W": W, "b": np.zeros(W.shape[0]) if b is None else b})


def _pool(kind: str) -> Callable[[Walk, Node], None]:
    def read(walk: Walk, node: Node) -> None:
        walk.need_volume(node)
        if len([o for o in node.outputs if o]) > 1:
            raise refuse(node, "its Indices output is not supported")
        values = _window(walk, node)
        walk.add(node, kind, walk.options(node, kind, ATTRIBUTES[node.op], values))
    return read


def _global_pool(kind: str) -> Callable[[Walk, Node], None]:
    def read(walk: Walk, node: Node) -> None:
        walk.need_volume(node)
        attribute_values(node, ())
        plane = Attribute("window", None, "size", _pair, why=_PAIR_WHY)
        walk.add(node, kind, walk.options(node, kind, (plane,), {"window": list(walk.shape[1:])}))
    return read


def _reduce(kind: str) -> Callable[[Walk, Node], None]:
    """ReduceMean/ReduceMax over H and W (PyTorch's export of AdaptiveAvgPool2d(1) and of
    x.mean((2, 3))): the global pooling, flattened when keepdims=0."""
    def read(walk: Walk, node: Node) -> None:
        walk.need_volume(node)
        values = attribute_values(node, (), {"axes": None, "keepdims": 1,
                                             "noop_with_empty_axes": 0})
        axes = values["axes"]
        if axes is None and len(node.inputs) > 1 and node.inputs[1]:
            axes = [int(a) for a in np.asarray(walk.constant(node, 1, "axes")).reshape(-1)]
        if sorted(a % 4 for a in (axes or [])) != [2, 3]:
            raise refuse(node, f"a {node.op} over axes {axes} is not supported (numbacnn "
                         "reads it over H and W, axes [2, 3]: a global pooling)")
        _global_pool(kind)(walk, Node(node.name, node.op, node.inputs[:1], node.outputs, {}))
        walk.flat = not values["keepdims"]
    return read


def _lrn(walk: Walk, node: Node) -> None:
    walk.need_volume(node)
    values = attribute_values(node, ATTRIBUTES["LRN"])
    if values["size"] % 2 == 0:
        raise refuse(node, f"size={values['size']} is not supported (for an even size ONNX's "
                     "window is one channel higher than numbacnn's lrn)")
    walk.add(node, "lrn", walk.options(node, "lrn", ATTRIBUTES["LRN"], values))


def _batchnorm(walk: Walk, node: Node) -> None:
    values = attribute_values(node, ATTRIBUTES["BatchNormalization"])
    options = walk.options(node, "batchnorm", ATTRIBUTES["BatchNormalization"], values)
    gamma, beta, mean, var = (walk.weights(node, i, what) for i, what in enumerate(
        ("scale", "bias", "running mean", "running variance"), start=1))
    walk.add(node, "batchnorm", options, {"gamma": gamma, "beta": beta},
             {"mean": mean, "var": var})


def _activation(kind: str) -> Callable[[Walk, Node], None]:
    def read(walk: Walk, node: Node) -> None:
        table = ATTRIBUTES.get(node.op, ())
        walk.add(node, kind, walk.options(node, kind, table, attribute_values(node, table)))
    return read


def _gelu(walk: Walk, node: Node) -> None:
    attribute_values(node, (), {"approximate": "none"})
    if node.attributes.get("approximate", "none") != "none":
        raise refuse(node, f"approximate={node.attributes['approximate']} is not supported "
                     "(numbacnn's gelu is the exact one, with erf)")
    walk.add(node, "gelu", {})


def _dropout(walk: Walk, node: Node) -> None:
    attribute_values(node, (), {"ratio": 0.5, "seed": 0})
    ratio = walk.constant(node, 1, "ratio", optional=True)
    training = walk.constant(node, 2, "training_mode", optional=True)
    if training is not None and bool(np.asarray(training).reshape(-1)[0]):
        raise refuse(node, "training_mode=true is not supported (an imported graph runs "
                     "inference)")
    p = float(np.asarray(ratio).reshape(-1)[0]) if ratio is not None else float(
        node.attributes.get("ratio", 0.5))
    walk.add(node, "dropout", {"p": number(p)})


def _gemm(walk: Walk, node: Node) -> None:
    values = attribute_values(node, ATTRIBUTES["Gemm"])
    walk.options(node, "fc", ATTRIBUTES["Gemm"], values)
    B = walk.weights(node, 1, "weights")
    c = walk.weights(node, 2, "biases", optional=True)
    fully_connected(walk, node, B if values["transB"] else B.T, c)


def fully_connected(walk: Walk, node: Node, W: np.ndarray, b: np.ndarray | None) -> None:
    """A fully connected layer, W units × inputs: it flattens its input itself."""
    if not walk.flat:
        raise refuse(node, "its input is an image volume N x C x H x W; numbacnn reads a "
                     "matrix product only after Flatten (a fully connected layer)")
    if W.ndim != 2:
        raise refuse(node, f"weights of shape {list(W.shape)} are not a matrix")
    units = W.shape[0]
    bias = np.zeros(units) if b is None else np.broadcast_to(b.reshape(-1) if b.size == units
                                                             else b, (units,))
    walk.add(node, "fc", {"units": str(units)}, {"W": W, "b": bias})


def _flatten(walk: Walk, node: Node) -> None:
    attribute_values(node, (), {"axis": 1})
    if node.attributes.get("axis", 1) != 1:
        raise refuse(node, f"axis={node.attributes['axis']} is not supported (numbacnn "
                     "flattens everything but the batch, axis=1)")
    walk.flat = True


def _reshape(walk: Walk, node: Node) -> None:
    """A Reshape that flattens (N×C·H·W, N×C·H·W×1×1) or changes nothing."""
    values = attribute_values(node, (), {"allowzero": 0})
    target = [int(d) for d in np.asarray(walk.constant(node, 1, "shape")).reshape(-1)]
    if values["allowzero"] and 0 in target:
        raise refuse(node, "allowzero=1 with a 0 in the shape is not supported (numbacnn "
                     "reshapes only to flatten an image volume)")
    C, H, W = walk.shape
    size = C * H * W
    batch_ok = len(target) > 1 and (target[0] in (0, -1) or target[0] > 0)
    rest = [size if d == -1 and target[0] != -1 else d for d in target[1:]]
    if batch_ok and rest == [size]:
        walk.flat = True
    elif batch_ok and rest == [size, 1, 1]:
        walk.flat = True
        walk.flatten_pending(node)
        walk.flat = False
    elif batch_ok and rest == [C, H, W] and not walk.flat:
        pass
    else:
        shown = f"{W}x{H}x{C}" + (" (flattened)" if walk.flat else "")
        raise refuse(node, f"reshaping {shown} to {target} is not supported (numbacnn reshapes "
                     "only to flatten an image volume)")


def _softmax(walk: Walk, node: Node) -> None:
    attribute_values(node, (), {"axis": 1})
    axis = node.attributes.get("axis", 1 if walk.graph.opset < 13 else -1)
    walk.flatten_pending(node)
    if walk.shape[1:] != (1, 1) or axis not in ((1, -1) if walk.flat else (1,)):
        raise refuse(node, f"a softmax over axis {axis} of {walk.shape} is not supported "
                     "(numbacnn's softmax is over the class scores of each image)")
    walk.softmax = node


def _affine(walk: Walk, node: Node) -> None:
    """Mul, Div, Add, Sub by a per-channel constant before the first layer: the input
    normalization, kept as x·scale + shift (float64)."""
    if walk.layers or walk.flat:
        raise refuse(node, "elementwise arithmetic is supported only before the first layer "
                     "(the input normalization); numbacnn has no such layer")
    computed = walk.computed(node)
    if len(computed) != 1 or len(node.inputs) != 2 or (
            node.op in ("Sub", "Div") and node.inputs[0] != computed[0]):
        raise refuse(node, "numbacnn reads x·c, x/c, x+c and x−c with a stored constant c "
                     "here (the input normalization)")
    c = walk.constant(node, 1 if node.inputs[0] == computed[0] else 0, "constant")
    C = walk.shape[0]
    if c.dtype.kind != "f" or (c.size != 1 and c.shape not in ((1, C, 1, 1), (C, 1, 1))):
        raise refuse(node, f"a constant of shape {list(c.shape)} is not a per-channel "
                     "normalization (1 x C x 1 x 1 float)")
    c = np.broadcast_to(c.astype(np.float64).reshape(-1), (C,))
    if node.op == "Mul":
        walk.scale, walk.shift = walk.scale * c, walk.shift * c
    elif node.op == "Div":
        walk.scale, walk.shift = walk.scale / c, walk.shift / c
    else:
        walk.shift = walk.shift + (c if node.op == "Add" else -c)


OPS: dict[str, Callable[[Walk, Node], None]] = {
    "Conv": _conv, "MaxPool": _pool("maxpool"), "AveragePool": _pool("avgpool"),
    "GlobalMaxPool": _global_pool("maxpool"), "GlobalAveragePool": _global_pool("avgpool"),
    "ReduceMean": _reduce("avgpool"), "ReduceMax": _reduce("maxpool"),
    "LRN": _lrn, "BatchNormalization": _batchnorm, "Gemm": _gemm,
    "Relu": _activation("relu"), "LeakyRelu": _activation("leaky"), "Elu": _activation("elu"),
    "Sigmoid": _activation("sigmoid"), "Tanh": _activation("tanh"), "Gelu": _gelu,
    "Dropout": _dropout, "Flatten": _flatten, "Reshape": _reshape, "Softmax": _softmax,
    "Mul": _affine, "Div": _affine, "Add": _affine, "Sub": _affine,
    "Identity": lambda walk, node: _identity(node),
}


def _identity(node: Node) -> None:
    attribute_values(node, ())
