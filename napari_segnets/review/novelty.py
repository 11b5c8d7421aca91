"""Novelty: how unlike the training data an object's neighbourhood is, from an autoencoder's errors.

An autoencoder trained on the training slices reconstructs what it has seen well and what it
has not seen badly. The residual (image - reconstruction, in the units of the normalised
intensities the model sees) is decomposed per slice into wavelet levels with
:func:`napari_segnets.wavelets.decompose` (the decomposition of the Wavelets widget and study);
its detail energy per level (H^2 + V^2 + D^2 per coefficient) is averaged over each object's box
grown by ``margin`` pixels in y and x. The same statistic is taken on the reference (training)
slices over windows of the same size (every z position, an 8 x 8 grid in y and x) and each
object's value is expressed as a robust z-score of its log energy against those windows (median
and 1.4826 * MAD, the MAD floored at 0.1, i.e. +-10% energy). ``novelty`` is the largest z over
the levels (the most unfamiliar scale); ``novelty_level{l}`` keep each level's z.

Larger = more unlike the training slices. A region the autoencoder reconstructs *better* than it
did the training slices (e.g. a flat, empty area) scores low: the signal is about error, not
about any difference. Two autoencoder passes (the stack and the reference), no per-object ones.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

LEVELS = 4  # finest 2-pixel details up to 16-pixel ones: the scales of membranes and cristae
MARGIN = 8  # pixels around the object's box in y and x (its neighbourhood)
GRID = 8  # reference windows per side (y and x) at every z position
MAD_FLOOR = 0.1
_EPS = 1e-12


def _as_stack(a, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"The {what} must be an image (Y, X) or a stack (Z, Y, X), got shape {a.shape}.")
    return a


def residual(image, reconstruction, normalization=None) -> np.ndarray:
    """``image - reconstruction`` in normalised units (divided by the stack's intensity range).

    ``normalization`` is the autoencoder's spec (:mod:`napari_segnets.io.normalize`), fitted on
    ``image`` by the function :func:`~napari_segnets.inference.predict` fits it with (a spec that is
    already fitted or fixed is used as it is); default percentile 1-99.8.
    """
    from ..inference.predict import _fit
    from ..io.normalize import intensity_affine

    image = np.asarray(image)
    rec = np.asarray(reconstruction)
    if image.shape != rec.shape:
        raise InputError(f"The reconstruction has shape {rec.shape} but the image {image.shape}; they must match.")
    _offset, scale = intensity_affine(_fit(image, normalization))
    diff = image.astype(np.float32) - rec.astype(np.float32)
    return diff / np.float32(scale if scale > 0 else 1.0)


def level_energy(res, *, wavelet: str = "haar", levels: int = LEVELS) -> list[np.ndarray]:
    """Per level (finest first), the detail energy of each slice of ``res``: (Z, Y_l, X_l) float64."""
    from ..wavelets import decompose, max_levels

    res = _as_stack(res, "residual")
    n = min(int(levels), max_levels(res.shape[1:], wavelet))
    if n < 1:
        raise InputError(f"Slices of {res.shape[1:]} are too small for a wavelet level; novelty needs 4x4 or more.")
    out = None
    for z in range(res.shape[0]):
        dec = decompose(res[z], wavelet, n)
        maps = [sum(np.square(b, dtype=np.float64) for b in bands) for bands in dec.details]
        if out is None:
            out = [np.empty((res.shape[0], *m.shape)) for m in maps]
        for lev, m in enumerate(maps):
            out[lev][z] = m
    return out


def _integral(e: np.ndarray) -> np.ndarray:
    """Summed-volume table with a zero border: box sums in O(1)."""
    s = np.zeros(tuple(n + 1 for n in e.shape))
    s[1:, 1:, 1:] = e.cumsum(0).cumsum(1).cumsum(2)
    return s


def _box_sum(s, z0, z1, y0, y1, x0, x1):
    return (s[z1, y1, x1] - s[z0, y1, x1] - s[z1, y0, x1] - s[z1, y1, x0]
            + s[z0, y0, x1] + s[z0, y1, x0] + s[z1, y0, x0] - s[z0, y0, x0])


def _level_box(box, level: int, shape) -> tuple:
    """A (z, y, x) box (slices) of the image mapped onto level ``level``'s coefficient grid (at least one)."""
    z0, z1, y0, y1, x0, x1 = (v for s in box for v in (s.start, s.stop))
    f = 1 << level
    ly0, lx0 = min(y0 // f, shape[1] - 1), min(x0 // f, shape[2] - 1)
    ly1, lx1 = max(-(-y1 // f), ly0 + 1), max(-(-x1 // f), lx0 + 1)
    return z0, z1, ly0, min(ly1, shape[1]), lx0, min(lx1, shape[2])


class _Reference:
    """Robust (median, scale) of log window energy on the reference, per window size and level."""

    def __init__(self, energies):
        self.sats = [_integral(e) for e in energies]
        self.shapes = [e.shape for e in energies]
        self.cache = {}

    def stats(self, level: int, dz: int, dy: int, dx: int) -> tuple[float, float]:
        key = (level, dz, dy, dx)
        if key not in self.cache:
            zn, yn, xn = self.shapes[level]
            dz, dy, dx = min(dz, zn), min(dy, yn), min(dx, xn)
            zs = np.arange(zn - dz + 1)
            ys = np.unique(np.linspace(0, yn - dy, GRID).round().astype(int))
            xs = np.unique(np.linspace(0, xn - dx, GRID).round().astype(int))
            z0, y0, x0 = (a.ravel() for a in np.meshgrid(zs, ys, xs, indexing="ij"))
            sums = _box_sum(self.sats[level], z0, z0 + dz, y0, y0 + dy, x0, x0 + dx)
            v = np.log(sums / (dz * dy * dx) + _EPS)
            med = float(np.median(v))
            mad = 1.4826 * float(np.median(np.abs(v - med)))
            self.cache[key] = (med, max(mad, MAD_FLOOR))
        return self.cache[key]


def novelty_signals(labels, image, reconstruction, reference, reference_reconstruction, *,
                    normalization=None, wavelet: str = "haar", levels: int = LEVELS,
                    margin: int = MARGIN) -> dict:
    """Novelty of each object: its neighbourhood's reconstruction error per wavelet level vs the reference.

    Parameters
    ----------
    labels : int array (Z, Y, X) or (Y, X)
        The objects.
    image, reconstruction : arrays shaped like ``labels``
        The stack and an autoencoder's reconstruction of it (``inference.predict(...,
        output="reconstruction")``, in the image's intensity range).
    reference, reference_reconstruction : arrays (Z, Y, X) or (Y, X)
        The training slices and the same autoencoder's reconstruction of them.
    normalization : dict, optional
        The autoencoder's normalisation spec (fitted on each stack; default percentile 1-99.8).
    wavelet, levels, margin
        The decomposition (:func:`napari_segnets.wavelets.decompose`; levels are capped by the
        slice size) and the pixels around each object's box in y and x.

    Returns
    -------
    dict of str -> dict id -> float
        ``novelty`` (max over levels of the robust z-score) and ``novelty_level1`` ... (finest first).
    """
    from .signals import _boxes, _grow

    labels = np.asarray(labels)
    if np.shape(image) != labels.shape:
        raise InputError(f"The image has shape {np.shape(image)} but the labels {labels.shape}; they must match.")
    ref = _as_stack(reference, "reference")
    n = min(int(levels), _levels_for(labels.shape[-2:], wavelet), _levels_for(ref.shape[1:], wavelet))
    test_e = level_energy(residual(image, reconstruction, normalization), wavelet=wavelet, levels=n)
    refs = _Reference(level_energy(residual(reference, reference_reconstruction, normalization), wavelet=wavelet,
                                   levels=n))
    sats = [_integral(e) for e in test_e]
    lab = labels if labels.ndim == 3 else labels[None]
    out = {"novelty": {}, **{f"novelty_level{lev + 1}": {} for lev in range(n)}}
    for i, box in enumerate(_boxes(lab), start=1):
        if box is None:
            continue
        grown = _grow(box, lab.shape, margin, grow_z=False)
        zs = []
        for lev in range(n):
            z0, z1, y0, y1, x0, x1 = _level_box(grown, lev + 1, test_e[lev].shape)
            mean = _box_sum(sats[lev], z0, z1, y0, y1, x0, x1) / ((z1 - z0) * (y1 - y0) * (x1 - x0))
            med, scale = refs.stats(lev, z1 - z0, y1 - y0, x1 - x0)
            zs.append((float(np.log(mean + _EPS)) - med) / scale)
            out[f"novelty_level{lev + 1}"][i] = zs[-1]
        out["novelty"][i] = max(zs)
    return out


def _levels_for(shape, wavelet) -> int:
    from ..wavelets import max_levels

    return max_levels(shape, wavelet)


def reconstruct_iter(autoencoder, image, *, normalization=None, **predict_kwargs):
    """The autoencoder's reconstruction of ``image`` through :func:`~napari_segnets.inference.predict_iter`."""
    from ..inference import predict_iter

    if getattr(autoencoder, "task", None) != "autoencode":
        raise InputError("The novelty model must be an autoencoder (trained with --task autoencode).")
    return (yield from predict_iter(autoencoder, image, output="reconstruction", normalization=normalization,
                                    **predict_kwargs))
