"""Validation during training: whole-slice prediction in eval mode and per-class scores."""

from __future__ import annotations

import numpy as np

_TILE = 1024  # slices larger than this (per side) are predicted in overlapping tiles


def _pad_to(arr: np.ndarray, multiple: int, extra: int = 0):
    h, w = arr.shape
    ph = (-(h + 2 * extra)) % multiple
    pw = (-(w + 2 * extra)) % multiple
    pads = ((extra, extra + ph), (extra, extra + pw))
    return np.pad(arr, pads, mode="symmetric"), (extra, extra)


def _run(model, arr: np.ndarray, device, amp: bool, channels_last: bool = False) -> np.ndarray:
    """Model output for one normalised 2D array whose sides fit the model's size multiple."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(arr, np.float32))[None, None].to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=device.type, enabled=amp):
        out = model(x)
    return out[0].float().cpu().numpy()


def predict_slice(
    model, image: np.ndarray, device, *, amp: bool = False, channels_last: bool = False
) -> np.ndarray:
    """Raw model output ``(C, H, W)`` for a normalised slice (call under ``inference_mode``, eval mode).

    Small slices go through in one pass (mirror-padded to the size multiple); large ones in
    tiles that overlap by the model's halo, keeping only each tile's centre.
    """
    m = int(getattr(model, "size_multiple", 1) or 1)
    halo = int(getattr(model, "halo", 0) or 0)
    h, w = image.shape
    if max(h, w) <= _TILE:
        padded, (oy, ox) = _pad_to(image, m)
        return _run(model, padded, device, amp, channels_last)[:, oy : oy + h, ox : ox + w]
    halo = min(halo, 256)  # context beyond this barely changes a validation score
    padded, _ = _pad_to(image, m, extra=halo)
    core = _TILE - 2 * halo
    out = None
    for y in range(0, h, core):
        for x in range(0, w, core):
            th, tw = min(core, h - y), min(core, w - x)
            tile = padded[y : y + th + 2 * halo, x : x + tw + 2 * halo]
            tile, _ = _pad_to(tile, m)
            res = _run(model, tile, device, amp, channels_last)
            if out is None:
                out = np.zeros((res.shape[0], h, w), np.float32)
            out[:, y : y + th, x : x + tw] = res[:, halo : halo + th, halo : halo + tw]
    return out


def to_prediction(output: np.ndarray, task: str) -> np.ndarray:
    """Binary: foreground probability; multi-class: argmax labels; autoencode: the reconstruction."""
    if task == "autoencode":
        return output[0] if output.shape[0] == 1 else output
    if output.shape[0] == 1:
        return (1.0 / (1.0 + np.exp(-output[0]))).astype(np.float32)
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
    """Mean squared error and PSNR (data range 1, the normalised intensity space); score = -MSE."""
    err = float(
        np.mean(
            np.concatenate([((p - t) ** 2).ravel() for p, t in zip(preds, targets, strict=True)])
        )
    )
    psnr = float(10 * np.log10(1.0 / max(err, 1e-12)))
    return {"mse": err, "psnr": psnr, "score": -err}
