"""Fit a PCA patch autoencoder the way the training loop trains the others: a generator of progress.

A PCA autoencoder has no steps to take: its weights are the principal components of the
normalised training patches (:func:`napari_segnets.models.fit_pca`). This wraps that closed-form
fit in the same shape as :func:`~napari_segnets.training.train_iter` (progress events, one "epoch"
event with the validation scores and a preview, a checkpoint written atomically, a
:class:`~napari_segnets.training.TrainResult`), so the widgets and the command line can offer it
next to the trained architectures.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Progress
from .loop import TrainResult

__all__ = ["fit_pca_iter"]


def _as_dataset(data, what: str):
    """The training loop's dataset rules (:func:`setup.as_dataset`) for images alone."""
    from .datasets import SliceDataset
    from .setup import as_dataset

    if isinstance(data, SliceDataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        data = data[0]  # an autoencoder reads images only
    return as_dataset(data, what)


def fit_pca_iter(data, *, val=None, patch: int = 8, components: int = 16, normalization=None,
                 checkpoint=None, seed: int = 0, max_patches: int = 200_000, parent=None):
    """Fit a PCA autoencoder on ``data``'s images; yields Progress, returns a TrainResult.

    Parameters
    ----------
    data, val : SliceDataset, array, or (image, mask) pair
        Training and (optional) validation slices; masks are ignored. ``val="auto"`` holds out
        slices (or a strip) as :func:`~napari_segnets.training.train_iter` does.
    patch, components : int
        Patch side and number of principal components.
    normalization : dict, optional
        Intensity normalisation spec (default percentile 1-99.8 per slice, as in training).
    checkpoint : path-like, optional
        Where to save the fitted model (atomically), with the normalisation and the scores.
    seed, max_patches
        The fit uses at most ``max_patches`` patches, drawn with ``seed``.
    parent
        Refused: a PCA is refitted from data, not fine-tuned.
    """
    from .. import checkpoints
    from ..io.normalize import normalization_spec
    from ..models import fit_pca
    from .validate import score_reconstruction

    if parent is not None:
        raise InputError("A PCA autoencoder is refitted from the data, not fine-tuned: leave 'parent' empty.")
    t0 = time.perf_counter()
    data = _as_dataset(data, "training")
    if isinstance(val, str) and val == "auto":  # as train_iter: held-out slices or a strip
        data, val = data.holdout(patch)
    val = None if val is None else _as_dataset(val, "validation")
    if len(data) == 0:
        raise InputError("No training slices: give at least one image to fit the PCA on.")
    spec = dict(normalization or normalization_spec())
    norm = {k: v for k, v in spec.items() if k not in ("vmin", "vmax") or spec.get("mode") == "fixed"}

    yield Progress("fit", 0, 3, "normalising the training slices")
    images = data.normalized(norm)
    yield Progress("fit", 1, 3, f"fitting {components} components on {patch}x{patch} patches")
    model = fit_pca(images, patch=patch, components=components, max_patches=max_patches, seed=seed)
    train_scores = score_reconstruction([_reconstruct(model, im) for im in images], images)
    entry = {"epoch": 1, "steps": 0, "loss": train_scores["mse"], "lr": None, "val": None}
    preview = None
    if val is not None and len(val):
        val_images = val.normalized(norm)
        preds = [_reconstruct(model, im) for im in val_images]
        entry["val"] = score_reconstruction(preds, val_images)
        preview = preds[0]
    entry["seconds"] = round(time.perf_counter() - t0, 3)
    history = [entry]
    saved = None
    if checkpoint is not None:
        saved = checkpoints.save(Path(checkpoint), model, {
            "normalization": norm,
            "history": history,
            "fit": {"method": "pca", "patch": patch, "components": components, "seed": seed,
                    "slices": len(data)},
        })
    yield Progress("fit", 2, 3, "fitted", payload={"loss": entry["loss"]})
    yield Progress("epoch", 1, 1, _message(entry), payload={
        "epoch": 1, "loss": entry["loss"], "val": entry["val"], "preview": preview})
    yield Progress("fit", 3, 3, f"saved {saved}" if saved else "fitted")
    score = -entry["val"]["mse"] if entry["val"] else None
    return TrainResult(checkpoint=saved, best_score=score, best_epoch=1, history=history,
                       stopped="fit", steps=0, seconds=time.perf_counter() - t0, model=model)


def _reconstruct(model, image: np.ndarray) -> np.ndarray:
    """The model's reconstruction of one normalised slice, by the one forward path."""
    from ..inference import predict

    identity = {"mode": "none", "vmin": 0.0, "vmax": 1.0}  # the slice is already normalised
    out = predict(model, np.asarray(image, np.float32), device="cpu", amp=False,
                  output="reconstruction", normalization=identity)
    return np.asarray(out, np.float32)


def _message(entry: dict) -> str:
    msg = f"PCA fitted: training MSE {entry['loss']:.5f}"
    if entry["val"]:
        msg += f", validation MSE {entry['val']['mse']:.5f} (PSNR {entry['val']['psnr']:.1f} dB)"
    return msg
