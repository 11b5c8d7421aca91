"""Suggest what to correct next: rank slices or tiles by how unsure the model is.

Every score lies in [0, 1] (1 = as unsure as possible) and is the mean of a per-pixel map over the slice
or tile, so slices and tiles of different sizes compare fairly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from napari_segnets.errors import InputError
from napari_segnets.progress import Job, Progress, drive

METHODS = ("entropy", "margin", "flip_disagreement")
# The flips tried when ``flips`` is a callable: left-right, up-down, both (the axes of a (Z, Y, X) stack).
FLIP_AXES = ((-1,), (-2,), (-2, -1))
_EPS = 1e-7


def _check_probs(p: np.ndarray, where: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float32)
    if not np.isfinite(p).all():
        raise InputError(f"The probabilities of {where} contain NaN or infinite values.")
    if p.size and (p.min() < -1e-4 or p.max() > 1 + 1e-4):
        raise InputError(
            f"The probabilities of {where} lie outside [0, 1]; pass sigmoid/softmax outputs, not logits."
        )
    return np.clip(p, 0.0, 1.0)


def uncertainty_map(probabilities, method: str = "entropy") -> np.ndarray:
    """Per-pixel uncertainty in [0, 1] of one slice: (Y, X) foreground or (C, Y, X) class probabilities.

    ``entropy``: Shannon entropy divided by its maximum (log 2 or log C). ``margin``: one minus the gap
    between the two most likely classes (for binary, ``1 - |2p - 1|``).
    """
    p = _check_probs(probabilities, "the slice")
    if method == "entropy":
        if p.ndim == 2:
            q = np.clip(p, _EPS, 1 - _EPS)
            return (-(q * np.log(q) + (1 - q) * np.log(1 - q)) / np.log(2.0)).astype(np.float32)
        if p.shape[0] == 1:
            return uncertainty_map(p[0], method)
        q = np.clip(p, _EPS, 1.0)
        return (-(q * np.log(q)).sum(axis=0) / np.log(p.shape[0])).clip(0, 1).astype(np.float32)
    if method == "margin":
        if p.ndim == 2:
            return (1.0 - np.abs(2.0 * p - 1.0)).astype(np.float32)
        if p.shape[0] == 1:
            return uncertainty_map(p[0], method)
        top2 = np.partition(p, p.shape[0] - 2, axis=0)[-2:]
        return (1.0 - (top2[1] - top2[0])).clip(0, 1).astype(np.float32)
    raise InputError(f"method={method!r} is not one of {', '.join(METHODS)} for a single map.")


def _disagreement(preds: list[np.ndarray]) -> np.ndarray:
    """Twice the per-pixel standard deviation across predictions (1 = half say 0, half say 1)."""
    stack = np.stack(preds)
    std = stack.std(axis=0)
    if std.ndim == 3:  # (C, Y, X): average over classes
        std = std.mean(axis=0)
    return np.clip(2.0 * std, 0.0, 1.0).astype(np.float32)


class _BySlice:
    """A class-first (C, Z, Y, X) array indexed by slice: ``[z]`` reads only slice z, (C, Y, X)."""

    def __init__(self, array) -> None:
        self.array = array
        c, z, *yx = np.shape(array)
        self.shape = (z, c, *yx)
        self.ndim = 4

    def __getitem__(self, z):
        return np.asarray(self.array[:, z])


def _flip_source(flips, image, shape: tuple[int, ...]):
    """A function z -> list of flip predictions of slice z, flipped back to the original orientation."""
    if callable(flips):
        if image is None:
            raise InputError("flip_disagreement with a prediction function needs the image stack: pass image=.")
        img = image if np.ndim(image) == 3 else np.asarray(image)[None]
        if np.shape(img)[0] != shape[0] or tuple(np.shape(img)[-2:]) != shape[-2:]:
            raise InputError(f"The image has shape {np.shape(image)} but the probabilities have shape {shape}.")
        # class-first, as predict returns it: (1, Y, X) binary, (C, 1, Y, X) classes
        expected = (1, *shape[1:]) if len(shape) == 3 else (shape[1], 1, *shape[2:])

        def predict(z: int) -> list[np.ndarray]:
            one = np.asarray(img[z : z + 1])
            out = []
            for axes in FLIP_AXES:
                pred = np.asarray(flips(np.flip(one, axes)))
                if pred.shape != expected:
                    raise InputError(
                        f"The prediction function returned shape {pred.shape}, expected {expected} "
                        "(class-first probabilities for the one-slice stack it was given)."
                    )
                pred = np.flip(pred, axes)
                out.append(pred[0] if pred.ndim == 3 else pred[:, 0])
            return out

        return predict
    if isinstance(flips, (list, tuple)) and flips:
        arrays = []
        for i, f in enumerate(flips):
            f = f if np.ndim(f) == len(shape) else np.asarray(f)[None]
            f = _BySlice(f) if np.ndim(f) == 4 else f
            if tuple(np.shape(f)) != shape:
                raise InputError(
                    f"Flip prediction {i} has shape {_class_first(np.shape(f))}; it must match "
                    f"{_class_first(shape)}."
                )
            arrays.append(f)
        return lambda z: [np.asarray(f[z]) for f in arrays]
    raise InputError(
        "flip_disagreement needs flips=: a list of predictions of flipped images (flipped back), "
        "or a function image_stack -> probabilities together with image=."
    )


def _class_first(shape) -> tuple[int, ...]:
    """A by-slice (Z, C, Y, X) shape written the way the caller gave it, (C, Z, Y, X)."""
    shape = tuple(shape)
    return (shape[1], shape[0], *shape[2:]) if len(shape) == 4 else shape


def _tile_boxes(h: int, w: int, tiles) -> list[tuple[int, int, int, int]]:
    try:
        ty, tx = (int(t) for t in tiles)
    except (TypeError, ValueError):
        raise InputError(f"tiles={tiles!r} must be a (tile_height, tile_width) pair of integers.") from None
    if ty < 1 or tx < 1:
        raise InputError(f"tiles={tiles!r} must be positive.")
    return [(y, x, min(y + ty, h), min(x + tx, w)) for y in range(0, h, ty) for x in range(0, w, tx)]


def _overlaps(box, regions) -> bool:
    y0, x0, y1, x1 = box
    return any(y0 < b[2] and b[0] < y1 and x0 < b[3] and b[1] < x1 for b in regions)


def rank_uncertainty(probabilities, *, method: str = "entropy", tiles: Sequence[int] | None = None,
                     exclude: Iterable | None = None,
                     flips: Callable[[np.ndarray], np.ndarray] | list | None = None,
                     image=None) -> list[tuple]:
    """Rank slices (or tiles inside slices) by model uncertainty, most uncertain first.

    The plain twin of :func:`rank_uncertainty_iter` (same arguments).
    """
    return drive(rank_uncertainty_iter(probabilities, method=method, tiles=tiles, exclude=exclude,
                                       flips=flips, image=image), bar=False)


def rank_uncertainty_iter(probabilities, *, method: str = "entropy",
                          tiles: Sequence[int] | None = None, exclude: Iterable | None = None,
                          flips: Callable[[np.ndarray], np.ndarray] | list | None = None,
                          image=None) -> Job[list[tuple]]:
    """Rank slices or tiles by model uncertainty, yielding a ``Progress("rank", ...)`` per slice.

    Parameters
    ----------
    probabilities : array (Z, Y, X) or (C, Z, Y, X)
        Foreground probabilities (binary) or class probabilities (softmax over C), class-first as
        :func:`napari_segnets.inference.predict` returns them. A 2D (Y, X) map counts as one slice.
        NumPy, dask or zarr arrays: slices are read one at a time (a lazy array stays lazy).
    method : {"entropy", "margin", "flip_disagreement"}
        ``entropy`` and ``margin``: see :func:`uncertainty_map`. ``flip_disagreement``: how much the
        predictions of flipped copies of the image disagree with ``probabilities`` (twice the per-pixel
        standard deviation across them, averaged over classes).
    tiles : (ty, tx), optional
        Rank tiles of this size inside each slice instead of whole slices (edge tiles may be smaller).
    exclude : iterable, optional
        What is already corrected (e.g. ``store.covered(source)``): slice indices skip whole slices;
        ``(index, y0, x0, y1, x1)`` entries skip the tiles that overlap that region.
    flips : callable or list of arrays
        For ``flip_disagreement``. Either a list of predictions made on flipped copies of the image and
        flipped back, each shaped like ``probabilities``; or a function taking an image stack (1, Y, X)
        and returning its probabilities (1, Y, X) or (C, 1, Y, X), called for each kept slice once per
        flip in ``FLIP_AXES`` (then ``image`` is needed); ``predict`` itself is such a function.
    image : array (Z, Y, X), optional
        The image, when ``flips`` is a function.

    Returns
    -------
    list of (key, score)
        ``key`` is the slice index, or ``(index, y0, x0, y1, x1)`` with ``tiles``; ``score`` in [0, 1].
        Ties keep slice/tile order.
    """
    if method not in METHODS:
        raise InputError(f"method={method!r} is not one of {', '.join(METHODS)}.")
    if np.ndim(probabilities) == 4:
        probabilities = _BySlice(probabilities)
    shape = tuple(np.shape(probabilities))  # by slice: (Z, Y, X) or (Z, C, Y, X)
    if len(shape) == 2:
        probabilities = np.asarray(probabilities)[None]
        shape = (1, *shape)
    if len(shape) not in (3, 4) or 0 in shape:
        raise InputError(
            f"probabilities have shape {_class_first(shape)}; pass (Z, Y, X) for binary or "
            "class-first (C, Z, Y, X) for classes, as predict returns them."
        )
    skip_slices, regions = set(), {}
    for item in exclude or ():
        if isinstance(item, (int, np.integer)):
            skip_slices.add(int(item))
        elif isinstance(item, (tuple, list)) and len(item) == 5:
            regions.setdefault(int(item[0]), []).append(tuple(int(v) for v in item[1:]))
        else:
            raise InputError(f"exclude entry {item!r} must be a slice index or (index, y0, x0, y1, x1).")
    kept = [z for z in range(shape[0]) if z not in skip_slices]
    others = _flip_source(flips, image, shape) if method == "flip_disagreement" else None
    h, w = shape[-2:]
    boxes = _tile_boxes(h, w, tiles) if tiles is not None else None
    ranking: list[tuple] = []
    for n, z in enumerate(kept):
        p = _check_probs(probabilities[z], f"slice {z}")
        if others is None:
            umap = uncertainty_map(p, method)
        else:
            umap = _disagreement([p] + [_check_probs(o, f"flip prediction of slice {z}") for o in others(z)])
        if boxes is None:
            ranking.append((z, float(umap.mean())))
        for box in boxes or ():
            if _overlaps(box, regions.get(z, ())):
                continue
            y0, x0, y1, x1 = box
            ranking.append(((z, y0, x0, y1, x1), float(umap[y0:y1, x0:x1].mean())))
        yield Progress("rank", n + 1, len(kept), f"slice {z}")
    ranking.sort(key=lambda item: -item[1])  # stable: ties keep their order
    return ranking
