"""What a semantic result means: a mask (any encoding) or class-first probabilities.

One place decides how an array becomes "foreground", so the in-memory and the
block-wise labelling read it identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


def check_voxel_size(voxel_size, ndim: int, *, required: bool = False, what: str = "the volume"):
    """``voxel_size`` as a tuple of ``ndim`` positive floats in nm (z-y-x), or None when not given."""
    if voxel_size is None:
        if required:
            raise InputError(
                f"The voxel size of {what} is unknown; give it in nm, z-y-x "
                "(CLI: --voxel-size 40,5,5), or use a file that stores it."
            )
        return None
    if any(v is None for v in voxel_size):  # a partial calibration (io: None per unknown axis)
        if len(voxel_size) == ndim + 1 and ndim == 2 and voxel_size[0] is None:
            voxel_size = voxel_size[1:]
        if any(v is None for v in voxel_size):
            axes = ", ".join(a for a, v in zip("zyx"[-len(voxel_size):], voxel_size) if v is None)
            if required:
                raise InputError(
                    f"The voxel size of {what} is unknown along {axes}; give all of it in nm, z-y-x "
                    "(CLI: --voxel-size 40,5,5)."
                )
            return None
    try:
        sizes = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        raise InputError(f"Voxel size {voxel_size!r} is not a list of numbers; give nm per axis, z-y-x.") from None
    if len(sizes) == ndim + 1 and ndim == 2:  # a (z, y, x) size for one slice: keep y, x
        sizes = sizes[1:]
    if len(sizes) != ndim or not all(np.isfinite(s) and s > 0 for s in sizes):
        raise InputError(
            f"Voxel size {voxel_size!r} must be {ndim} positive numbers in nm (z-y-x) for {what} of "
            f"{ndim} dimensions."
        )
    return sizes


def parse_voxel_size(text: str, ndim: int, *, what: str = "the volume"):
    """Voxel size typed by a person (``"40,5,5"``, ``"40 x 5 x 5"``) -> :func:`check_voxel_size`.

    The one reader of typed voxel sizes (the CLI's ``--voxel-size``, the Objects widget's field).
    """
    parts = str(text).replace("x", ",").replace("X", ",").replace(" ", "").split(",")
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        raise InputError(f"Voxel size {text!r} is not numbers; write Z,Y,X in nm, e.g. 40,5,5.") from None
    return check_voxel_size(values, ndim, what=what)


@dataclass(frozen=True)
class Foreground:
    """A view of a semantic result as foreground, readable block by block.

    ``shape`` is the spatial shape, (Z, Y, X) or (Y, X). ``block(slices)`` gives
    ``(low, high)`` boolean arrays for that region: ``low`` is the foreground,
    ``high`` the seeds an object needs to be kept (hysteresis; ``high is None``
    keeps every object). ``probability(slices)`` gives the foreground probability
    (float32), or None for masks.
    """

    data: object
    shape: tuple
    channel: int | None  # index on the class axis for class-first probabilities, else None
    is_probability: bool
    low: float
    high: float
    divisor: float = 1.0  # integer probabilities stored as p x divisor (predict's uint8 x 255)

    def _read(self, slices):
        if self.channel is None:
            values = np.asarray(self.data[tuple(slices)])
        else:
            values = np.asarray(self.data[(self.channel, *slices)])
        return values / np.float32(self.divisor) if self.divisor != 1.0 else values

    def block(self, slices):
        values = self._read(slices)
        if not self.is_probability:
            return values != 0, None
        low = values >= self.low
        return low, (values >= self.high if self.high > self.low else None)

    def probability(self, slices):
        return self._read(slices).astype(np.float32, copy=False) if self.is_probability else None


def foreground(source, *, channel: int | None = None, threshold: float = 0.5,
               seed_threshold: float | None = None, probability_scale: float | None = None,
               what: str = "The input") -> Foreground:
    """Interpret ``source`` as foreground.

    Parameters
    ----------
    source : array-like (numpy, dask or zarr)
        A mask of any encoding (bool, 0/1, 0/255, label ids: nonzero = object), or probabilities in
        [0, 1]: class-first (C, Z, Y, X) / (C, Y, X) as ``inference.predict`` returns them, or one
        foreground map (Z, Y, X) / (Y, X).
    channel : int, optional
        The foreground class of class-first probabilities; by default the only channel of a
        one-channel result, channel 1 of a two-channel one, and an error for more classes.
    threshold : float
        Probabilities at or above it are foreground.
    seed_threshold : float, optional
        Hysteresis: an object is kept only if some voxel reaches it (None: every object).
    probability_scale : float, optional
        Integer input holds probabilities times this (``predict --output probabilities`` writes
        uint8 x 255); without it integers are a mask.
    what : str
        The input's name in messages (a file or layer name).

    Returns
    -------
    Foreground
    """
    if not hasattr(source, "shape") or not hasattr(source, "dtype"):
        source = np.asarray(source)
    dtype = np.dtype(source.dtype)
    shape = tuple(int(s) for s in source.shape)
    if 0 in shape:
        raise InputError(f"The input is empty (shape {shape}); give a mask or probabilities with data.")
    if dtype.kind in "biu" and probability_scale is None:
        if source.ndim not in (2, 3):
            raise InputError(
                f"A mask must be 2D (Y, X) or 3D (Z, Y, X), got shape {shape}; give one channel."
            )
        _refuse_grey(source, (), what)
        return Foreground(source, shape, None, False, 0.5, 0.5)
    if dtype.kind not in "fiu":
        raise InputError(f"Cannot make objects from data of type {dtype}; give a mask or probabilities.")
    if not 0.0 < threshold < 1.0:
        raise InputError(f"The threshold must lie between 0 and 1, got {threshold}.")
    high = threshold if seed_threshold is None else float(seed_threshold)
    if not threshold <= high <= 1.0:
        raise InputError(
            f"The seed threshold ({high}) must lie between the threshold ({threshold}) and 1."
        )
    divisor = 1.0 if probability_scale is None else float(probability_scale)
    class_first = _class_first(source, channel, divisor)
    if class_first:
        n = shape[0]
        if channel is None:
            if n > 2:
                raise InputError(
                    f"The probabilities have {n} classes; say which is the foreground "
                    "(CLI: --channel N, Python: channel=N)."
                )
            channel = n - 1  # sigmoid: the only channel; softmax over 2: class 1
        if not 0 <= channel < n:
            raise InputError(f"Channel {channel} does not exist; the probabilities have {n} classes.")
        spatial = shape[1:]
    else:
        if channel not in (None, 0):
            raise InputError(f"Channel {channel} was given but the input of shape {shape} has no class axis.")
        channel, spatial = None, shape
    if probability_scale is None:  # a store marked as probabilities by predict is taken at its word
        _refuse_grey(source, (channel,) if class_first else (), what)
    fg = Foreground(source, spatial, channel, True, float(threshold), high, divisor)
    _check_range(fg)
    return fg


USE = "a mask, a label image or the probabilities that `napari-segnets predict --output probabilities` writes"


def _refuse_grey(source, index: tuple, what: str) -> None:
    """A grey (EM) image is neither a mask nor probabilities: refuse it (``io.kind.content`` decides)."""
    from ..io.kind import content, grey_image_message

    found = content(source, index)
    if found.kind == "image":
        raise InputError(grey_image_message(what, found, USE))


def _class_first(source, channel, divisor: float = 1.0) -> bool:
    """Whether float ``source`` has a leading class axis."""
    if source.ndim == 4:
        return True
    if source.ndim == 2:
        return False
    if source.ndim != 3:
        raise InputError(
            f"Probabilities must be (C, Z, Y, X), (C, Y, X), (Z, Y, X) or (Y, X); got shape {tuple(source.shape)}."
        )
    if source.shape[0] == 1 or channel is not None:
        return True
    # (C, Y, X) softmax output sums to 1 over the class axis; a (Z, Y, X) map does not.
    sample = np.asarray(source[(slice(None), *_probe(source.shape[1:]))], dtype=np.float64) / divisor
    # uint8 x 255 rounding leaves up to C/255 of slack in the sum
    return bool(np.allclose(sample.sum(axis=0), 1.0, atol=1e-3 if divisor == 1.0 else source.shape[0] / divisor))


def _probe(shape, n: int = 64):
    """Slices of a small strided sample of a plane (enough to tell the layout, cheap on lazy data)."""
    return tuple(slice(None, None, max(1, s // n)) for s in shape)


def _check_range(fg: Foreground) -> None:
    z = (fg.shape[0] // 2,) if len(fg.shape) == 3 else ()
    sample = fg.probability((*z, *_probe(fg.shape[-2:])))
    if np.isnan(sample).any():
        raise InputError("The probabilities contain NaN; predict again or fill the gaps first.")
    lo, hi = float(sample.min()), float(sample.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise InputError(
            f"The input holds floats from {lo:.3g} to {hi:.3g}, not probabilities in [0, 1]; "
            "give a mask or the probabilities that predict writes."
        )
