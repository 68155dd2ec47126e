"""The layer interface shared by every layer.

Every activation array is float32, C-contiguous and 4-D, N×C×H×W (a fully
connected layer's output is N×units×1×1). A layer knows its shapes before any
kernel runs (as in ConvNetJS): ``build((C, H, W))`` checks the input geometry and
returns the output shape (C, H, W); ``param_shapes()``, ``num_params()`` and
``flops()`` follow from it. Kernels run only in ``forward`` and ``backward``, through
the backend of the layer's device (Caffe's Forward_cpu/Forward_gpu split).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from numbacnn.device import backend, is_device_array
from numbacnn.errors import DeviceError, ShapeError
from numbacnn.layers.syntax import ACTIVATIONS, LayerSyntax, Option

Shape = tuple[int, int, int]

# Every layer class by its spec name: the spec parser, model files and the shapes table
# find layers here. A layer's file registers it with @register.
LAYERS: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: make ``cls`` known by its spec keyword, ``cls.syntax.name`` (and
    allowed in ``activation=`` when it declares ``as_activation``)."""
    LAYERS[cls.syntax.name] = cls
    if cls.as_activation:
        ACTIVATIONS.add(cls.syntax.name)
    return cls


class Layer:
    """Base class. A subclass declares ``syntax`` (its spec name and options: key, type,
    default, valid range), registers itself in ``numbacnn.layers.LAYERS``, and
    implements the hooks. Its constructor, ``hyperparameters()`` and ``describe()``
    come from that declaration; ``derive_options()`` works out options that follow from
    others (the same for the constructor and the spec), ``_setup()`` adds the other
    state a layer derives from its options. ``drivers`` lists the backend functions its
    passes call.
    """

    syntax: ClassVar[LayerSyntax] = LayerSyntax("")
    kind: ClassVar[str] = ""  # the spec name, = syntax.name
    # --- how the shapes table (numbacnn shapes) shows the layer ---
    table_name: ClassVar[str] = ""  # row name prefix, e.g. "CONV" (default: KIND)
    numbered_with: ClassVar[str] = ""  # kind whose count it shares (FC6 after CONV5)
    spatial: ClassVar[bool] = False  # outputs an image volume again (after flat fc layers)
    bias_keys: ClassVar[tuple[str, ...]] = ()  # params counted as biases, the rest weights
    nonnegative_state: ClassVar[tuple[str, ...]] = ()  # state never < 0 (a variance)
    # params/state key → the name of the same tensor in the PyTorch twin (torch_module)
    torch_names: ClassVar[dict[str, str]] = {"W": "weight", "b": "bias"}
    # draws random numbers when training: the network sets ``seed`` before each training
    # forward pass (a new one per step, layer and MPI rank; dropout's mask)
    draws_random: ClassVar[bool] = False
    # its output is a picture worth showing (numbacnn plot features: conv and pooling)
    feature_map: ClassVar[bool] = False
    # --- what the spec parser asks of the layer ---
    # may be written as ``activation=NAME`` on a conv or fc line (an elementwise function)
    as_activation: ClassVar[bool] = False
    # why the layer can only end a network ('' when it can stand anywhere)
    must_be_last: ClassVar[str] = ""
    # The backend functions this class's own code calls (``B.<name>(...)``), checked by
    # tests/test_drivers.py against the calls and against both backends. Layer's own:
    # the memory functions of buffers, parameters and inputs.
    drivers: ClassVar[tuple[str, ...]] = ("empty", "to_device", "zeros")
    # another layer does this one's work (a ReLU fused into the convolution before it, a
    # max pooling into the training passes of that convolution): it passes x and dy on
    fused: bool = False
    # network initializer → the one the weighted layer feeding this one gets instead
    # (numbacnn/init.py: the softmax's OUTPUT_INIT, a Maxout's MAXOUT_INIT)
    init_of_input: ClassVar[Mapping[str, str]] = {}
    init_of_next: Mapping[str, str] = {}  # the next layer's init_of_input (Network.build)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "syntax" in cls.__dict__:
            cls.kind = cls.syntax.name

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Options by position (in declaration order) or by key; each checked against its
        declared type and range (ShapeError naming the rule), defaults filled in."""
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.params: dict[str, Any] = {}  # trainable arrays, updated by the optimizer
        self.grads: dict[str, Any] = {}  # dL/d of each of them, filled by backward
        # non-trainable arrays (Keras' non-trainable weights, e.g. BatchNorm's running
        # statistics): saved and loaded with the model, on the network's device, never
        # seen by an optimizer or by weight decay
        self.state: dict[str, Any] = {}
        self.init: str | None = None  # initializer of the weights, None = the network's
        self.device: str | None = None  # set by the network; None (a lone layer) = the CPU
        self._buffers: dict[str, Any] = {}  # key → the current view of its storage
        self._storage: dict[str, Any] = {}  # key → flat array, grown but never shrunk
        self._views: dict[tuple, tuple[Any, Any]] = {}  # (id, shape) → (array, its view)
        self._forward_batch: int | None = None  # N of the last forward: backward must match
        self._bind(args, kwargs)
        self._setup()

    @classmethod
    def derive_options(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The option values the layer keeps, from the checked ones (defaults filled in):
        where the layer derives one option from others (the pooling stride defaults to
        the size, ``pad=same`` is a number for this filter size). The constructor and
        the spec parser both call it; ValueError when the values do not fit together."""
        return values

    def _options(self) -> tuple[Option, ...]:
        return self.syntax.arguments

    def _bind(self, args: tuple, kwargs: dict[str, Any]) -> None:
        options = self._options()
        if len(args) > len(options):
            raise ShapeError(f"{self.kind}: takes at most {len(options)} options, got "
                             f"{len(args)} ({self.syntax.usage()})")
        given = {opt.key: value for opt, value in zip(options, args, strict=False)}
        for key, value in kwargs.items():
            if key in given:
                raise ShapeError(f"{self.kind}: {key} is given twice")
            if all(o.key != key for o in options):
                raise ShapeError(f"{self.kind}: no option {key!r}; options: "
                                 f"{', '.join(o.key for o in options) or 'none'}")
            given[key] = value
        values = {}
        for opt in options:
            if opt.key not in given and opt.required:
                raise ShapeError(f"{self.kind}: {opt.key} is required ({self.syntax.usage()})")
            try:
                values[opt.key] = opt.check(given.get(opt.key, opt.default))
            except ValueError as exc:
                raise ShapeError(f"{self.kind}: {exc}") from None
        try:
            values = self.derive_options(values)
        except ValueError as exc:
            raise ShapeError(f"{self.kind}: {exc}") from None
        for key, value in values.items():
            setattr(self, key, value)

    def _setup(self) -> None:
        """What a layer derives from its options once they are set (none by default)."""

    # --- shapes (pure Python, no kernel) ---------------------------------------------
    def build(self, input_shape: Shape) -> Shape:
        """Check ``input_shape`` (C, H, W) and return the output shape (C, H, W)."""
        input_shape = tuple(int(d) for d in input_shape)  # type: ignore[assignment]
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ShapeError(f"{self.describe()}: input shape must be (C, H, W) ≥ 1, "
                             f"got {input_shape}")
        self.input_shape = input_shape
        self.output_shape = self.compute_output_shape(input_shape)
        return self.output_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the learnable arrays, e.g. {"W": (K, C, F, F), "b": (K,)}."""
        return {}

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the non-trainable arrays, e.g. {"mean": (C,), "var": (C,)}."""
        return {}

    def initial_state(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """The starting value of state array ``key`` (zeros unless the layer says)."""
        return np.zeros(shape, np.float32)

    def num_params(self) -> int:
        # Python integers: np.prod wraps around int64 for huge layers (negative counts)
        return sum(math.prod(s) for s in self.param_shapes().values())

    def flops(self) -> int:
        """Floating-point operations of the forward pass for one image (2 × multiply-adds)."""
        return 0

    def arithmetic(self) -> str:
        """The output-size arithmetic with the numbers in, for the shapes table, e.g.
        '(227 − 11 + 2·0)/4 + 1 = 55'; '' when there is nothing to show."""
        return ""

    def torch_module(self) -> Any:
        """This layer's PyTorch twin (same geometry, float32), for the benchmarks'
        comparison; imports torch, which numbacnn never needs otherwise."""
        raise NotImplementedError(f"{self.describe()}: no PyTorch twin")

    def workspace_bytes(self, batch: int) -> int:
        """Device memory a training step needs beyond the layer's output and gradient
        (e.g. a convolution's im2col columns), for ``batch`` images."""
        return 0

    def fuse_next(self, after: Layer | None, enabled: bool) -> bool:
        """Whether this layer does ``after``'s work too (``enabled`` False: never); the
        network asks each layer about the one after it when it builds and marks that one
        ``fused``. Default: no layer is fused."""
        return False

    def fuse_further(self, after: Layer | None, enabled: bool) -> bool:
        """Whether this layer, having fused the layers up to ``after``, does ``after``'s
        work too (a convolution with its ReLU: the max pooling after them). Default: no."""
        return False

    def window(self) -> tuple[int, int] | None:
        """(F, S) of a sliding window for receptive-field arithmetic; None when the layer
        sees its whole input (fully connected)."""
        return (1, 1)

    def hyperparameters(self) -> dict[str, Any]:
        """The declared options' values (without ``init``), in the order the spec writes
        them."""
        return {o.key: getattr(self, o.key) for o in self._stated() if o.hyperparameter}

    def arguments(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer: its hyperparameters and its
        ``init`` (when it has weights to initialize)."""
        return {o.key: getattr(self, o.key) for o in self._stated()}

    def _stated(self) -> list[Option]:
        """The options the layer states: all but a ``quiet_default`` one at its default
        (an option added later: left out, as in the spec text)."""
        return [o for o in self._options()
                if not (o.quiet_default and getattr(self, o.key) == o.default)]

    def describe(self) -> str:
        """Spec text of this layer, e.g. 'conv 96 11 stride=4 pad=0'."""
        if not self.syntax.name:  # a class that set only ``kind``
            return self.kind
        return self.syntax.format(self.hyperparameters())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    # --- parameters -----------------------------------------------------------------
    def fans(self) -> tuple[int, int]:
        """(fan_in, fan_out) of the weights, for the initializers."""
        return (1, 1)

    def initializer(self, init: str = "he") -> str:
        """The initializer of this layer's weights: its own ``init``, else the network's
        ``init`` as the layer after it wants it (``init_of_input``, numbacnn/init.py)."""
        return self.init or self.init_of_next.get(init, init)

    def init_params(self, rng: np.random.Generator, init: str = "he") -> None:
        """Draw weights with :meth:`initializer` and zero biases, and set the state to its
        initial value, on the layer's device."""
        from numbacnn.init import initialize

        fan_in, fan_out = self.fans()
        b = self._backend()
        for key, shape in self.param_shapes().items():
            method = self.initializer(init) if key == "W" else "zeros"
            self.params[key] = b.to_device(initialize(shape, fan_in, fan_out, method, rng))
            self.grads[key] = b.zeros(shape)
        for key, shape in self.state_shapes().items():
            self.state[key] = b.to_device(self.initial_state(key, shape))

    # --- running ----------------------------------------------------------------------
    def _backend(self) -> Any:
        """The backend module of this layer's device (its network's; else the CPU)."""
        return backend(self.device or "cpu")

    def forward(self, x: Any, training: bool = True) -> Any:
        raise NotImplementedError

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """Fill ``grads`` and return dL/dx (None when ``need_dx`` is False)."""
        raise NotImplementedError

    def _buffer(self, key: str, shape: tuple[int, ...], dtype: type = np.float32) -> Any:
        """A device array of ``shape`` reused across calls.

        It is a view of flat storage that only grows: a smaller batch (the last of an
        epoch) gets a view of the first elements, and the next full batch the whole of
        it again, without allocating.
        """
        shape = tuple(int(d) for d in shape)
        buf = self._buffers.get(key)
        if buf is not None and buf.shape == shape and buf.dtype == dtype:
            return buf
        size = int(np.prod(shape, dtype=np.int64))
        flat = self._storage.get(key)
        if flat is None or flat.size < size or flat.dtype != dtype:
            flat = self._backend().empty((max(size, 1),), dtype)
            self._storage[key] = flat
        buf = self._buffers[key] = flat[:size].reshape(shape)
        return buf

    def _reshaped(self, a: Any, shape: tuple[int, ...]) -> Any:
        """``a.reshape(shape)``, remembered: a numba device array's reshape costs ~8 µs of
        Python, and layers reshape the same buffers every step."""
        shape = tuple(int(d) for d in shape)
        if tuple(a.shape) == shape:
            return a
        key = (id(a), shape)
        hit = self._views.get(key)
        if hit is not None and hit[0] is a:
            return hit[1]
        if len(self._views) > 64:  # arrays that came and went (e.g. prediction inputs)
            self._views.clear()
        view = a.reshape(shape)
        self._views[key] = (a, view)
        return view

    def forget_views(self) -> None:
        """Drop the remembered views of :meth:`_reshaped`: after ``params`` or ``grads``
        were replaced (``training/flat_buffers.py``) they would keep the old arrays alive."""
        self._views.clear()

    def _flat(self, a: Any) -> Any:
        """``a`` as a 1-D array (a remembered view)."""
        return self._reshaped(a, (a.size,))

    def _check_input(self, x: Any) -> Any:
        """x as a float32, C-contiguous N×C×H×W array of this layer's input shape.

        float64 and non-contiguous host arrays are converted; integer arrays,
        wrong ranks and wrong shapes raise ShapeError (never a wrong result).
        """
        if self.input_shape is None:
            raise ShapeError(f"{self.describe()}: call build(input_shape) before forward")
        if not is_device_array(x):
            x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"{self.describe()}: expected an N×C×H×W array with "
                             f"(C, H, W) = {self.input_shape}, got shape {tuple(x.shape)}")
        if x.dtype != np.float32:
            if not np.issubdtype(x.dtype, np.floating):
                raise ShapeError(f"{self.describe()}: expected float32 input, got {x.dtype}; "
                                 "convert it, e.g. x.astype(np.float32) / 255")
            if is_device_array(x):
                raise ShapeError(f"{self.describe()}: expected a float32 device array, "
                                 f"got {x.dtype}")
            x = x.astype(np.float32)
        if is_device_array(x):
            self._check_same_device(x)
            if not x.is_c_contiguous():
                raise ShapeError(f"{self.describe()}: device array must be C-contiguous")
        else:
            x = self._backend().to_device(x)
        self._forward_batch = int(x.shape[0])
        return x

    def _check_same_device(self, x: Any) -> None:
        """A GPU array given to a layer on the CPU is an error, not a silent copy (numba
        would copy it back and forth on every kernel call)."""
        if self._backend().on_host:
            raise DeviceError(f"{self.describe()}: got a CUDA device array but this layer runs "
                              "on the CPU; copy it with numbacnn.to_host(x), or build the "
                              "network with device='cuda'")

    def _check_gradient(self, dy: Any) -> Any:
        """dy as a float32 C-contiguous array of this layer's output shape (4-D)."""
        C, H, W = self.output_shape  # type: ignore[misc]
        if not is_device_array(dy):
            dy = np.asarray(dy)
        if dy.size % (C * H * W) or dy.ndim not in (2, 4):
            raise ShapeError(f"{self.describe()}: gradient of shape {tuple(dy.shape)} does "
                             f"not match the output shape (N, {C}, {H}, {W})")
        dy = self._reshaped(dy, (dy.shape[0], C, H, W)) if is_device_array(dy) else \
            dy.reshape(dy.shape[0], C, H, W)
        if dy.shape[0] != self._forward_batch:  # saved activations are of another batch
            seen = "no forward yet" if self._forward_batch is None else \
                f"the last forward had {self._forward_batch} samples"
            raise ShapeError(f"{self.describe()}: backward needs the same batch's forward first "
                             f"({seen}, the gradient has {dy.shape[0]})")
        if is_device_array(dy):
            self._check_same_device(dy)
        else:
            dy = self._backend().to_device(np.ascontiguousarray(dy, dtype=np.float32))
        return dy
