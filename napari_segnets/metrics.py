"""Segmentation scores: IoU, Dice, pixel accuracy and F1, and for membranes the adapted Rand error and VI;
reconstruction scores: MSE and PSNR (the one definition, used by training and the wavelet comparison).

Conventions (the same in every function):

- ``pred`` and ``truth`` are integer label arrays of the same shape (bool is fine for binary). Float arrays
  are accepted only when every value is a whole number; threshold probabilities first.
- ``ignore_index``: pixels where ``truth == ignore_index`` (unlabelled pixels) are left out of every
  score. None by default: no value means "unlabelled" unless the caller names one.
- Binary (labels 0/1): IoU, Dice and F1 are for the foreground class 1. :func:`score_stack` in its
  binary and membrane modes reads any full mask (0/1, 0/255, bool, label ids): nonzero = object.
- A class absent from both ``pred`` and ``truth`` has no IoU or Dice: it is undefined (NaN), never
  1.0, so an empty slice predicted empty does not count as a success. Means skip undefined values.
- A class present in only one of them scores 0.0.
- Bad inputs (shape mismatch, empty arrays, NaN, fractional or negative labels, labels outside
  ``classes``, nothing left after ``ignore_index``) raise :class:`~napari_segnets.errors.InputError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_segnets.errors import InputError

__all__ = [
    "confusion_matrix",
    "dice",
    "f1",
    "format_score",
    "iou",
    "membrane_to_cells",
    "mse",
    "pixel_accuracy",
    "psnr",
    "rand_error",
    "score_stack",
    "variation_of_information",
]


def _as_labels(arr, name: str) -> np.ndarray:
    """Labels as integers: ``training.masks.integer_labels`` reads them (negatives are checked by the
    callers, after an ignore value is removed)."""
    from .training.masks import integer_labels

    return integer_labels(arr, name, negative=True)


def _prepare(pred, truth, ignore_index) -> tuple[np.ndarray, np.ndarray]:
    """Return flattened (pred, truth) with ignored pixels removed, after checking them."""
    p = _as_labels(pred, "prediction")
    t = _as_labels(truth, "ground-truth")
    if p.shape != t.shape:
        raise InputError(
            f"The prediction has shape {p.shape} but the ground truth has shape {t.shape}; they must match."
        )
    p = p.ravel()
    t = t.ravel()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
        if t.size == 0:
            raise InputError(
                f"Every ground-truth pixel equals ignore_index={ignore_index}; there is nothing to score."
            )
    if (p.size and p.min() < 0) or (t.size and t.min() < 0):
        raise InputError("Labels must not be negative; use 0 for background and 1, 2, ... for classes.")
    return p, t


def _class_list(p: np.ndarray, t: np.ndarray, classes) -> tuple[list[int], bool]:
    """The classes to score and whether the result is binary (a single float)."""
    if classes is None:
        top = max(int(p.max()), int(t.max()))
        if top <= 1:  # labels are non-negative here, so this means all 0/1
            return [0, 1], True
        if top < 65536:  # presence by counting is much faster than np.unique's sort
            present = np.flatnonzero((np.bincount(p, minlength=top + 1) > 0)
                                     | (np.bincount(t, minlength=top + 1) > 0))
        else:
            present = np.union1d(np.unique(p), np.unique(t))
        return [int(c) for c in present], False
    if isinstance(classes, (int, np.integer)):
        if classes < 1:
            raise InputError(f"classes={classes} must be at least 1 (the number of classes).")
        labels = list(range(int(classes)))
        top = max(int(p.max()), int(t.max()))
        if top >= classes:
            raise InputError(
                f"Found label {top} but classes={classes} allows only 0..{classes - 1}; "
                "pass the right number of classes."
            )
        return labels, False
    return [int(c) for c in classes], False


def confusion_matrix(pred, truth, classes: int, ignore_index=None) -> np.ndarray:
    """Pixel counts ``m[t, p]`` for ``classes`` labels 0..classes-1, ignored pixels left out."""
    p, t = _prepare(pred, truth, ignore_index)
    _class_list(p, t, int(classes))  # range check
    k = int(classes)
    return np.bincount(t.astype(np.int64) * k + p, minlength=k * k).reshape(k, k)


def _per_class(pred, truth, classes, ignore_index, score) -> float | dict[int, float]:
    p, t = _prepare(pred, truth, ignore_index)
    labels, binary = _class_list(p, t, classes)
    out: dict[int, float] = {}
    for c in labels:  # boolean passes beat a bincount confusion matrix here (no int64 temporaries)
        pc, tc = p == c, t == c
        out[c] = score(int(np.count_nonzero(pc & tc)), int(np.count_nonzero(pc)), int(np.count_nonzero(tc)))
    return out[1] if binary else out


def _iou_counts(inter: int, n_p: int, n_t: int) -> float:
    union = n_p + n_t - inter
    return float("nan") if union == 0 else inter / union  # nothing to find, nothing found: undefined


def _dice_counts(inter: int, n_p: int, n_t: int) -> float:
    total = n_p + n_t
    return float("nan") if total == 0 else 2.0 * inter / total


def _nanmean(values) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def mse(reconstruction, target) -> float:
    """Mean squared error over all pixels (float64 accumulation)."""
    r = np.asarray(reconstruction, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if r.shape != t.shape:
        raise InputError(f"The reconstruction has shape {r.shape} but the target {t.shape}; they must match.")
    return float(np.mean((r - t) ** 2))


def psnr(mse_value: float, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB from an MSE: ``10 log10(range^2 / mse)``; inf when exact."""
    return math.inf if mse_value == 0 else 10.0 * math.log10(data_range**2 / mse_value)


def format_score(value) -> str:
    """``0.8765`` -> ``"0.8765"``; an undefined score (NaN) -> ``"undefined"``."""
    if value is None or not np.isfinite(value):
        return "undefined"
    return f"{float(value):.4f}"


def iou(pred, truth, classes=None, ignore_index=None) -> float | dict[int, float]:
    """Intersection over union (Jaccard index).

    Parameters
    ----------
    pred, truth : array of int
        Label images of the same shape.
    classes : None, int or sequence of int
        None: binary (a float for class 1) when all labels are 0/1, else a dict for every label present.
        An int K: a dict for classes 0..K-1 (labels >= K are an error). A sequence: a dict for those labels.
    ignore_index : int, optional
        Ground-truth value of unlabelled pixels, left out of the score.

    Returns
    -------
    float or dict
        Foreground IoU (binary) or ``{class: IoU}``. A class in neither mask: NaN (undefined).
    """
    return _per_class(pred, truth, classes, ignore_index, _iou_counts)


def dice(pred, truth, classes=None, ignore_index=None) -> float | dict[int, float]:
    """Dice coefficient (F1 of the pixel sets); same arguments and conventions as :func:`iou`."""
    return _per_class(pred, truth, classes, ignore_index, _dice_counts)


def pixel_accuracy(pred, truth, ignore_index=None) -> float:
    """Fraction of (non-ignored) pixels whose label is right."""
    p, t = _prepare(pred, truth, ignore_index)
    return float(np.count_nonzero(p == t)) / t.size


def f1(pred, truth, positive: int = 1, ignore_index=None) -> float:
    """Pixel F1 of the ``positive`` class (e.g. membrane pixels in ISBI 2012); NaN when both lack it."""
    p, t = _prepare(pred, truth, ignore_index)
    pp, tp_ = p == positive, t == positive
    return _dice_counts(int(np.count_nonzero(pp & tp_)), int(np.count_nonzero(pp)), int(np.count_nonzero(tp_)))


def membrane_to_cells(membrane, *, connectivity: int = 1, fill: bool = False) -> np.ndarray:
    """Turn a 2D membrane map (non-zero = membrane) into cell labels.

    Cells are the connected components of non-membrane pixels (``connectivity`` 1 = 4-neighbours,
    2 = 8-neighbours), labelled 1, 2, ...; membrane pixels get 0. With ``fill=True`` every membrane pixel
    is given to its nearest cell instead, so the result is a full partition of the image.
    """
    from scipy import ndimage

    m = np.asarray(membrane) != 0
    structure = ndimage.generate_binary_structure(m.ndim, connectivity)
    cells, n = ndimage.label(~m, structure=structure)
    if fill and n > 0 and m.any():
        # Nearest-cell assignment via the distance transform's index of the closest cell pixel.
        _, idx = ndimage.distance_transform_edt(cells == 0, return_indices=True)
        cells = cells[tuple(idx)]
    return cells


def _segmentations(pred, truth, ignore_index, membrane: bool, connectivity: int):
    p = _as_labels(pred, "prediction")
    t = _as_labels(truth, "ground-truth")
    if p.shape != t.shape:
        raise InputError(
            f"The prediction has shape {p.shape} but the ground truth has shape {t.shape}; they must match."
        )
    if (p.min() < 0) or (t.min() < 0):
        raise InputError("Labels must not be negative; use 0 for background and 1, 2, ... for segments.")
    if not membrane:
        if ignore_index is not None:
            t = np.where(t == ignore_index, 0, t)
        return p, t
    unlabelled = (t == ignore_index) if ignore_index is not None else None
    if p.ndim != 2:
        raise InputError(
            f"Membrane maps must be 2D sections, got shape {p.shape}; score stacks with score_stack()."
        )
    # Unlabelled pixels act as membrane (a barrier) so they never join two true cells.
    t_cells = membrane_to_cells(np.where(unlabelled, 1, t) if unlabelled is not None else t,
                                connectivity=connectivity)
    if unlabelled is not None:
        t_cells[unlabelled] = 0
    p_cells = membrane_to_cells(p, connectivity=connectivity, fill=True)
    return p_cells, t_cells


def rand_error(pred, truth, *, membrane: bool = False, ignore_index=None, connectivity: int = 1,
               details: bool = False) -> float | dict[str, float]:
    """Adapted Rand error (0 = perfect), via ``skimage.metrics.adapted_rand_error``.

    Ground-truth pixels labelled 0 are left out of the score (scikit-image's convention, as in the ISBI
    2012 challenge). With ``membrane=True`` both inputs are membrane maps (1 = membrane, 0 = cell
    interior): the cells are first segmented as connected components of non-membrane pixels (see
    :func:`membrane_to_cells`); ground-truth membrane pixels are then left out, and predicted membrane
    pixels are given to the nearest predicted cell so the prediction is a full partition.

    Returns
    -------
    float or dict
        The error, or with ``details=True`` ``{"error", "precision", "recall"}``, where precision is the
        share of same-segment pixel pairs in the prediction that are also together in the truth (low
        precision = false merges) and recall the reverse (low recall = false splits).
    """
    p, t = _segmentations(pred, truth, ignore_index, membrane, connectivity)
    r = _rand_parts(p, t)
    return r if details else r["error"]


def _rand_parts(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """Adapted Rand error, precision and recall of segmentations ``p`` against ``t`` (0 in t = left out)."""
    from skimage.metrics import adapted_rand_error, contingency_table

    if not np.any(t):
        raise InputError("The ground truth has no labelled segment (all 0 or ignored); nothing to score.")
    table = contingency_table(t, p, ignore_labels=(0,), normalize=False, sparse_type="array")
    error, _, _ = adapted_rand_error(table=table)
    # scikit-image returns precision and recall in swapped roles (scikit-image issue #6485), so compute
    # them from their definitions: ordered pairs of distinct pixels together in both / together in one.
    counts = table.data.astype(np.float64)
    n = counts.sum()
    together = counts @ counts - n
    rows = np.asarray(table.sum(axis=1)).ravel().astype(np.float64)  # truth segment sizes
    cols = np.asarray(table.sum(axis=0)).ravel().astype(np.float64)  # prediction segment sizes
    pairs_t = rows @ rows - n
    pairs_p = cols @ cols - n
    precision = together / pairs_p if pairs_p > 0 else 1.0
    recall = together / pairs_t if pairs_t > 0 else 1.0
    return {"error": float(error), "precision": float(precision), "recall": float(recall)}


def variation_of_information(pred, truth, *, membrane: bool = False, ignore_index=None,
                             connectivity: int = 1) -> dict[str, float]:
    """Variation of information in bits, via ``skimage.metrics.variation_of_information``.

    Ground-truth pixels labelled 0 (or ``ignore_index``) are left out. ``membrane=True`` segments membrane maps
    into cells first, exactly as in :func:`rand_error`.

    Returns
    -------
    dict
        ``{"vi": split + merge, "split": H(pred | truth), "merge": H(truth | pred)}``: ``split`` grows when
        the prediction cuts true segments apart, ``merge`` when it joins them.
    """
    p, t = _segmentations(pred, truth, ignore_index, membrane, connectivity)
    return _vi_parts(p, t)


def _vi_parts(p: np.ndarray, t: np.ndarray) -> dict[str, float]:
    from skimage.metrics import variation_of_information as _vi

    if not np.any(t):
        raise InputError("The ground truth has no labelled segment (all 0 or ignored); nothing to score.")
    split, merge = _vi(t, p, ignore_labels=(0,))
    return {"vi": float(split + merge), "split": float(split), "merge": float(merge)}


def score_stack(pred, truth, *, mode: str = "binary", classes: int | Sequence[int] | None = None,
                ignore_index=None, connectivity: int = 1) -> dict:
    """Score a stack slice by slice and as a whole.

    Parameters
    ----------
    pred, truth : array (Z, Y, X) or (Y, X)
        Predicted and true labels.
    mode : {"binary", "multiclass", "membrane"}
        binary: IoU, Dice, precision, recall, pixel accuracy of class 1. multiclass: per-class IoU/Dice
        dicts plus their means (``classes`` defaults to every label present). membrane: the binary scores
        of the membrane class 1 (its pixel F1, ``f1``, equals its Dice), plus adapted Rand error and VI
        (cells segmented per section as in :func:`rand_error`). binary and membrane read any full
        mask (0/1, 0/255, bool, label ids): every nonzero value is the object.
    ignore_index : int, optional
        Ground-truth value of unlabelled pixels.

    Returns
    -------
    dict
        ``{"per_slice": [dict, ...], "overall": dict}``. Each slice dict has ``index`` and ``pixels`` (scored
        pixels); a slice with every pixel ignored has only those two keys. Overall pixel scores pool the
        pixels of all slices (the usual test-volume IoU); overall Rand error and VI are means over slices.
    """
    if mode not in ("binary", "multiclass", "membrane"):
        raise InputError(f"mode={mode!r} is not one of 'binary', 'multiclass', 'membrane'.")
    p_all = _as_labels(pred, "prediction")
    t_all = _as_labels(truth, "ground-truth")
    if p_all.shape != t_all.shape:
        raise InputError(
            f"The prediction has shape {p_all.shape} but the ground truth has shape {t_all.shape}; "
            "they must match."
        )
    if p_all.ndim == 2:
        p_all, t_all = p_all[None], t_all[None]
    if p_all.ndim != 3:
        raise InputError(f"score_stack takes 2D or 3D (Z, Y, X) arrays, got shape {p_all.shape}.")
    if mode != "multiclass":  # full masks in any binary encoding: nonzero = object
        unlabelled = None if ignore_index is None else t_all == ignore_index
        p_all, t_all = (p_all != 0).view(np.uint8), (t_all != 0).view(np.uint8)
        if unlabelled is not None:
            ignore_index = 2  # out of the 0/1 range, so never a class
            t_all = np.where(unlabelled, np.uint8(2), t_all)
    p_flat, t_flat = _prepare(p_all, t_all, ignore_index)
    if mode == "multiclass":
        labels, _ = _class_list(p_flat, t_flat, classes)
        labels = [c for c in labels if c != ignore_index]
        k = max(labels) + 1
        top = max(int(p_flat.max()), int(t_flat.max()))
        if top >= k:
            raise InputError(f"Found label {top} outside classes {labels}; pass the right classes.")
    else:
        labels, k = [0, 1], 2

    per_slice: list[dict] = []
    total = np.zeros((k, k), dtype=np.int64)
    rand, vis = [], []
    for z in range(p_all.shape[0]):
        entry: dict = {"index": z}
        t_z = t_all[z]
        n_valid = int(t_z.size if ignore_index is None else np.count_nonzero(t_z != ignore_index))
        entry["pixels"] = n_valid
        if n_valid == 0:
            per_slice.append(entry)
            continue
        cm = confusion_matrix(p_all[z], t_z, k, ignore_index)
        total += cm
        entry.update(_scores_from_confusion(cm, labels, mode))
        if mode == "membrane":
            if np.any(t_z == 0):  # some cell interior to score (segmented once for Rand and VI)
                p_cells, t_cells = _segmentations(p_all[z], t_z, ignore_index, True, connectivity)
                r, v = _rand_parts(p_cells, t_cells), _vi_parts(p_cells, t_cells)
                entry.update(rand_error=r["error"], rand_precision=r["precision"],
                             rand_recall=r["recall"], vi=v["vi"], vi_split=v["split"], vi_merge=v["merge"])
                rand.append(r["error"])
                vis.append(v)
        per_slice.append(entry)
    overall = {"pixels": int(total.sum()), "slices": len(per_slice)}
    overall.update(_scores_from_confusion(total, labels, mode))
    if mode == "membrane" and rand:
        overall.update(rand_error=float(np.mean(rand)), vi=float(np.mean([v["vi"] for v in vis])),
                       vi_split=float(np.mean([v["split"] for v in vis])),
                       vi_merge=float(np.mean([v["merge"] for v in vis])))
    return {"per_slice": per_slice, "overall": overall}


def _scores_from_confusion(cm: np.ndarray, labels: list[int], mode: str) -> dict:
    """Pixel scores from a confusion matrix ``cm[truth, pred]``."""
    out: dict = {"pixel_accuracy": float(np.trace(cm) / cm.sum())}
    per_iou, per_dice = {}, {}
    for c in labels:
        inter = int(cm[c, c])
        n_p, n_t = int(cm[:, c].sum()), int(cm[c, :].sum())
        per_iou[c] = _iou_counts(inter, n_p, n_t)
        per_dice[c] = _dice_counts(inter, n_p, n_t)
    if mode == "multiclass":
        out["iou"], out["dice"] = per_iou, per_dice
        out["mean_iou"] = _nanmean(per_iou.values())
        out["mean_dice"] = _nanmean(per_dice.values())
        return out
    inter, n_p, n_t = int(cm[1, 1]), int(cm[:, 1].sum()), int(cm[1, :].sum())
    nan = float("nan")
    precision = (nan if n_t == 0 else 0.0) if n_p == 0 else inter / n_p
    recall = nan if n_t == 0 else inter / n_t
    out.update(iou=per_iou[1], dice=per_dice[1], precision=precision, recall=recall)
    if mode == "membrane":
        out["f1"] = per_dice[1]  # the pixel F1 of the membrane class is its Dice
    return out
