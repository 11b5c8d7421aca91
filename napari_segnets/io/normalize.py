"""Intensity normalisation: a spec stored with a model, fitted on each image it sees."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

MODES = ("percentile", "minmax", "fixed", "meanstd", "none")
_SAMPLE_PIXELS = 4_000_000  # enough for stable percentiles, bounded for huge (lazy) stacks


def normalization_spec(
    mode: str = "percentile", low: float = 1.0, high: float = 99.8, **fixed
) -> dict:
    """Describe how to normalise intensities (JSON-serialisable).

    Parameters
    ----------
    mode : {"percentile", "minmax", "fixed", "meanstd", "none"}
        ``meanstd``: zero mean, unit variance (the zoo's ``zero_mean_unit_variance``).
    low, high : float
        Percentiles for ``"percentile"``.
    **fixed
        ``vmin`` and ``vmax`` for ``"fixed"``.
    """
    if mode not in MODES:
        raise InputError(f"Unknown normalisation mode {mode!r}; choose one of {', '.join(MODES)}.")
    spec: dict[str, Any] = {"mode": mode}
    if mode == "percentile":
        if not 0 <= low < high <= 100:
            raise InputError(
                f"Percentiles must satisfy 0 <= low < high <= 100, got low={low}, high={high}."
            )
        spec.update(low=float(low), high=float(high))
    if mode == "fixed":
        if "vmin" not in fixed or "vmax" not in fixed:
            raise InputError("Fixed normalisation needs both vmin and vmax.")
        spec.update(vmin=float(fixed["vmin"]), vmax=float(fixed["vmax"]))
    return spec


def _sample(image) -> np.ndarray:
    """A bounded, deterministic subsample of the image (whole slices, strided), as numpy."""
    shape = image.shape
    n = int(np.prod(shape)) if len(shape) else 0
    if n == 0:
        raise InputError(
            "The image is empty (a dimension of size 0); load a stack with pixels in it."
        )
    if image.ndim == 3 and n > _SAMPLE_PIXELS:
        per_slice = shape[1] * shape[2]
        n_slices = max(1, min(shape[0], _SAMPLE_PIXELS // max(per_slice, 1)))
        idx = np.unique(np.linspace(0, shape[0] - 1, n_slices).round().astype(int))
        step = max(1, int(np.ceil(np.sqrt(per_slice * len(idx) / _SAMPLE_PIXELS))))
        parts = [np.asarray(image[int(i), ::step, ::step]) for i in idx]
        return np.stack(parts)
    if n > _SAMPLE_PIXELS:
        step = int(np.ceil(np.sqrt(n / _SAMPLE_PIXELS)))
        return np.asarray(image[..., ::step, ::step])
    return np.asarray(image)


def fit_normalization(image, spec: dict | None = None) -> dict:
    """Return ``spec`` with ``vmin``/``vmax`` computed on (a bounded sample of) ``image``.

    Dask inputs stay lazy: only a few strided slices are read.
    """
    spec = dict(spec or normalization_spec())
    mode = spec.get("mode", "percentile")
    if mode not in MODES:
        raise InputError(f"Unknown normalisation mode {mode!r}; choose one of {', '.join(MODES)}.")
    # Zoo packages (napari_segnets.bioimageio) carry their own clip bounds (None: no clip) and eps.
    extra = {k: spec[k] for k in ("clip", "eps") if k in spec}
    if mode == "fixed":
        return {**normalization_spec("fixed", vmin=spec["vmin"], vmax=spec["vmax"]), **extra}
    if mode == "none":
        return {"mode": "none", "vmin": 0.0, "vmax": 1.0, **extra}
    sample = _sample(image).astype(np.float32, copy=False)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise InputError("The image has no finite pixel values (all NaN or infinite); check the file.")
    if mode == "meanstd":
        spec.update(mean=float(finite.mean(dtype=np.float64)), std=float(finite.std(dtype=np.float64)))
        return spec
    if mode == "minmax":
        vmin, vmax = float(finite.min()), float(finite.max())
    else:
        vmin, vmax = (float(v) for v in np.percentile(finite, [spec["low"], spec["high"]]))
    if vmax <= vmin:  # a flat image: avoid dividing by zero, keep values finite
        vmax = vmin + 1.0
    spec.update(vmin=vmin, vmax=vmax)
    return spec


def apply_normalization(array, fitted: dict) -> np.ndarray:
    """Map intensities with a fitted spec to float32, about [0, 1], clipped to [-0.5, 1.5].

    ``meanstd`` gives zero mean and unit variance, not clipped unless its spec has ``clip``.

    A spec may carry its own ``clip`` bounds (``None``: no clipping) and an ``eps`` added to the
    scale, as the zoo's ops do (see :mod:`napari_segnets.bioimageio`).
    """
    arr = np.asarray(array, dtype=np.float32)
    mode = fitted.get("mode")
    # z-scores are not "about [0, 1]": clipping them to [-0.5, 1.5] would flatten everything darker
    # than half a standard deviation below the mean, so meanstd clips only when its spec says so
    clip = fitted.get("clip", None if mode == "meanstd" else (-0.5, 1.5))
    if mode == "none":  # raw intensities: clipped only when the spec itself says so
        return arr if fitted.get("clip") is None else np.clip(arr, *_bounds(fitted["clip"]))
    offset, scale = intensity_affine(fitted)
    out = (arr - np.float32(offset)) * np.float32(1.0 / scale)
    if clip is not None:
        np.clip(out, *_bounds(clip), out=out)
    return out


def restore_intensities(values, fitted: dict) -> np.ndarray:
    """The inverse of :func:`apply_normalization` (up to its clipping): normalised values back to
    the image's intensities, as float32. Autoencoder reconstructions are returned so."""
    offset, scale = intensity_affine(fitted)
    return np.asarray(values, dtype=np.float32) * np.float32(scale) + np.float32(offset)


def intensity_affine(fitted: dict) -> tuple[float, float]:
    """``(offset, scale)`` of a fitted spec: normalised = (intensity - offset) / scale.

    ``mean``, ``std`` for ``meanstd``; ``vmin``, ``vmax - vmin`` otherwise; the spec's ``eps`` is
    added to the scale; ``none`` is (0, 1). The one place :func:`apply_normalization`,
    :func:`restore_intensities` and the novelty residuals read a spec's scale from.
    """
    mode = fitted.get("mode")
    if mode == "none":
        return 0.0, 1.0
    eps = float(fitted.get("eps", 0.0))
    if mode == "meanstd":
        if "mean" not in fitted or "std" not in fitted:
            raise InputError("The normalisation has not been fitted: call fit_normalization(image, spec) first.")
        return float(fitted["mean"]), float(fitted["std"]) + eps
    if "vmin" not in fitted or "vmax" not in fitted:
        raise InputError("The normalisation has not been fitted: call fit_normalization(image, spec) first.")
    return float(fitted["vmin"]), float(fitted["vmax"]) - float(fitted["vmin"]) + eps


def _bounds(clip) -> tuple[float, float]:
    lo, hi = clip
    return (-np.inf if lo is None else float(lo)), (np.inf if hi is None else float(hi))
