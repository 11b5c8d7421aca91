"""Output side: blending tile results row band by row band, converting and writing them out.

Only a band of ``core`` rows (times the image width) is held per slice, so memory does not
grow with the image height or the number of slices; finished rows go straight into ``out``
(numpy, or a Zarr/HDF5 array on disk).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

OUTPUTS = ("probabilities", "labels", "reconstruction", "logits")


def output_shape(image_shape, channels: int, output: str) -> tuple[int, ...]:
    """Shape of the result: the image's, with a leading class axis for multi-class probabilities/logits."""
    shape = tuple(int(s) for s in image_shape)
    if output in ("probabilities", "logits") and channels > 1:
        return (channels, *shape)
    return shape


def label_dtype(channels: int) -> np.dtype:
    """uint8 while every label fits (up to 256 classes), else uint16."""
    return np.dtype(np.uint8) if channels <= 256 else np.dtype(np.uint16)


def default_dtype(output: str, channels: int) -> np.dtype:
    """In-memory result dtype: float32, or the label dtype for labels."""
    return label_dtype(channels) if output == "labels" else np.dtype(np.float32)


def create_output(
    store,
    image_shape,
    channels: int,
    output: str = "probabilities",
    *,
    dtype=None,
    chunks=None,
    overwrite: bool = False,
):
    """Create a Zarr array to pass as ``predict(..., out=...)`` for results larger than memory.

    Parameters
    ----------
    store : str or path or zarr store
        Where to create the array.
    image_shape : tuple
        The input image's shape, ``(Y, X)`` or ``(Z, Y, X)``.
    channels : int
        ``model.out_channels``.
    output : {"probabilities", "labels", "reconstruction", "logits"}
    dtype : numpy dtype, optional
        Default: uint8 for probabilities (probability x 255) and labels, float32 otherwise;
        float16 is a good choice for large reconstructions.
    chunks : tuple, optional
        Default: one slice, 512 x 512 pixels (one class) per chunk.
    """
    import zarr

    shape = output_shape(image_shape, channels, output)
    if dtype is None:
        dtype = np.uint8 if output == "probabilities" else default_dtype(output, channels)
    if chunks is None:
        chunks = tuple(1 for _ in shape[:-2]) + tuple(min(512, s) for s in shape[-2:])
    return zarr.open_array(
        store,
        mode="w" if overwrite else "w-",
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        fill_value=0,
    )


def check_out(out, shape, output: str):
    """Refuse an ``out`` array of the wrong shape or an unsuitable dtype."""
    if tuple(out.shape) != tuple(shape):
        raise InputError(
            f"out has shape {tuple(out.shape)} but this prediction needs {tuple(shape)}: "
            "create it with napari_segnets.inference.create_output."
        )
    kind = np.dtype(out.dtype).kind
    ok = {"probabilities": "fu", "labels": "uib", "reconstruction": "f", "logits": "f"}[output]
    if kind not in ok or (output == "probabilities" and kind == "u" and out.dtype != np.uint8):
        raise InputError(
            f"out has dtype {out.dtype}, which cannot hold {output}: use "
            + {
                "probabilities": "float32, float16 or uint8 (x255)",
                "labels": "an integer dtype",
                "reconstruction": "a float dtype",
                "logits": "a float dtype",
            }[output]
            + "."
        )


class Finisher:
    """Turns blended rows (channels, rows, W) into the requested output and writes them."""

    def __init__(
        self, out, output: str, *, channels: int, threshold: float, fitted: dict, is3d: bool
    ):
        self.out = out
        self.output = output
        self.channels = channels
        self.threshold = float(threshold)
        self.fitted = fitted
        self.is3d = is3d
        self.dtype = np.dtype(out.dtype)

    def convert(self, values: np.ndarray) -> np.ndarray:
        """Blended values (C, rows, W) -> output block (rows, W) or (C, rows, W)."""
        out = self.output
        if out == "labels":
            if self.channels == 1:
                return (values[0] >= self.threshold).astype(self.dtype)
            return np.argmax(values, axis=0).astype(self.dtype)
        if out == "reconstruction":
            from ..io.normalize import restore_intensities

            values = restore_intensities(values, self.fitted)
        if self.channels == 1:
            values = values[0]
        if out == "probabilities" and self.dtype == np.uint8:
            return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
        return values.astype(self.dtype, copy=False)

    def write(self, z: int | None, r0: int, r1: int, values: np.ndarray) -> None:
        block = self.convert(values)
        if block.ndim == 3:  # class axis first
            if self.is3d:
                self.out[:, z, r0:r1, :] = block
            else:
                self.out[:, r0:r1, :] = block
        elif self.is3d:
            self.out[z, r0:r1, :] = block
        else:
            self.out[r0:r1, :] = block


class Band:
    """Weighted accumulation of tile cores for one slice, flushed row band by row band.

    Tiles must arrive in raster order (row of tiles by row of tiles). When a tile starts at
    row ``cy``, no later tile touches rows above ``cy``: those rows are final and are written.
    """

    def __init__(self, plan, channels: int, wy: np.ndarray, wx: np.ndarray, emit):
        h, w = plan.shape
        self.plan = plan
        self.height = plan.core[0]
        self.acc = np.zeros((channels, self.height, w), dtype=np.float32)
        self.wsum = np.zeros((self.height, w), dtype=np.float32)
        self.wy, self.wx = wy, wx
        self.r0 = 0
        self.emit = emit

    def add(self, y: np.ndarray, cy: int, cx: int) -> None:
        """Blend one tile result ``y`` (C, tile_y, tile_x) whose core starts at ``(cy, cx)``."""
        if cy > self.r0:
            self.flush(cy)
        h = self.plan.halo
        hh, ww = self.plan.shape
        ny = min(cy + self.plan.core[0], hh) - cy
        nx = min(cx + self.plan.core[1], ww) - cx
        weight = self.wy[h : h + ny, None] * self.wx[None, h : h + nx]
        a = cy - self.r0
        self.acc[:, a : a + ny, cx : cx + nx] += y[:, h : h + ny, h : h + nx] * weight
        self.wsum[a : a + ny, cx : cx + nx] += weight

    def flush(self, upto: int | None = None) -> None:
        """Write the rows above ``upto`` (default: all remaining rows) and drop them."""
        hh = self.plan.shape[0]
        upto = hh if upto is None else min(upto, hh)
        n = upto - self.r0
        if n <= 0:
            return
        self.emit(self.r0, upto, self.acc[:, :n] / self.wsum[:n])
        rest = self.height - n
        if rest > 0:
            self.acc[:, :rest] = self.acc[:, n:]
            self.wsum[:rest] = self.wsum[n:]
        self.acc[:, max(rest, 0) :] = 0
        self.wsum[max(rest, 0) :] = 0
        self.r0 = upto
