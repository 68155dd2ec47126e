"""Which algorithm a Conv2D runs, and which of the backend's drivers compute it.

Conv2D's ``algo`` (else the network's ``conv_algo``) and its shapes give the algorithm
(:meth:`ConvAlgorithm.algorithm`, the rules in ``layers/conv.py``'s docstring); the
Winograd ones are a table, :data:`WINOGRAD_RUNS`, from (algorithm, taps) to the prefix
of the backend's three drivers, all with the same arguments:

    {prefix}_workspace(N, C, K, H, W, OH, OW) → {buffer name: shape}
    {prefix}_forward(x, H, W, w2, b, y, ws, geometry, OH, OW, relu)
    {prefix}_backward(x, H, W, w2, y, dy, dw2, db, dx, ws, geometry, OH, OW, relu)

x N×C×(H·W), w2 K × C·FH·FW, y and dy N×K×OH×OW passed flat; ``auto``'s rule for a
variant is the backend's ``{PREFIX}_AUTO_MIN_CK`` (the least C·K it runs it at; None:
never). A new Winograd variant is a row of the table (and its window in
``geometry.LARGER_TILE_WINDOWS``), its drivers and rule in each backend.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from numbacnn.geometry import LARGER_TILE_WINDOWS, direct_applies, s2d_applies, winograd_applies


class WinogradRun(NamedTuple):
    """A Winograd variant F(m×m, r×r): its drivers' prefix, the output tile's side m and
    the transformed tile's positions (m + r − 1)²."""

    prefix: str
    tile: int
    positions: int


# (algorithm, taps) → the variant that computes it
WINOGRAD_RUNS = {("winograd", 9): WinogradRun("winograd", 2, 16),      # F(2×2, 3×3)
                 ("winograd", 25): WinogradRun("winograd5", 2, 36),    # F(2×2, 5×5)
                 ("winograd4", 9): WinogradRun("winograd43", 4, 36),   # F(4×4, 3×3)
                 ("winograd3", 25): WinogradRun("winograd35", 3, 49)}  # F(3×3, 5×5)
# taps → the larger-tile variant auto prefers to F(2×2, ·) where its rule allows
LARGER_TILES = {taps: algo for algo, taps in WINOGRAD_RUNS if algo in LARGER_TILE_WINDOWS}
WINOGRAD_DRIVERS = tuple(f"{run.prefix}_{part}" for run in WINOGRAD_RUNS.values()
                         for part in ("workspace", "forward", "backward"))


class ConvAlgorithm:
    """Conv2D's choice of algorithm, mixed into ``layers/conv.py``'s Conv2D: it reads the
    layer's options, shapes and backend (no type checker runs here)."""

    def algorithm(self) -> str:
        """"im2col", "winograd", "winograd3", "winograd4", "direct" or "s2d": what this
        layer runs, from its ``algo`` (else the network's) and its shapes (see
        ``layers/conv.py``)."""
        wanted = self.algo or self.network_algo
        if s2d_applies(self.stride, self.dilation, self.groups) and (
                wanted == "s2d" or (wanted == "auto" and self.s2d_auto())):
            return "s2d"
        direct = direct_applies(self.size, self.stride, self.pad, self.dilation)
        if wanted == "direct" and direct:
            return "direct"
        if wanted == "auto" and direct:
            most = self._backend().DIRECT_AUTO_MAX_TAPS
            if most is not None and self.input_shape[0] // self.groups * self.taps() <= most:
                return "direct"
        if wanted in ("im2col", "direct", "s2d") or not winograd_applies(
                self.size, self.stride, self.dilation, self.groups):
            return "im2col"
        return self.winograd_run(wanted, self.taps(), self.input_shape[0])

    def winograd_run(self, wanted: str, taps: int, C: int) -> str:
        """The algorithm of a stride-1 3×3 (``taps`` 9) or 5×5 (25) convolution of C
        input channels that Winograd can run, for ``wanted`` "winograd", a larger-tile
        one ("winograd3": 5×5 only; "winograd4": 3×3 only) or "auto":
        Winograd where C·K reaches the backend's ``WINOGRAD_AUTO_MIN_CK``
        (``WINOGRAD5_AUTO_MIN_CK`` for 5×5; None: never), with the larger tiles of
        :meth:`larger_tiles`; else "im2col"."""
        if wanted in LARGER_TILE_WINDOWS:
            return wanted if (wanted, taps) in WINOGRAD_RUNS else "im2col"
        if wanted == "winograd":
            return "winograd"
        if not self._auto_allows(("winograd", taps), C):
            return "im2col"
        return self.larger_tiles(taps, C) or "winograd"

    def larger_tiles(self, taps: int, C: int) -> str | None:
        """The larger-tile variant (:data:`LARGER_TILES`: F(4×4, 3×3), F(3×3, 5×5)) that
        ``auto`` runs a stride-1 convolution of ``taps`` and C input channels as, where
        C·K reaches the backend's rule for it; else None (F(2×2, ·))."""
        algo = LARGER_TILES[taps]
        return algo if self._auto_allows((algo, taps), C) else None

    def _auto_allows(self, run: tuple[str, int], C: int) -> bool:
        """Whether C·K reaches the backend's ``{PREFIX}_AUTO_MIN_CK`` for the variant of
        ``run`` (None: never)."""
        least = getattr(self._backend(), f"{WINOGRAD_RUNS[run].prefix.upper()}_AUTO_MIN_CK")
        return least is not None and C * self.filters >= least

    def conv_run(self) -> tuple[str, int]:
        """(algorithm, taps) of the convolution the drivers compute: the layer's own, or
        under s2d the rearranged stride-1 one's (``conv_s2d.py``)."""
        algo = self.algorithm()
        return self.s2d_inner() if algo == "s2d" else (algo, self.taps())

    def winograd_driver(self, run: tuple[str, int], part: str) -> Any:
        """The backend's ``part`` ("workspace", "forward" or "backward") driver of the
        Winograd variant that computes ``run`` ((algorithm, taps), :data:`WINOGRAD_RUNS`)."""
        return getattr(self._backend(), f"{WINOGRAD_RUNS[run].prefix}_{part}")

    @property
    def uses_winograd(self) -> bool:
        """Winograd F(2×2, 3×3)."""
        return self.conv_run() == ("winograd", 9)

    @property
    def uses_winograd5(self) -> bool:
        """Winograd F(2×2, 5×5)."""
        return self.conv_run() == ("winograd", 25)

    @property
    def uses_winograd43(self) -> bool:
        """Winograd F(4×4, 3×3)."""
        return self.conv_run() == ("winograd4", 9)

    @property
    def uses_winograd35(self) -> bool:
        """Winograd F(3×3, 5×5)."""
        return self.conv_run() == ("winograd3", 25)

    @property
    def uses_direct(self) -> bool:
        return self.algorithm() == "direct"

    @property
    def uses_im2col(self) -> bool:
        return self.conv_run()[0] == "im2col"

    @property
    def uses_s2d(self) -> bool:
        return self.algorithm() == "s2d"

    def winograd_workspace_bytes(self, batch: int) -> int:
        """At most the whole batch's V and M (for y's tiles or dx's) and the transformed
        filters, of the Winograd variant the layer runs itself."""
        K, OH, OW = self.output_shape
        C, H, W = self.input_shape
        run = WINOGRAD_RUNS[(self.algorithm(), self.taps())]
        m = run.tile
        tiles = max(-(-OH // m) * -(-OW // m), -(-H // m) * -(-W // m))
        return 4 * run.positions * (batch * tiles * (C + K) + K * C)
