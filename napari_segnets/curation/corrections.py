"""The user's corrections: where they are, what they teach, and whether scores got worse.

Pieces of the correct-and-retrain loop shared by the widgets and scripts: the box a
user edited, the crop that goes into the curated :class:`~napari_segnets.curation.Store`
with unreviewed pixels set to ``ignore_index``, and which slices got worse between two
scorings.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def changed_region(original, edited, *, margin: int = 0) -> tuple[slice, slice] | None:
    """Bounding box of the pixels where ``edited`` differs from ``original``.

    Parameters
    ----------
    original, edited : array (Y, X)
        The prediction as made and the mask after the user's corrections.
    margin : int
        Pixels added on each side (clipped to the image).

    Returns
    -------
    (slice, slice) or None
        The (y, x) box, or None when nothing was changed.
    """
    original = np.asarray(original)
    edited = np.asarray(edited)
    if original.shape != edited.shape or original.ndim != 2:
        raise InputError(
            f"Cannot compare a {original.shape} prediction with a {edited.shape} mask; "
            "both must be the same 2D slice."
        )
    diff = original != edited
    if not diff.any():
        return None
    ys = np.flatnonzero(diff.any(axis=1))
    xs = np.flatnonzero(diff.any(axis=0))
    y0, y1 = max(0, ys[0] - margin), min(diff.shape[0], ys[-1] + 1 + margin)
    x0, x1 = max(0, xs[0] - margin), min(diff.shape[1], xs[-1] + 1 + margin)
    return slice(int(y0), int(y1)), slice(int(x0), int(x1))


def mark_unreviewed(mask, region, *, ignore_index: int = 255) -> np.ndarray:
    """A uint8 copy of ``mask`` with every pixel outside ``region`` set to ``ignore_index``.

    Training skips ``ignore_index`` pixels, so only what the user looked at teaches the model.
    A mask that already uses ``ignore_index`` as a value is refused (never both a class and
    "ignore").
    """
    mask = np.asarray(mask)
    if region is None:
        return mask.copy()
    if int(ignore_index) > np.iinfo(np.uint8).max or mask.max(initial=0) >= ignore_index:
        raise InputError(
            f"The mask uses the value {ignore_index}, which is reserved for unreviewed pixels."
        )
    out = np.full(mask.shape, ignore_index, dtype=np.uint8)
    out[region] = mask[region]
    return out


def edited_sample(
    image, original, edited, *, margin: int = 8, min_size: int = 64, ignore_index: int = 255
):
    """Cut the part of a slice the user corrected, for the curated store.

    The crop is the box around the changed pixels grown by ``margin`` and, for
    context, to at least ``min_size`` pixels a side (clipped to the slice). Mask
    pixels in the crop but outside the changed box + margin were not reviewed and
    are set to ``ignore_index`` (:func:`mark_unreviewed`).

    Returns
    -------
    (image_crop, mask_crop, region, changed) or None
        ``region`` is ``(y0, x0, y1, x1)`` in slice coordinates, ``changed`` the number
        of changed pixels; None when nothing was changed.
    """
    original = np.asarray(original)
    edited = np.asarray(edited)
    image = np.asarray(image)
    if image.shape != edited.shape:
        raise InputError(
            f"The image slice is {image.shape} but the mask slice is {edited.shape}; they must match."
        )
    box = changed_region(original, edited, margin=margin)
    if box is None:
        return None
    changed = int(np.count_nonzero(original != edited))
    crop = []
    for sl, size in zip(box, edited.shape):
        want = max(sl.stop - sl.start, min(min_size, size))
        lo = max(0, sl.start - (want - (sl.stop - sl.start)) // 2)
        lo = min(lo, size - want)  # near the far edge, grow the other way
        crop.append(slice(lo, lo + want))
    crop = tuple(crop)
    mask = mark_unreviewed(edited, box, ignore_index=ignore_index)
    region = (crop[0].start, crop[1].start, crop[0].stop, crop[1].stop)
    return image[crop].copy(), mask[crop].copy(), region, changed


def regressions(
    before: list[dict],
    after: list[dict],
    *,
    key: str = "iou",
    tolerance: float = 1e-6,
    higher_is_better: bool | None = None,
) -> list[int]:
    """Slices whose score ``key`` got worse from ``before`` to ``after``.

    ``before``/``after`` are per-slice score dicts with an ``"index"`` (or
    ``"slice"``) entry, as returned by ``metrics.score_stack``; rows without one
    (the overall row) are ignored. Rand error and VI are lower-is-better.
    """
    if higher_is_better is None:
        higher_is_better = not (key.startswith("rand") or key.startswith("vi") or "error" in key)

    def by_index(rows):
        out = {}
        for row in rows:
            idx = row.get("index", row.get("slice"))
            if isinstance(idx, (int, np.integer)) and key in row and row[key] is not None:
                out[int(idx)] = float(row[key])
        return out

    old, new = by_index(before), by_index(after)
    worse = []
    for idx in sorted(set(old) & set(new)):
        delta = new[idx] - old[idx]
        if (delta < -tolerance) if higher_is_better else (delta > tolerance):
            worse.append(idx)
    return worse
