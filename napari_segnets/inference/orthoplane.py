"""Predictions of one volume seen several ways: the three orthogonal planes, flips, quarter turns.

Every view runs the one inference engine (:func:`~napari_segnets.inference.predict_iter`) on a
transposed / flipped copy of the stack and is turned back to (Z, Y, X), so the views can be
averaged (orthoplane inference: xy, xz and yz planes, as empanada's consensus) or compared (the
disagreement signals of :mod:`napari_segnets.review`). The intensity normalisation is fitted once
on the whole stack and shared by every view, so views differ only in what the model sees.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..progress import Progress, drive

PLANES = ("xy", "xz", "yz")
FLIPS = ("flip_y", "flip_x", "rot90")
VIEWS = PLANES + FLIPS
# Orthoplane pays for itself only when the other planes look like the training sections: at most
# this ratio between the largest and the smallest voxel side (EPFL/Lucchi is isotropic, 5 nm).
MAX_ANISOTROPY = 1.5
MIN_SLICES = 16  # xz/yz planes of fewer rows are mostly mirrored padding


def to_view(volume: np.ndarray, view: str) -> np.ndarray:
    """The (Z, Y, X) ``volume`` as the stack of 2D planes that ``view`` predicts (a contiguous copy)."""
    if view == "xy":
        return volume
    if view == "xz":  # planes of constant y: (Y, Z, X)
        return np.ascontiguousarray(volume.transpose(1, 0, 2))
    if view == "yz":  # planes of constant x: (X, Z, Y)
        return np.ascontiguousarray(volume.transpose(2, 0, 1))
    if view == "flip_y":
        return np.ascontiguousarray(volume[:, ::-1])
    if view == "flip_x":
        return np.ascontiguousarray(volume[:, :, ::-1])
    if view == "rot90":
        return np.ascontiguousarray(np.rot90(volume, 1, axes=(1, 2)))
    raise InputError(f"Unknown view {view!r}: use one of {', '.join(VIEWS)}.")


def from_view(result: np.ndarray, view: str) -> np.ndarray:
    """Undo :func:`to_view` on a prediction (a leading class axis, if any, is kept in front)."""
    lead = result.ndim - 3
    axes = lambda order: tuple(range(lead)) + tuple(lead + a for a in order)  # noqa: E731
    if view == "xy":
        return result
    if view == "xz":
        return result.transpose(axes((1, 0, 2)))
    if view == "yz":  # (X, Z, Y) -> (Z, Y, X)
        return result.transpose(axes((1, 2, 0)))
    if view == "flip_y":
        return np.flip(result, lead + 1)
    if view == "flip_x":
        return np.flip(result, lead + 2)
    if view == "rot90":
        return np.rot90(result, -1, axes=(lead + 1, lead + 2))
    raise InputError(f"Unknown view {view!r}: use one of {', '.join(VIEWS)}.")


def predict_views_iter(model, image, views=PLANES, *, normalization=None, **kwargs):
    """Predict ``image`` once per view; a progress generator returning ``{view: probabilities}``.

    Parameters
    ----------
    model : torch.nn.Module
        A segmentation model (see :func:`~napari_segnets.inference.predict`).
    image : array-like (Z, Y, X) or (Y, X)
        Read into memory (views transpose the whole stack). 2D images take flips and turns only.
    views : sequence of str
        From ``"xy"``, ``"xz"``, ``"yz"`` (the three planes) and ``"flip_y"``, ``"flip_x"``,
        ``"rot90"``.
    normalization : dict or str, optional
        As for ``predict``; fitted once on the whole image and shared by all views.
    **kwargs
        Passed to :func:`~napari_segnets.inference.predict_iter` (tile, device, amp, ...);
        ``output`` must be ``"probabilities"`` (the default) and ``out`` is not taken.

    Returns
    -------
    dict of str -> numpy.ndarray
        Class-first probabilities of each view, back in the image's (Z, Y, X) orientation.
    """
    from .predict import _fit, check_image, predict_iter

    if kwargs.get("output", "probabilities") != "probabilities" or "out" in kwargs:
        raise InputError("Views are predicted as in-memory probabilities: drop output= and out=.")
    kwargs.pop("output", None)
    views = tuple(views)
    if not views:
        raise InputError("Give at least one view to predict.")
    volume = np.asarray(check_image(image))
    flat = volume.ndim == 2
    if flat:
        bad = [v for v in views if v in ("xz", "yz")]
        if bad:
            raise InputError(f"A 2D image has no {bad[0]} planes: orthoplane views need a (Z, Y, X) stack.")
        volume = volume[None]
    fitted = _fit(volume, normalization)
    results = {}
    for k, view in enumerate(views):
        job = predict_iter(model, to_view(volume, view), normalization=fitted, **kwargs)
        try:
            while True:
                event = next(job)
                yield Progress("views", event.done, event.total,
                               f"view {view} ({k + 1}/{len(views)}): {event.message}", event.payload)
        except StopIteration as stop:
            pred = from_view(np.asarray(stop.value), view)
        results[view] = np.ascontiguousarray(pred[..., 0, :, :] if flat else pred)
    return results


def predict_views(model, image, views=PLANES, **kwargs) -> dict:
    """The plain twin of :func:`predict_views_iter`."""
    return drive(predict_views_iter(model, image, views, **kwargs))


def predict_orthoplane_iter(model, image, *, planes=PLANES, output: str = "probabilities",
                            threshold: float = 0.5, **kwargs):
    """Orthoplane inference: the mean of the probabilities predicted along xy, xz and yz planes.

    A progress generator returning class-first probabilities (or labels for
    ``output="labels"``: ``threshold`` for one class, argmax otherwise), shaped like
    ``predict``'s. For isotropic or nearly isotropic volumes (see :func:`orthoplane_pays`).
    """
    if output not in ("probabilities", "labels"):
        raise InputError(f"Orthoplane inference gives probabilities or labels, not {output!r}.")
    if len(np.shape(image)) != 3:
        raise InputError("Orthoplane inference needs a (Z, Y, X) stack, not a single image.")
    views = yield from predict_views_iter(model, image, planes, **kwargs)
    mean = np.mean([views[p] for p in planes], axis=0, dtype=np.float64).astype(np.float32)
    if output == "probabilities":
        return mean
    from .output import label_dtype

    if mean.ndim == 3:
        return (mean >= threshold).astype(np.uint8)
    return np.argmax(mean, axis=0).astype(label_dtype(mean.shape[0]))


def predict_orthoplane(model, image, **kwargs):
    """The plain twin of :func:`predict_orthoplane_iter`."""
    return drive(predict_orthoplane_iter(model, image, **kwargs))


def orthoplane_pays(shape, voxel_size=None) -> bool:
    """Whether orthoplane inference is the default for a stack: 3D, at least ``MIN_SLICES`` slices,
    and voxel sides within ``MAX_ANISOTROPY`` of each other (unknown voxel size: no)."""
    if len(shape) != 3 or shape[0] < MIN_SLICES or voxel_size is None:
        return False
    sides = [float(v) for v in voxel_size if v is not None]
    if len(sides) != 3 or min(sides) <= 0:
        return False
    return max(sides) / min(sides) <= MAX_ANISOTROPY


def flicker(labels: np.ndarray) -> dict:
    """How much each object's area jumps between neighbouring slices.

    For an object spanning slices z0..z1, the mean of ``|A(z+1) - A(z)|`` over its consecutive
    slices divided by its mean area ``A`` (0 for an object in one slice). A smooth 3D object
    scores ~``1.5 / radius`` (a ball); a prediction that appears and vanishes slice to slice
    scores near 1 or above.

    Returns
    -------
    dict of int -> float
        Object id -> flicker.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError("Flicker is measured across slices: give (Z, Y, X) labels.")
    top = int(labels.max()) if labels.size else 0
    areas = np.zeros((labels.shape[0], top + 1), np.int64)
    for z in range(labels.shape[0]):
        areas[z] = np.bincount(labels[z].ravel(), minlength=top + 1)
    out = {}
    for i in np.flatnonzero(areas[:, 1:].any(0)) + 1:
        zs = np.flatnonzero(areas[:, i])
        a = areas[zs[0]:zs[-1] + 1, i].astype(np.float64)
        out[int(i)] = float(np.abs(np.diff(a)).mean() / a.mean()) if len(a) > 1 else 0.0
    return out
