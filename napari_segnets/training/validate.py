"""Validation during training: predictions (from ``inference.predict``) turned into scores."""

from __future__ import annotations

import numpy as np

NO_LIMIT = 2**62  # "no epoch limit" (a time budget alone)


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


def better(current, best) -> bool:
    """Is ``current`` a better validation score than ``best``?

    An undefined score (NaN: no object in the validation truth nor in the prediction) says
    nothing, so while nothing better is known the latest weights are kept.
    """
    if best is None or not np.isfinite(best):
        return True
    return bool(np.isfinite(current) and current > best)


def validate_run(run, task: str):
    """Scores on the held-out slices, predicted by the one forward path (``inference.predict``)."""
    from ..inference import predict

    identity = {"mode": "none", "vmin": 0.0, "vmax": 1.0}  # the slices are already normalised
    output = "reconstruction" if task == "autoencode" else "probabilities"
    m, halo = int(run.model.size_multiple), int(run.model.halo)
    preds = []
    for img in run.val_images:
        # one window per slice (the slice and its mirrored halo): the exact whole-slice result
        tile = tuple(-(-(side + 2 * halo) // m) * m for side in img.shape)
        out = predict(run.model, img, device=run.device, amp=run.amp_dtype or False,
                      output=output, normalization=identity, tile=tile, blend="none")
        preds.append(to_prediction(np.asarray(out), task))
    if task == "autoencode":
        result = score_reconstruction(preds, run.val_images)
    else:
        result = score(
            preds, run.val_masks, n_classes=max(run.n_classes, 2), ignore_index=run.ignore_index
        )
    return result, preds[0]


def epoch_message(entry: dict, epochs: int) -> str:
    of = "" if epochs == NO_LIMIT else f"/{epochs}"
    msg = f"epoch {entry['epoch']}{of} loss {entry['loss']:.4f}"
    val = entry.get("val")
    if val and "iou" in val:
        msg += " val IoU " + ("undefined" if not np.isfinite(val["score"]) else f"{val['score']:.3f}")
    elif val:
        msg += f" val MSE {val['mse']:.5f}"
    return msg
