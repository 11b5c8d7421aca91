"""Masks as they come -> training targets: the one place that reads what a mask means.

Two modes, chosen explicitly:

- ``annotation="full"`` (the default): every pixel is labelled, 0 = background. A binary mask in
  any encoding (0/1, 0/255, bool, 0/65535, 0/max of any integer type) becomes 0/1; a label image
  (instance ids in flat regions) becomes one foreground class, with a note; a grey image (many
  values that vary from pixel to pixel, ``io.kind.content``) is refused; a multi-class mask keeps its classes
  when ``classes`` says how many there are. No value means "not annotated" unless the caller
  names one (``ignore_index``).
- ``annotation="sparse"`` (ilastik's convention): 0 = not annotated, 1 = background,
  2 = first class, 3 = second, ... Unpainted pixels carry no loss and no gradient.

Targets are small signed integers: ``0..K-1`` for the classes and :data:`IGNORE` (-1) for
pixels without a label, a value that can never be a class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

IGNORE = -1  # the target value of pixels without a label: never a class
ANNOTATIONS = ("full", "sparse")
MAX_AUTO_CLASSES = 16  # more distinct ids than this, unasked, is a label image (instances)


@dataclass
class Targets:
    """A mask read as training targets.

    Attributes
    ----------
    labels : ndarray of int8 or int16
        Same shape as the mask: ``0..classes-1``, or :data:`IGNORE` for unlabelled pixels.
    classes : int
        Number of classes including background (2 for binary).
    note : str
        How the mask was read, for the user (empty when there is nothing to say).
    """

    labels: np.ndarray
    classes: int
    note: str = ""


def _values(mask: np.ndarray) -> np.ndarray:
    """Distinct values of a non-negative integer mask (bincount beats ``np.unique``'s sort)."""
    if mask.size == 0:
        return np.empty(0, np.int64)
    top = int(mask.max())
    if top < 1 << 20:
        return np.flatnonzero(np.bincount(mask.ravel(), minlength=1))
    return np.unique(mask)


def integer_labels(mask, what: str = "mask", *, negative: bool = False) -> np.ndarray:
    """The one reader of label arrays (training masks, and the predictions and truths ``metrics`` scores).

    bool -> uint8 (a view), whole-number floats -> int64, integers as they are. Refused with one
    sentence: an empty array, NaN or fractional values, other dtypes, and negative values unless
    ``negative=True`` (for callers that drop an ignore value first and check the rest themselves).
    """
    m = np.asarray(mask)
    if m.size == 0:
        raise InputError(f"The {what} is empty; give labels with pixels in them.")
    if m.dtype == bool:
        return m.view(np.uint8)
    if np.issubdtype(m.dtype, np.floating):
        if not np.all(np.isfinite(m)) or not np.array_equal(m, np.round(m)):
            raise InputError(
                f"The {what} holds fractional or NaN values; give integer labels (threshold "
                "probabilities first)."
            )
        m = m.astype(np.int64)
    elif not np.issubdtype(m.dtype, np.integer):
        raise InputError(f"The {what} has dtype {m.dtype}; give integer labels (0 = background).")
    if not negative and m.min() < 0:
        raise InputError(
            f"The {what} has negative values; give 0 for background and positive values for objects."
        )
    return m


def _refuse_grey(mask, what: str) -> None:
    """A grey (EM) image picked as the mask is refused: read as ids it would train noise.

    ``io.kind.content`` decides (the detector objects use too); label images (many ids in flat
    regions) pass.
    """
    from ..io.kind import content, grey_image_message

    if not (hasattr(mask, "shape") and hasattr(mask, "dtype")):
        mask = np.asarray(mask)
    if mask.ndim < 2 or 0 in mask.shape or np.dtype(mask.dtype).kind not in "biuf":
        return  # integer_labels says what is wrong with these
    found = content(mask)
    if found.kind == "image":
        raise InputError(grey_image_message(
            f"The {what}", found,
            "a mask (0 = background, nonzero = object), a label image, or strokes to train from "
            "(ilastik's 1 = background, 2 = object; CLI --sparse)"))


def _fmt(values) -> str:
    vals = [int(v) for v in values]
    return ", ".join(map(str, vals)) if len(vals) <= 6 else f"{vals[0]}, {vals[1]}, ... {vals[-1]}"


def _small(labels: np.ndarray, classes: int) -> np.ndarray:
    return labels.astype(np.int8 if classes < 127 else np.int16, copy=False)


def to_targets(
    mask,
    *,
    annotation: str = "full",
    classes: int | None = None,
    ignore_index: int | None = None,
    what: str = "mask",
) -> Targets:
    """Read a mask as training targets (see the module docstring for the rules).

    Parameters
    ----------
    mask : array-like
        Integer, bool or whole-number float labels, any shape.
    annotation : {"full", "sparse"}
        Full masks (0 = background) or sparse strokes (0 = not annotated, 1 = background, ...).
    classes : int, optional
        Classes including background; 1 and 2 both mean binary (every nonzero value is the object).
        ``None``: binary for two values, foreground for a label image, refused when ambiguous.
    ignore_index : int, optional
        Full masks only: the mask value of pixels nobody labelled (none unless given).
    what : str
        The mask's name in messages.

    Returns
    -------
    Targets
    """
    if annotation not in ANNOTATIONS:
        raise InputError(f"Unknown annotation {annotation!r}; choose 'full' or 'sparse'.")
    if classes is not None and (isinstance(classes, bool) or int(classes) < 1):
        raise InputError(f"classes={classes!r} must be a whole number >= 1 (1 or 2 = binary).")
    _refuse_grey(mask, what)
    m = integer_labels(mask, what)
    if annotation == "sparse":
        if ignore_index is not None:
            raise InputError(
                "Sparse annotation already reads 0 as 'not annotated'; leave ignore_index unset."
            )
        return _sparse(m, classes, what)
    valid = None if ignore_index is None else m != ignore_index
    values = _values(m if valid is None else m[valid])
    k = None if classes is None else max(int(classes), 2)
    nonzero = values[values != 0]
    note = ""
    if k == 2 or (k is None and nonzero.size <= 1):
        labels, k = (m != 0), 2
        if nonzero.size > 1:
            note = f"{what}: values {_fmt(nonzero)} read as one foreground class."
    elif k is None and nonzero.size > MAX_AUTO_CLASSES:
        labels, k = (m != 0), 2
        note = (
            f"{what}: {nonzero.size} distinct ids read as a label image: every object is "
            "foreground (pass classes=N to train N classes instead)."
        )
    elif k is None:
        raise InputError(
            f"The {what} has values {_fmt(values)}: pass classes={int(values.max()) + 1} to train "
            f"them as classes (0 = background), or classes=1 to train every nonzero value as one "
            "object class."
        )
    else:
        if values.size and int(values.max()) >= k:
            raise InputError(
                f"The {what} has values {_fmt(values)} but classes={k} allows 0..{k - 1}; "
                f"pass classes={int(values.max()) + 1}, or recode the mask to 0..{k - 1}."
            )
        labels = m
    out = _small(labels, k)
    if valid is not None:
        out = np.where(valid, out, IGNORE).astype(out.dtype)
    return Targets(out, k, note)


def _sparse(m: np.ndarray, classes: int | None, what: str) -> Targets:
    top = int(m.max()) if m.size else 0
    k = top if classes is None else max(int(classes), 2)
    k = max(k, 2)
    if top > k:
        raise InputError(
            f"The strokes in {what} use value {top}, but {k} classes allow values 1..{k} "
            f"(1 = background); pass classes={top}."
        )
    labels = m.astype(np.int16) - 1  # 0 (not annotated) -> -1 = IGNORE
    return Targets(_small(labels, k), k, "")


def looks_sparse(mask) -> bool:
    """Does a mask look like strokes (``annotation="sparse"``) rather than a full mask?

    Strokes: at least 90% zeros and either nothing painted yet or painted values that include 2
    (1 = background, 2 = object); a full binary mask (0/1, 0/255) has no 2. Judged on a bounded
    strided sample of big stacks. A hint for the Train widget's annotation mode, not a rule.
    """
    arr = np.asarray(mask)
    step = max(1, int(np.ceil((arr.size / 1e6) ** (1 / max(arr.ndim, 1)))))
    sample = arr[(slice(None, None, step),) * arr.ndim]
    if np.mean(sample == 0) < 0.9:
        return False
    values = np.unique(sample[sample != 0])
    return values.size == 0 or (values.max() <= 9 and 2 in values)


def count_classes(targets) -> tuple[int, int]:
    """``(background pixels, object pixels)`` over a sequence of target arrays."""
    bg = fg = 0
    for t in targets:
        bg += int(np.count_nonzero(t == 0))
        fg += int(np.count_nonzero(t >= 1))
    return bg, fg


def require_both(targets, what: str = "training data", sparse: bool = False) -> None:
    """Refuse targets without background or without objects (nothing to learn from them)."""
    bg, fg = count_classes(targets)
    if bg and fg:
        return
    if sparse:
        missing = "background strokes (value 1)" if not bg else "object strokes (value 2 or more)"
        if not bg and not fg:
            missing = "any strokes"
        raise InputError(f"The {what} has no {missing}; paint some before training.")
    if not bg and not fg:
        raise InputError(f"Every pixel of the {what} is ignored; label some pixels before training.")
    side = "no object pixels (it is all background)" if not fg else "no background pixels"
    raise InputError(
        f"The {what} has {side}: a model cannot learn from one class; add slices or labels "
        "with both object and background."
    )
