"""Object-level scores of predicted instances against ground-truth instances."""

from __future__ import annotations

import numpy as np

from ..errors import InputError

AP_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))


def overlaps(pred: np.ndarray, truth: np.ndarray):
    """Every overlapping (pred id, truth id) pair with its IoU; plus the object sizes.

    Returns
    -------
    pairs : (K, 2) int64, iou : (K,) float64, pred_sizes, truth_sizes : dict id -> voxels
    """
    p = np.asarray(pred).ravel()
    t = np.asarray(truth).ravel()
    both = (p > 0) & (t > 0)
    pp, tt = p[both].astype(np.int64), t[both].astype(np.int64)
    key = pp * (int(t.max()) + 1) + tt
    keys, inter = np.unique(key, return_counts=True)
    pi, ti = keys // (int(t.max()) + 1), keys % (int(t.max()) + 1)
    pid, pcount = np.unique(p[p > 0], return_counts=True)
    tid, tcount = np.unique(t[t > 0], return_counts=True)
    psize = dict(zip(pid.tolist(), pcount.tolist()))
    tsize = dict(zip(tid.tolist(), tcount.tolist()))
    sp = np.array([psize[i] for i in pi.tolist()], np.float64)
    st = np.array([tsize[i] for i in ti.tolist()], np.float64)
    iou = inter / (sp + st - inter) if len(inter) else np.zeros(0)
    return np.stack([pi, ti], 1) if len(pi) else np.zeros((0, 2), np.int64), iou, psize, tsize


def _greedy(pairs, iou, threshold, order=None):
    """One-to-one matches with IoU >= threshold; best IoU first (or predictions in ``order``)."""
    ok = iou >= threshold
    pairs, iou = pairs[ok], iou[ok]
    used_p, used_t, matches = set(), set(), []
    if order is None:
        for k in np.argsort(-iou, kind="stable"):
            a, b = int(pairs[k, 0]), int(pairs[k, 1])
            if a not in used_p and b not in used_t:
                used_p.add(a)
                used_t.add(b)
                matches.append((a, b, float(iou[k])))
        return matches
    by_pred: dict[int, list] = {}
    for k in range(len(pairs)):
        by_pred.setdefault(int(pairs[k, 0]), []).append((float(iou[k]), int(pairs[k, 1])))
    for a in order:  # COCO: each prediction, most confident first, takes its best free truth
        for value, b in sorted(by_pred.get(int(a), []), reverse=True):
            if b not in used_t:
                used_t.add(b)
                matches.append((int(a), b, value))
                break
    return matches


def average_precision(pairs, iou, pred_ids, n_truth: int, scores, threshold: float) -> float:
    """COCO-style AP at one IoU threshold (101-point interpolated precision-recall curve)."""
    if n_truth == 0:
        return float("nan")
    if len(pred_ids) == 0:
        return 0.0
    order = [pred_ids[i] for i in np.argsort(-np.asarray(scores, float), kind="stable")]
    matched = {a for a, _b, _v in _greedy(pairs, iou, threshold, order)}
    tp = np.cumsum([a in matched for a in order])
    fp = np.cumsum([a not in matched for a in order])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, 1)
    for i in range(len(precision) - 2, -1, -1):  # precision envelope
        precision[i] = max(precision[i], precision[i + 1])
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def score_objects(pred, truth, *, iou_threshold: float = 0.5, voxel_size=None, scores=None) -> dict:
    """Match predicted objects to ground-truth objects and score them.

    Parameters
    ----------
    pred, truth : integer arrays of the same shape
        Instance labels (0 = background). Make them from masks with :func:`label_objects` first.
    iou_threshold : float
        A match needs IoU >= this (0.5: each object has at most one partner).
    voxel_size : sequence of float, optional
        nm per voxel; adds the mean matched-volume error in nm^3.
    scores : dict id -> float, optional
        Confidence of each predicted object for the AP ranking (MitoEM/COCO style); default:
        the object's size, largest first.

    Returns
    -------
    dict
        ``n_pred``, ``n_truth``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1`` (at
        ``iou_threshold``), ``ap`` (mean over IoU 0.50:0.05:0.95), ``ap50``, ``ap75``,
        ``count_error`` (n_pred - n_truth), ``count_error_rel``, ``volume_fraction_pred``,
        ``volume_fraction_truth``, ``volume_fraction_error`` (pred - truth), ``matched_volume_error``
        (mean of (V_pred - V_truth) / V_truth over matches), ``matched_volume_abs_error`` (mean of
        its absolute value), ``mean_matched_iou``; ``matched_volume_error_nm3`` with a voxel size.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise InputError(f"The prediction has shape {pred.shape} but the ground truth {truth.shape}; they must match.")
    for name, arr in (("prediction", pred), ("ground truth", truth)):
        if arr.dtype.kind not in "biu" or (arr.size and arr.min() < 0):
            raise InputError(f"The {name} must hold object ids (non-negative integers); make objects first.")
    pairs, iou, psize, tsize = overlaps(pred, truth)
    n_pred, n_truth = len(psize), len(tsize)
    matches = _greedy(pairs, iou, iou_threshold)
    tp = len(matches)
    precision = tp / n_pred if n_pred else float("nan")
    recall = tp / n_truth if n_truth else float("nan")
    f1 = 2 * tp / (n_pred + n_truth) if (n_pred + n_truth) else float("nan")
    pred_ids = sorted(psize)
    conf = [psize[i] if scores is None else float(scores.get(i, 0.0)) for i in pred_ids]
    aps = [average_precision(pairs, iou, pred_ids, n_truth, conf, t) for t in AP_THRESHOLDS]
    total = pred.size
    out = {
        "n_pred": n_pred, "n_truth": n_truth, "tp": tp, "fp": n_pred - tp, "fn": n_truth - tp,
        "precision": precision, "recall": recall, "f1": f1,
        "ap": float(np.mean(aps)) if n_truth else float("nan"), "ap50": aps[0], "ap75": aps[5],
        "count_error": n_pred - n_truth,
        "count_error_rel": (n_pred - n_truth) / n_truth if n_truth else float("nan"),
        "volume_fraction_pred": sum(psize.values()) / total if total else float("nan"),
        "volume_fraction_truth": sum(tsize.values()) / total if total else float("nan"),
    }
    out["volume_fraction_error"] = out["volume_fraction_pred"] - out["volume_fraction_truth"]
    rel = [(psize[a] - tsize[b]) / tsize[b] for a, b, _v in matches]
    out["matched_volume_error"] = float(np.mean(rel)) if rel else float("nan")
    out["matched_volume_abs_error"] = float(np.mean(np.abs(rel))) if rel else float("nan")
    out["mean_matched_iou"] = float(np.mean([v for _a, _b, v in matches])) if matches else float("nan")
    if voxel_size is not None and matches:
        vox = float(np.prod(voxel_size))
        out["matched_volume_error_nm3"] = float(np.mean([(psize[a] - tsize[b]) * vox for a, b, _v in matches]))
    out["matches"] = [(a, b) for a, b, _v in matches]
    return out
