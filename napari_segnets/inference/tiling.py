"""Tile geometry: mirror-padded windows, tile positions aligned to the model's stride, blend weights.

Coordinates are image pixels. A tile is a window ``[c - halo, c - halo + tile)`` per axis whose
*core* ``[c, c + tile - 2 * halo)`` is the part kept; ``c`` is always a multiple of the model's
``size_multiple`` so every tile sees the pooling grid exactly where a whole-image forward would.
Pixels outside the image are read by mirror reflection (numpy's ``"reflect"`` mode), computed
per index, so any window of the infinitely reflected image can be read lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

BLENDS = ("gaussian", "linear", "none")


def align_up(n: int, m: int) -> int:
    """Smallest multiple of ``m`` that is >= ``n``."""
    return int(math.ceil(n / m) * m)


def align_down(n: int, m: int) -> int:
    """Largest multiple of ``m`` that is <= ``n``."""
    return int(n // m * m)


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map indices of the mirror-extended axis (numpy ``"reflect"``: edge not repeated) into ``[0, n)``."""
    idx = np.asarray(idx, dtype=np.int64)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m < n, m, period - m)


def read_window(image, z: int | None, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Read ``image[z, y0:y1, x0:x1]`` of the mirror-extended image, touching only the needed pixels.

    Works on any array with numpy-style basic slicing (numpy, dask, zarr, h5py, memmaps): one
    rectangular read of the bounding box of the reflected indices, then a gather.
    """
    h, w = image.shape[-2:]
    iy = reflect_index(np.arange(y0, y1), h)
    ix = reflect_index(np.arange(x0, x1), w)
    ylo, yhi = int(iy.min()), int(iy.max()) + 1
    xlo, xhi = int(ix.min()), int(ix.max()) + 1
    box = image[ylo:yhi, xlo:xhi] if z is None else image[z, ylo:yhi, xlo:xhi]
    block = np.asarray(box)
    inside_y = y0 >= 0 and y1 <= h
    inside_x = x0 >= 0 and x1 <= w
    if inside_y and inside_x:
        return block
    return block[np.ix_(iy - ylo, ix - xlo)]


def axis_starts(n: int, core: int, step: int, multiple: int) -> list[int]:
    """Core starts (multiples of ``multiple``) so cores of length ``core`` cover ``[0, n)``.

    Cores advance by ``step``; the last one is pulled back (still aligned) so it ends at the
    image edge rounded up to ``multiple`` instead of wasting a mostly-padding tile.
    """
    last = max(0, align_up(n, multiple) - core)
    starts = []
    c = 0
    while True:
        c = min(c, last)
        if not starts or c > starts[-1]:
            starts.append(c)
        if c >= last:
            return starts
        c += step


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one slice go.

    Attributes
    ----------
    shape : (int, int)
        Image slice shape ``(H, W)``.
    tile : (int, int)
        Window size per axis, halo included.
    halo : int
        Context discarded on each side of a window.
    overlap : (int, int)
        Window overlap per axis (``tile - step``).
    ys, xs : tuple of int
        Core starts per axis.
    """

    shape: tuple[int, int]
    tile: tuple[int, int]
    halo: int
    overlap: tuple[int, int]
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def core(self) -> tuple[int, int]:
        return (self.tile[0] - 2 * self.halo, self.tile[1] - 2 * self.halo)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def positions(self):
        """Core starts ``(cy, cx)`` in raster order (row by row)."""
        for cy in self.ys:
            for cx in self.xs:
                yield cy, cx


def _as_pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"{name} must be one number or a (y, x) pair, got {value!r}.")
        return (value[0], value[1])
    return (value, value)


def make_plan(
    shape: tuple[int, int],
    *,
    tile,
    halo: int,
    multiple: int,
    overlap=None,
    blend: str = "gaussian",
) -> TilePlan:
    """Validate the tiling arguments and place the tiles for a slice of ``shape``.

    Parameters
    ----------
    shape : (int, int)
        Slice shape ``(H, W)``.
    tile : int or (int, int)
        Window size including the halo on both sides; a multiple of ``multiple``, larger
        than ``2 * halo``. Shrunk to the image (plus halo) when the image is smaller.
    halo : int
        Pixels of context cut from each side of a window; a multiple of ``multiple``.
    multiple : int
        The model's ``size_multiple``.
    overlap : float or int or (y, x), optional
        How much neighbouring windows overlap: a fraction of the tile (``0 <= overlap < 1``) or
        pixels (int >= 1). At least ``2 * halo`` so the cores meet; rounded up to ``multiple``.
        Default: ``2 * halo`` for ``blend="none"``, else the larger of ``2 * halo`` and a quarter
        of the tile (MONAI's default).
    blend : {"gaussian", "linear", "none"}
    """
    if blend not in BLENDS:
        raise InputError(f"Unknown blend {blend!r}: use 'gaussian', 'linear' or 'none'.")
    if halo < 0 or halo % multiple:
        raise InputError(
            f"The halo ({halo}) must be a non-negative multiple of the model's size multiple "
            f"({multiple}); use {align_up(max(halo, 0), multiple)}."
        )
    tiles = _as_pair(tile, "tile")
    overlaps = _as_pair(overlap, "overlap")
    out_tile, out_overlap = [], []
    for n, t, ov in zip(shape, tiles, overlaps):
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise InputError(f"tile must be a whole number of pixels, got {t!r}.")
        t = int(t)
        if t % multiple:
            raise InputError(
                f"tile {t} is not a multiple of the model's size multiple {multiple}: "
                f"use {align_up(t, multiple)}."
            )
        if t < 2 * halo + multiple:
            raise InputError(
                f"tile {t} leaves no room inside the halo of {halo} pixels per side: "
                f"use a tile of at least {2 * halo + multiple}."
            )
        # Never bigger than the image needs: saves work on small images.
        t = min(t, align_up(n, multiple) + 2 * halo)
        if ov is None:
            ov_px = 2 * halo if blend == "none" else max(2 * halo, int(round(0.25 * t)))
        elif isinstance(ov, bool) or not isinstance(ov, (int, float, np.integer, np.floating)):
            raise InputError(f"overlap must be a fraction of the tile or pixels, got {ov!r}.")
        elif 0 <= ov < 1:
            ov_px = int(round(ov * t))
        else:
            ov_px = int(ov)
        if ov_px < 2 * halo:
            raise InputError(
                f"overlap {ov!r} ({ov_px} px) is less than twice the halo ({2 * halo} px), so the "
                "kept tile centres would leave gaps: raise the overlap or leave it unset."
            )
        ov_px = align_up(ov_px, multiple)
        if t - ov_px < multiple:
            raise InputError(
                f"overlap {ov_px} px leaves no step between tiles of {t} px: lower the overlap."
            )
        out_tile.append(t)
        out_overlap.append(ov_px)
    core = (out_tile[0] - 2 * halo, out_tile[1] - 2 * halo)
    ys = axis_starts(shape[0], core[0], out_tile[0] - out_overlap[0], multiple)
    xs = axis_starts(shape[1], core[1], out_tile[1] - out_overlap[1], multiple)
    return TilePlan(
        shape=(int(shape[0]), int(shape[1])),
        tile=(out_tile[0], out_tile[1]),
        halo=int(halo),
        overlap=(out_overlap[0], out_overlap[1]),
        ys=tuple(ys),
        xs=tuple(xs),
    )


def axis_weights(tile: int, halo: int, overlap: int, blend: str) -> np.ndarray:
    """1D blend weights over a window: zero on the halo, positive on the core.

    ``"gaussian"``: ``exp(-d^2 / (2 sigma^2))`` around the window centre with ``sigma = tile / 8``
    (nnU-Net/MONAI), floored at 1e-3 so every core pixel keeps a weight. ``"linear"``: ramps
    across the part of the core shared with the neighbour (``overlap - 2 * halo`` pixels).
    ``"none"``: ones on the core (crop halo-to-halo).
    """
    w = np.zeros(tile, dtype=np.float32)
    core = slice(halo, tile - halo)
    i = np.arange(tile, dtype=np.float64)
    if blend == "gaussian":
        sigma = tile / 8.0
        g = np.exp(-0.5 * ((i - (tile - 1) / 2.0) / sigma) ** 2)
        w[core] = np.maximum(g[core], 1e-3)
    elif blend == "linear":
        ramp = max(0, overlap - 2 * halo)
        d = np.minimum(i - halo, tile - halo - 1 - i)
        w[core] = np.minimum(1.0, (d[core] + 1.0) / (ramp + 1.0))
    else:
        w[core] = 1.0
    return w
