"""Validation during training: predictions (from ``inference.predict``) turned into scores."""

from __future__ import annotations

import numpy as np


def to_prediction(output: np.ndarray, task: str) -> np.ndarray:
    """From ``predict``'s probabilities (C, H, W) or (H, W) (or a reconstruction): binary:
    the foreground probability; multi-class: argmax labels; autoencode: the reconstruction."""
    if task == "autoencode" or output.ndim == 2:
        return output if output.ndim == 2 or output.shape[0] != 1 else output[0]
    if output.shape[0] == 1:
        return output[0].astype(np.float32)
    return output.argmax(0).astype(np.uint8)


def to_labels(prediction: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Integer labels from :func:`to_prediction` output."""
    if prediction.dtype.kind == "f":
        return (prediction >= threshold).astype(np.uint8)
    return prediction


def _per_class(value, classes: list[int]) -> dict[str, float]:
    """Metrics may answer a float, a sequence or a dict; normalise to ``{"class": value}``."""
    if isinstance(value, dict):
        return {
            str(k): float(v)
            for k, v in value.items()
            if k in classes or str(k) in map(str, classes)
        }
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size == 1:
        return {str(classes[-1]): float(arr[0])}
    return {str(c): float(arr[c]) for c in classes if c < arr.size}


def score(
    preds: list[np.ndarray], truths: list[np.ndarray], *, n_classes: int, ignore_index: int
) -> dict:
    """IoU and Dice per foreground class over all validation slices (from :mod:`napari_segnets.metrics`).

    Returns ``{"iou": {cls: v}, "dice": {cls: v}, "score": mean foreground IoU}``.
    """
    from .. import metrics

    pred = np.concatenate([to_labels(p).ravel() for p in preds])
    truth = np.concatenate([t.ravel() for t in truths])
    classes = [1] if n_classes <= 2 else list(range(1, n_classes))
    iou = _per_class(metrics.iou(pred, truth, classes=classes, ignore_index=ignore_index), classes)
    dice = _per_class(metrics.dice(pred, truth, classes=classes, ignore_index=ignore_index), classes)
    finite = [v for v in iou.values() if np.isfinite(v)]
    return {"iou": iou, "dice": dice, "score": float(np.mean(finite)) if finite else float("nan")}


def score_reconstruction(preds: list[np.ndarray], targets: list[np.ndarray]) -> dict:
    """MSE and PSNR (:mod:`napari_segnets.metrics`; data range 1, the normalised intensity
    space) over all slices; score = -MSE."""
    from .. import metrics

    flat = [np.ravel(p) for p in preds], [np.ravel(t) for t in targets]
    err = metrics.mse(np.concatenate(flat[0]), np.concatenate(flat[1]))
    return {"mse": err, "psnr": metrics.psnr(err, 1.0), "score": -err}
