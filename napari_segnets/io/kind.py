"""Is a stack a mask (napari Labels) or an image? The decisions the reader and the widgets share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Names labs give their masks: whole words only (so "segnets" or "digits" do not count).
_MASK_WORDS = re.compile(
    r"(?<![a-z])(masks?|labels?|label(?:l)?ed|groundtruth|ground[_ -]truth|gt|seg|"
    r"segmentations?|annotations?|instances?)(?![a-z])",
    re.I,
)
MAX_MASK_VALUES = 16  # an EM image has hundreds of grey values; a mask a handful
_PLANES = 5  # planes layer_kind judges at most when the middle one is blank


def mask_name(text: str) -> bool:
    """True when a file or dataset name says it holds a mask (``cells_mask.tif``, ``gt``)."""
    return bool(_MASK_WORDS.search(text or ""))


def layer_kind(array, meta: dict) -> str:
    """``"labels"`` for masks and label images, else ``"image"``.

    An integer (or boolean) stack opens as Labels when our writer marked it so, when its file or
    dataset name says so (mask, label, groundtruth, gt, seg...), or when :func:`content` judges it
    a mask (2 to 16 whole-number values) or a label image (more ids, in flat regions). Grey images
    and probabilities open as images, as does any float stack (napari Labels take integers).
    ``content`` reads one central patch of the middle plane; when that patch holds a single value
    (a blank section, an empty corner of a sparse mask) a few more planes are judged the same way,
    so a lazy stack is never read whole.
    """
    dtype = np.dtype(array.dtype)
    if array.ndim < 2:
        return "image"
    if dtype.kind not in "biu":
        return "image"
    if meta.get("kind") == "labels":
        return "labels"
    name = f"{Path(str(meta.get('path', ''))).name} {meta.get('key') or ''}"
    if mask_name(name):
        return "labels"
    lead = array.shape[:-2]
    planes = [()]
    if len(lead) == 1 and lead[0] > 1:
        n = lead[0]
        spread = np.linspace(0, n - 1, min(n, _PLANES)).round().astype(int).tolist()
        planes = [(n // 2,)] + [(z,) for z in spread if z != n // 2]
    for index in planes:
        found = content(array, index)
        if found.values >= 2:  # a single value tells nothing: look at the next plane
            return "labels" if found.kind in ("mask", "labels") else "image"
    return "image"


def is_binary_mask(array, *, strided: bool = False) -> bool:
    """Whether ``array`` reads as a binary full mask (0/1, 0/255, bool: nonzero = object).

    Binary: numbers (bool, integer, or a 0.0/1.0 float image), at most two distinct values, and
    0 among them when there are two. ``strided`` judges a strided sample (every 4th plane, every
    8th row and column) so that it stays cheap on a GUI thread.
    """
    if np.dtype(array.dtype).kind not in "biuf" or array.ndim < 2:
        return False
    if strided:
        array = array[(slice(None, None, 4),) * (array.ndim - 2) + (slice(None, None, 8),) * 2]
    values = np.unique(np.asarray(array))
    return values.size < 2 or (values.size == 2 and values[0] == 0)


# ---- what a stack holds: mask, label image, probabilities or a grey image ----------------
# Measured on the real files (EPFL/Lucchi, ISBI 2012, Gerhard 2013 VNC, tests/data/real, a
# probability TIFF from ``predict --output probabilities``): among neighbouring pixels that are
# both nonzero, 3% or fewer are equal in grey EM images (21% in synthetic ramps, 17% in a photo),
# 96-100% in masks and label images (91% in a line drawing). Floats in [0, 1] are probabilities
# (a trained model's map has 97% of its pixels within 0.05 of 0 or 1, an untrained one's few; both
# have thousands of arbitrary values), unless they are an 8- or 16-bit image divided by its
# maximum: many values, all on the steps k/255 or k/65535, and few near 0 or 1.
LABELS_EQUAL = 0.5  # label images: at least this fraction of neighbouring object pixels equal
PROBABILITY_EXTREMES = 0.2  # probabilities on a 1/255 grid: at least this fraction near 0 or 1
_PATCH = 512  # half the side of the central patch that is judged


@dataclass(frozen=True)
class Content:
    """What a stack holds, judged on one contiguous central patch of its middle plane.

    ``kind``: ``"mask"`` (at most 16 whole-number values), ``"labels"`` (more whole-number values
    in flat regions: instance ids), ``"probabilities"`` (fractional values in [0, 1]) or
    ``"image"`` (a grey image: many whole-number values that vary from pixel to pixel, fractional
    values outside [0, 1], or an 8/16-bit image scaled to [0, 1]).
    """

    kind: str
    values: int  # distinct values in the patch
    equal: float  # fraction of neighbouring pixel pairs (both nonzero) that are equal
    extremes: float  # fraction of pixels within 0.05 of 0 or 1
    low: float
    high: float
    whole: bool  # only whole numbers (integers, bool, or whole-number floats)
    steps: int | None = None  # 255 or 65535: fractional values all on the steps k/steps

    def describe(self) -> str:
        if self.whole:
            return (f"{self.values} distinct values, {self.equal:.0%} of neighbouring pixels equal, "
                    "unlike the flat regions of a mask or label image")
        if self.steps:
            bits = 8 if self.steps == 255 else 16
            return (f"{self.values} distinct values on the steps of a {bits}-bit image scaled to 0-1, "
                    f"only {self.extremes:.0%} of them near 0 or 1 as probabilities are")
        return f"fractional values from {self.low:.3g} to {self.high:.3g}, outside the 0 to 1 of probabilities"


def content(array, index: tuple = ()) -> Content:
    """Judge what ``array`` holds (see :class:`Content`); reads one patch of at most 1024 x 1024.

    ``index`` picks the plane of the leading axes (e.g. ``(channel,)`` of class-first
    probabilities); the rest of the leading axes are taken at their middle. Works on lazy arrays
    (numpy, dask, zarr, h5py): one slicing call.
    """
    if array.ndim < 2:
        raise ValueError("content() needs at least 2 dimensions")
    lead = tuple(index) + tuple(s // 2 for s in array.shape[len(index):-2])
    h, w = array.shape[-2:]
    ys = slice(max(0, h // 2 - _PATCH), h // 2 + _PATCH)
    xs = slice(max(0, w // 2 - _PATCH), w // 2 + _PATCH)
    patch = np.asarray(array[(*lead, ys, xs)])
    if patch.dtype == bool:
        patch = patch.view(np.uint8)
    values = np.unique(patch)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    whole = values.dtype.kind != "f" or (finite.size == values.size and np.array_equal(finite, np.round(finite)))
    # equal neighbours among object pixels, on the patch as it is (no float copy of integers)
    both_x = (patch[:, 1:] != 0) & (patch[:, :-1] != 0)
    both_y = (patch[1:] != 0) & (patch[:-1] != 0)
    pairs = int(both_x.sum()) + int(both_y.sum())
    same = int(np.count_nonzero((patch[:, 1:] == patch[:, :-1]) & both_x))
    same += int(np.count_nonzero((patch[1:] == patch[:-1]) & both_y))
    equal = same / pairs if pairs else 1.0
    del both_x, both_y
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    extremes = float(np.mean((patch <= 0.05) | (patch >= 0.95))) if patch.size else 1.0
    steps = None
    if whole:
        if values.size <= MAX_MASK_VALUES:
            kind = "mask"
        else:
            kind = "labels" if equal >= LABELS_EQUAL else "image"
    elif low < -1e-6 or high > 1 + 1e-6:
        kind = "image"
    else:
        kind = "probabilities"
        if finite.size > MAX_MASK_VALUES and equal < LABELS_EQUAL and extremes < PROBABILITY_EXTREMES:
            for n, tol in ((255, 1e-3), (65535, 1e-2)):
                scaled = finite.astype(np.float64) * n
                if np.all(np.abs(scaled - np.round(scaled)) <= tol):
                    kind, steps = "image", n
                    break
    return Content(kind, int(values.size), float(equal), extremes, low, high, bool(whole), steps)


def grey_image_message(what: str, found: Content, use: str) -> str:
    """The one sentence that refuses a grey image where a mask (or probabilities) is needed."""
    return f"{what} looks like a grey image ({found.describe()}): give {use}."
