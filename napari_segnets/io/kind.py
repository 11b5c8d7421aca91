"""Is a stack a mask (napari Labels) or an image? The decisions the reader and the widgets share."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# Names labs give their masks: whole words only (so "segnets" or "digits" do not count).
_MASK_WORDS = re.compile(
    r"(?<![a-z])(masks?|labels?|label(?:l)?ed|groundtruth|ground[_ -]truth|gt|seg|"
    r"segmentations?|annotations?|instances?)(?![a-z])",
    re.I,
)
MAX_MASK_VALUES = 16  # an EM image has hundreds of grey values; a mask a handful


def mask_name(text: str) -> bool:
    """True when a file or dataset name says it holds a mask (``cells_mask.tif``, ``gt``)."""
    return bool(_MASK_WORDS.search(text or ""))


def layer_kind(array, meta: dict) -> str:
    """``"labels"`` for masks, else ``"image"``.

    A mask is an integer (or boolean) stack that our writer marked as labels, whose file or
    dataset name says so (mask, label, groundtruth, gt, seg...), or that holds between 2 and
    16 distinct values (checked on a bounded sample; of a lazy stack only its middle plane
    is read).
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
    from .normalize import _sample

    if not isinstance(array, np.ndarray) and array.ndim == 3:
        array = array[array.shape[0] // 2]  # lazy: one plane, not the whole stack
    values = np.unique(_sample(array))
    return "labels" if 2 <= values.size <= MAX_MASK_VALUES else "image"


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
