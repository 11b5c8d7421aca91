"""Per-object signals that an object is probably wrong.

Disagreement between predictions that should agree (the views of
:mod:`napari_segnets.inference.orthoplane`: flips, quarter turns, the three planes), the
uncertainty along the object's boundary, and shape far outside the table's distribution; with an
autoencoder and the training slices, also novelty (:mod:`.novelty`: how unlike the training data
the object's neighbourhood is). Each signal is a column added to the
:class:`~napari_segnets.objects.ObjectTable`; larger = more suspicious for every one of them.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

# name -> what it measures (the CSV columns, in this order)
SIGNALS = {
    "mask_change": "mean over views of 1 - IoU of the foreground inside the object's box",
    "split_merge": "fraction of views where the object splits, merges with a neighbour or vanishes",
    "boundary_entropy": "mean binary entropy (bits) of the mean probability on the object's boundary",
    "low_confidence": "1 - the mean probability inside the object",
    "error_volume": "mask_change x the object's voxels: about how many voxels a fix would change (what is at stake)",
    "flicker": "mean |area jump| between neighbouring slices / mean area",
    "size_outlier": "|robust z-score| of log volume against the table (tiny or huge)",
    "elongation": "sqrt of the largest / smallest principal moment (physical units)",
    "cut_one_slice": "1 when a 3D object lies in one slice only",
    # only with an autoencoder and reference slices (review's autoencoder=, reference=); not in the default score
    "novelty": "max over wavelet levels of the robust z-score of the autoencoder's error near the object "
    "against the same on the training slices",
}
MARGIN = 2  # voxels around the object's box where views are compared
SPLIT_SHARE = 0.1  # a view's piece counts when it covers this share of the object


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def _boxes(labels: np.ndarray):
    from scipy import ndimage as ndi

    return ndi.find_objects(labels)


def _grow(box, shape, margin: int, *, grow_z: bool = True):
    """A box (slices) grown by ``margin`` voxels on every side within ``shape``; with ``grow_z=False``
    a 3D box keeps its slices (samples and slice-wise statistics are per slice)."""
    keep = 1 if (not grow_z and len(shape) == 3) else 0
    return tuple(b if a < keep else slice(max(0, b.start - margin), min(n, b.stop + margin))
                 for a, (b, n) in enumerate(zip(box, shape)))


def foreground_of(probabilities: np.ndarray, ndim: int) -> np.ndarray:
    """The foreground map of class-first probabilities: the map itself for one class (with or
    without a class axis of 1, as ``objects.foreground`` reads it), 1 - class 0 for softmax."""
    p = np.asarray(probabilities)
    if p.ndim == ndim:
        return p
    if p.ndim == ndim + 1:
        return p[0] if p.shape[0] == 1 else 1.0 - p[0]  # a (1, ...) sigmoid map is not background
    raise InputError(f"Probabilities of shape {p.shape} do not fit labels with {ndim} dimensions.")


def view_signals(labels: np.ndarray, views: dict, *, threshold: float = 0.5, margin: int = MARGIN) -> dict:
    """Disagreement signals of each object across ``views``.

    Parameters
    ----------
    labels : int array (Z, Y, X) or (Y, X)
        The objects (from the mean of the views, usually).
    views : dict of str -> probabilities
        Each view's class-first probabilities in the labels' orientation (one foreground map,
        or (C, ...) with class 0 = background).
    threshold : float
        Foreground threshold of each view.

    Returns
    -------
    dict of str -> dict id -> float
        ``mask_change``, ``split_merge``, ``boundary_entropy``, ``low_confidence``.
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    if not views:
        raise InputError("Give at least one view's probabilities to compare objects across.")
    fgs = [foreground_of(v, labels.ndim) for v in views.values()]
    for f in fgs:
        if f.shape != labels.shape:
            raise InputError(f"A view has shape {f.shape} but the labels {labels.shape}; they must match.")
    out = {k: {} for k in ("mask_change", "split_merge", "boundary_entropy", "low_confidence")}
    for i, box in enumerate(_boxes(labels), start=1):
        if box is None:
            continue
        big = _grow(box, labels.shape, margin)
        lab = labels[big]
        obj = lab == i
        base = lab > 0
        others = base & ~obj
        size = obj.sum()
        stack = np.stack([np.asarray(f[big], np.float32) for f in fgs])
        mean = stack.mean(0)
        change, odd = [], 0
        for p in stack:
            fg = p >= threshold
            union = (fg | base).sum()
            change.append(1.0 - (fg & base).sum() / union if union else 0.0)
            pieces, _n = ndi.label(fg)
            hit, counts = np.unique(pieces[obj & fg], return_counts=True)
            big_hits = hit[counts >= SPLIT_SHARE * size]
            vanished = len(big_hits) == 0
            split = len(big_hits) > 1
            merged = bool(len(big_hits) and np.isin(pieces[others], big_hits).any())
            odd += vanished or split or merged
        rim = obj & ~ndi.binary_erosion(obj)
        out["mask_change"][i] = float(np.mean(change))
        out["split_merge"][i] = odd / len(stack)
        out["boundary_entropy"][i] = float(_entropy(mean[rim]).mean()) if rim.any() else 0.0
        out["low_confidence"][i] = float(1.0 - mean[obj].mean())
    return out


def shape_signals(labels: np.ndarray, table, voxel_size=None) -> dict:
    """Shape outliers of each object of ``table`` (from :func:`napari_segnets.objects.measure`).

    Returns
    -------
    dict of str -> dict id -> float
        ``size_outlier``, ``elongation``, ``cut_one_slice`` and ``flicker`` (3D).
    """
    from ..inference.orthoplane import flicker

    labels = np.asarray(labels)
    ids = table.ids
    size_col = "volume_nm3" if "volume_nm3" in table.columns else "area_nm2"
    logv = np.log(np.maximum(np.asarray(table[size_col], float), 1e-9))
    med = np.median(logv) if len(logv) else 0.0
    mad = 1.4826 * np.median(np.abs(logv - med)) if len(logv) else 1.0
    z = np.abs(logv - med) / max(mad, 0.25)  # floor: a table of near-equal objects flags nothing
    voxel = np.asarray(voxel_size if voxel_size is not None else (1.0,) * labels.ndim, float)
    boxes = _boxes(labels)
    elong = {}
    for i in ids.tolist():
        box = boxes[i - 1] if i - 1 < len(boxes) else None
        if box is None:
            elong[i] = float("nan")
            continue
        coords = np.argwhere(labels[box] == i) * voxel
        if len(coords) < 3:
            elong[i] = 1.0
            continue
        ev = np.linalg.eigvalsh(np.cov(coords.T) + np.eye(labels.ndim) * (voxel.min() ** 2) / 12)
        elong[i] = float(np.sqrt(ev[-1] / ev[0]))
    out = {"size_outlier": dict(zip(ids.tolist(), z.tolist())), "elongation": elong}
    if labels.ndim == 3:
        one = (table["bbox_z1_vox"] - table["bbox_z0_vox"]) == 1
        out["cut_one_slice"] = dict(zip(ids.tolist(), (one & (labels.shape[0] > 1)).astype(float).tolist()))
        fl = flicker(labels)
        out["flicker"] = {i: fl.get(i, 0.0) for i in ids.tolist()}
    return out


def add_signals(table, labels, views, *, voxel_size=None, threshold: float = 0.5, novelty: dict | None = None) -> None:
    """Add every signal of :data:`SIGNALS` that applies as a column of ``table`` (in place).

    ``novelty``: the output of :func:`~napari_segnets.review.novelty.novelty_signals` (its per-level
    columns ``novelty_level1`` ... are added after the signals); None = no novelty columns.
    """
    found = view_signals(labels, views, threshold=threshold)
    if "voxels" in table.columns:  # a likely error weighs by what a fix would change
        size = dict(zip(table.ids.tolist(), np.asarray(table["voxels"], float).tolist()))
        found["error_volume"] = {i: c * size.get(i, np.nan) for i, c in found["mask_change"].items()}
    found.update(shape_signals(labels, table, voxel_size))
    found.update(novelty or {})
    extra = [n for n in (novelty or {}) if n not in SIGNALS]
    for name in [*SIGNALS, *extra]:
        if name in found:
            table.set(name, np.array([found[name].get(i, np.nan) for i in table.ids.tolist()], float))
